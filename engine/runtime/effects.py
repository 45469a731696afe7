"""Service tasks: named operations a BPMN service task may call, run inside the caller's transaction.

A process calls them with `spiffworkflow:serviceTaskOperator id="start_process"` and parameters
(Python expressions over task data). They run during the engine steps of the instance, with the
session, instance and actor of that unit of work, so their writes commit or roll back with it.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from engine import extensions
from engine.org.actors import Actor
from engine.runtime.running import Running

Service = Callable[..., Any]


@dataclass
class Starts:
    """How many instances an engine run started: shared with the runs of those instances, which run inside it."""

    count: int = 0


@dataclass(frozen=True)
class RunContext:
    session: Session
    running: Running
    actor: Actor
    starts: Starts = field(default_factory=Starts)
    nesting: int = 0  # 0: a run of its own; n: the run of an instance the run around it started, n deep


_current: ContextVar[RunContext | None] = ContextVar("jzflow_run_context", default=None)
REGISTRY: dict[str, Service] = {}
# The engine's own service operations (start_process), registered where they are defined; the plan's come
# from the extensions.
ENGINE_SERVICE_MODULES = ("engine.runtime.instances",)


def load_all() -> dict[str, Service]:
    """Import every extension's service modules so the registry is complete (deploy checks against it)."""
    extensions.load()
    for module in (*ENGINE_SERVICE_MODULES, *extensions.service_modules):
        importlib.import_module(module)
    return REGISTRY


def service(name: str) -> Callable[[Service], Service]:
    """Register a function `(ctx: RunContext, **params) -> JSON-able` as a service task operation."""
    def register(fn: Service) -> Service:
        REGISTRY[name] = fn
        return fn
    return register


@contextmanager
def bound(session: Session, running: Running, actor: Actor) -> Iterator[None]:
    """Make the unit of work visible to services called during the engine steps inside.

    Inside another run of the same session (an instance a service of that run started, running until it waits) the
    run counts its starts with that run's and knows how deep it is (engine/runtime/start_limits.py).
    """
    outer = _current.get()
    ctx = RunContext(session, running, actor)
    if outer is not None and outer.session is session:
        ctx = RunContext(session, running, actor, outer.starts, outer.nesting + 1)
    token = _current.set(ctx)
    try:
        yield
    finally:
        _current.reset(token)


def current() -> RunContext | None:
    """Return the engine run this code runs in (a service it called), or None outside any."""
    return _current.get()


class ServiceMap(Mapping[str, Service]):
    """The registry as the sandbox sees it: each call gets the current unit of work."""

    def __getitem__(self, name: str) -> Service:
        fn = load_all()[name]

        def call(**params: Any) -> Any:
            ctx = _current.get()
            if ctx is None:
                raise RuntimeError(f"service '{name}' called outside an engine run")
            return fn(ctx, **params)
        return call

    def __iter__(self) -> Iterator[str]:
        return iter(load_all())

    def __len__(self) -> int:
        return len(REGISTRY)
