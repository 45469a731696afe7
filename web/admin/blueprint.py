"""The admin feature's blueprint and who may use it: its view modules (users and tokens, 编辑人员) add their routes."""
from __future__ import annotations

from flask import Blueprint

from engine.errors import Forbidden
from engine.org.actors import Actor
from web.common import current_actor

bp = Blueprint("admin", __name__)


def require_admin() -> Actor:
    """Return the acting admin.

    Raises: Forbidden
    """
    actor = current_actor()
    if not actor.is_admin:
        raise Forbidden("只有管理员可以访问 (admins only)")
    return actor
