"""Notifications: routed by preference into the outbox (in-app, e-mail, webhook), delivered after commit.

The names below are the public API; `outbox` records side effects, `notifications` is one user's in-app list.
"""
from engine.notify.core import (
    MAX_PREFERENCES,
    Note,
    channels_for,
    mark_read,
    send,
    send_many,
    set_preference,
    set_webhook,
    unread_count,
    worded,
)
from engine.notify.outbox import queued
from engine.notify.texts import register as register_texts

__all__ = [
    "MAX_PREFERENCES",
    "Note",
    "channels_for",
    "mark_read",
    "queued",
    "register_texts",
    "send",
    "send_many",
    "set_preference",
    "set_webhook",
    "unread_count",
    "worded",
]
