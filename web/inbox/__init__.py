"""待办 / 已办 / 我发起的 / 抄送我的."""
from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue
from flask_login import login_required

from engine.services import tasks
from web.common import current_actor, db_session

bp = Blueprint("inbox", __name__)


@bp.get("/inbox")
@login_required
def index() -> ResponseReturnValue:
    rows = tasks.inbox(db_session(), current_actor(), limit=50)
    return render_template("inbox/index.html", tasks=rows, actor=current_actor())
