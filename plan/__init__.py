"""Jiaozhou's 2025 economic work plan on the jzflow engine: one folder per feature of the plan.

The plan uses the engine only through the names each engine package exports, and plugs into it
through `plan.app.install` (the `jzflow.extensions` entry point). Nothing in `engine/` imports this package.
"""

from plan import notices  # noqa: F401 # the plan's notice texts, registered with the engine
