"""The words of the plan's notices (engine/notify/texts.py holds the engine's own): 督办, hand-overs of the plan's
items, meetings and reports. Registered with the engine when the plan package is imported (plan/__init__.py), so
whatever queues or shows one has them, and the web renders them in the reader's language like any other notice.
"""
from __future__ import annotations

from engine import notify

# text id → (title, body), as in engine/notify/texts.py (their English lines are in the web's catalogue)
TEXTS: dict[str, tuple[str, str]] = {
    # 督办 (plan.supervision)
    "supervised": ("%(actor)s督办: %(title)s", "%(note)s"),
    "supervised_due": ("%(actor)s督办: %(title)s", "%(note)s新的期限 %(due)s。"),
    "reassigned": ("%(actor)s改派给您: %(title)s", "%(note)s"),
    # hand-overs when a person leaves or moves (plan.handover, plan.leader_handover)
    "items_handed_over_left": ("%(who)s 已停用，其负责的 %(count)s 项问题或招商线索已移交给您 "
                               "(%(count)s items handed over to you)", ""),
    "items_handed_over_moved": ("%(who)s 已调离本单位，其负责的 %(count)s 项问题或招商线索已移交给您 "
                                "(%(count)s items handed over to you)", ""),
    "led_handed_over": ("%(who)s 已停用，其作为责任领导的 %(count)s 项问题、招商线索或项目已移交给您 "
                        "(%(count)s items you are now the responsible leader of)", ""),
    "leaderless": ("%(who)s 已停用，本单位 %(count)s 项问题、招商线索或项目暂无责任领导，请报请重新指定 "
                   "(%(count)s items have no responsible leader; have one named)", ""),
    # meetings and reports
    "meeting_agenda": ("会议议程已生成: %(title)s（%(count)s 个项目）", ""),
    "report_ready": ("报表已生成: %(title)s", ""),
}

notify.register_texts(TEXTS)

__all__ = ["TEXTS"]
