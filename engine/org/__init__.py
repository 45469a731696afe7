"""The organisation: units, roles, users and memberships; who is acting (`actors`); API tokens (`tokens`).

The names below are the public API of the directory.
"""
from engine.org.core import (
    add_role,
    add_unit,
    add_user,
    change_password,
    deactivate_user,
    end_sessions,
    log_out,
    roles,
    units,
    users,
)

__all__ = [
    "add_role",
    "add_unit",
    "add_user",
    "change_password",
    "deactivate_user",
    "end_sessions",
    "log_out",
    "roles",
    "units",
    "users",
]
