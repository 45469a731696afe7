"""The only package that imports SpiffWorkflow: parser, serializer, sandbox, guards, timers,
the multi-instance cap (fanout).

Importing it applies the guards for SpiffWorkflow 3.2.0's known bugs, caps multi-instance fan-out and
points its timers at engine.clock, so every process (web, worker, CLI, tests) runs the same patched engine.
"""
from engine.spiff import fanout, guards, timers

guards.install()  # first: it refuses a SpiffWorkflow version the patches were not measured on
fanout.install()
timers.install()
