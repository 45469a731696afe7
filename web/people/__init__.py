"""选人: whom the actor may pick for 转办 / 委派 / 加签 / 抄送 / 改派, searched by name, pinyin initials or unit.

GET /people/search?q=lzy&task=7 answers JSON; the scope is the server's (engine.tasks.people): an applicant
sees only the people handling their case, staff their units, parent units and leader chain, admins everyone.
The forms offer the same scope as a <select> grouped by unit (the `people_select` macro), which the picker
widget (web/static/src/lib/picker.js) enhances with the search.
"""
from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from flask_login import login_required

from engine.errors import InvalidInput
from engine.tasks import people, taskview
from web.common import current_actor, db_session
from web.guards import id_arg

bp = Blueprint("people", __name__)


@bp.get("/people/search")
@login_required
def search() -> ResponseReturnValue:
    session, actor = db_session(), current_actor()
    q = request.args.get("q", "")
    if len(q) > 200:
        raise InvalidInput("搜索内容过长 (q: at most 200 characters)", field="q")
    task_id = id_arg("task")
    instance_id = taskview.get_visible(session, actor, task_id).instance_id if task_id is not None else None
    found = people.search(session, actor, q, instance_id)
    response = jsonify(people=[{"username": p.username, "name": p.name, "unit": p.unit, "label": p.label}
                               for p in found])
    response.headers["Cache-Control"] = "no-store"
    return response
