"""Deadlines: the working-day calendar, SLA lights, the watch table and the escalation ladder.

Modules: `calendar` (工作日 with holidays and 调休), `sla` (policies, lights, what is watched), `escalation`
(the ladder's sweep), `objects` and `sources` (how an application adds its own watched objects).
"""
