"""Links between features: menu entries only some may open, and what an instance's page links to.

A feature that shows its menu entry to some users only registers a guard (`guard_nav`); one whose
objects a process instance belongs to (a ledger issue, a project) registers a provider of links for the
instance page (`add_instance_links`). The instances feature stays generic: it asks, it does not know.
"""
from __future__ import annotations

from collections.abc import Callable

from flask import Flask, current_app, request, url_for
from werkzeug.routing import BuildError

from engine import config

NavGuard = Callable[[], bool]
InstanceLinks = Callable[[int], list[tuple[str, str, str]]]  # instance id → (kind, label, url) the user may open
GUARDS = "jzflow.nav_guards"
PROVIDERS = "jzflow.instance_links"


def external_url(endpoint: str, **values: object) -> str:
    """An absolute address of this site for a link that leaves it (a PDF's verification link, a provider's callback).

    On JZFLOW_PUBLIC_URL when set: the Host header is the client's to choose, so a link built from it could point
    wherever a client (or a proxy that passes it on) says. Unset (a laptop's embedded default): the address the
    request came to.
    """
    public = config.load().public_url
    if not public:
        return url_for(endpoint, _external=True, **values)
    path = url_for(endpoint, **values)
    root = request.script_root  # the prefix this process is mounted under: JZFLOW_PUBLIC_URL names the public one
    return public + (path[len(root):] if root and path.startswith(root + "/") else path)


def guard_nav(app: Flask, endpoint: str, guard: NavGuard) -> None:
    """Show the menu entry of `endpoint` only when `guard()` says the user may open it."""
    app.extensions.setdefault(GUARDS, {})[endpoint] = guard


def nav_allowed(endpoint: str) -> bool:
    """Tell whether the current user's menu shows an endpoint (no guard: everybody's)."""
    guard = current_app.extensions.get(GUARDS, {}).get(endpoint)
    return guard is None or bool(guard())


def add_instance_links(app: Flask, provider: InstanceLinks) -> None:
    """Register a provider of the objects an instance belongs to, for its page."""
    app.extensions.setdefault(PROVIDERS, []).append(provider)


def instance_links(instance_id: int) -> list[tuple[str, str, str]]:
    """Return (kind, label, url) of what an instance belongs to that the logged-in user may open."""
    return [link for provider in current_app.extensions.get(PROVIDERS, []) for link in provider(instance_id)]


def _url(endpoint: str, path: str, **values: int) -> str:
    if endpoint in current_app.view_functions:
        try:
            return url_for(endpoint, **values)
        except BuildError:
            pass
    return path


def task_url(task_id: int) -> str:
    """Return the task page's URL."""
    return _url("tasks.show", f"/tasks/{task_id}", task_id=task_id)


def instance_url(instance_id: int) -> str:
    """Return the instance page's URL."""
    return _url("instances.show", f"/instances/{instance_id}", instance_id=instance_id)
