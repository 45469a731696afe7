"""The only package that imports SpiffWorkflow: parser, serializer, sandbox, guards, timers.

Importing it applies the guards for SpiffWorkflow 3.2.0's known bugs and points its timers at
engine.clock, so every process (web, worker, CLI, tests) runs the same patched engine.
"""
from engine.spiff import guards, timers

guards.install()
timers.install()
