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
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from engine import extensions
from engine.org.actors import Actor
from engine.runtime.running import Running

Service = Callable[..., Any]


@dataclass(frozen=True)
class RunContext:
    session: Session
    running: Running
    actor: Actor


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
    """Make the unit of work visible to services called during the engine steps inside."""
    token = _current.set(RunContext(session, running, actor))
    try:
        yield
    finally:
        _current.reset(token)


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
