"""Who may open a menu entry: the route's own check, asked again for the menu, and the 403 page's advice.

A feature whose pages only some people may open registers its route check with `door(app, endpoint,
check, right)`: `check()` is the very function its views call first (it raises Forbidden), so the menu
shows the entry exactly when the page would open — one source of truth, no second list of roles. The
403 page names the right the feature takes (`right`) and whom to ask for it (engine.org.contacts).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, current_app, request

from engine.errors import Forbidden
from engine.org import contacts
from web import links

Check = Callable[[], object]
DOORS = "jzflow.doors"


@dataclass(frozen=True)
class Door:
    endpoint: str
    check: Check
    right: str  # the right the feature takes, in Chinese (translated on the page)


def door(app: Flask, endpoint: str, check: Check, right: str) -> None:
    """Show `endpoint` in the menu only when `check()` (the route's own check) does not refuse."""
    app.extensions.setdefault(DOORS, {})[endpoint] = Door(endpoint, check, right)
    links.guard_nav(app, endpoint, lambda: passes(check))


def passes(check: Check) -> bool:
    """Tell whether a route check lets the current user in."""
    try:
        check()
    except Forbidden:
        return False
    return True


def right_here() -> str | None:
    """Return the right the current request's feature takes (its blueprint's door), if it registered one."""
    blueprint = request.blueprint
    for found in current_app.extensions.get(DOORS, {}).values():
        if found.endpoint.partition(".")[0] == blueprint:
            right: str = found.right
            return right
    return None


def whom_to_ask() -> list[contacts.Contact]:
    """Return the people the current user asks for a right: their unit heads, then the administrators."""
    from flask_login import current_user

    from web.common import current_actor, db_session
    if not getattr(current_user, "is_authenticated", False):
        return []
    return contacts.whom_to_ask(db_session(), current_actor())
