"""The feature blueprints, one package each (DESIGN §10)."""
from __future__ import annotations

import importlib

from flask import Flask

FEATURES = (
    "web.inbox",
)


def register(app: Flask) -> None:
    """Register every feature's blueprint (`bp`) and its `init_app`, if it has one."""
    for name in FEATURES:
        module = importlib.import_module(name)
        app.register_blueprint(module.bp)
        if hasattr(module, "init_app"):
            module.init_app(app)
