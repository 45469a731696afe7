"""The task page: its form, instructions, diagram, history, attachments and every inbox operation."""
from __future__ import annotations

from flask import Blueprint, current_app, url_for
from werkzeug.routing import BuildError

bp = Blueprint("tasks", __name__)


@bp.app_template_global("jz_instance_url")
def instance_url(instance_id: int) -> str:
    """Link to the instance page (another feature's blueprint), or its path when that is not there."""
    if "instances.show" in current_app.view_functions:
        try:
            return url_for("instances.show", instance_id=instance_id)
        except BuildError:
            pass
    return f"/instances/{instance_id}"


from web.tasks import operations, views  # noqa: E402,F401  (they add their routes to bp)
