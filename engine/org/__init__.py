"""The organisation: units, roles, users and memberships; who is acting (`actors`); API tokens (`tokens`);
停用 with the handover of the person's open work (`leaving.deactivate_user`: imported by module name, as it
reaches into engine.tasks, which imports this package).

The names below are the public API of the directory.
"""
from engine.org.core import (
    add_role,
    add_unit,
    add_user,
    change_password,
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
    "end_sessions",
    "log_out",
    "roles",
    "units",
    "users",
]
