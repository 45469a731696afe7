"""Chinese labels (msgids) of statuses, audit actions and comment kinds; translated where shown."""
from __future__ import annotations

import json
from typing import Any

from flask_babel import gettext as _

STATUS = {
    "running": "运行中", "suspended": "已挂起", "incident": "故障", "completed": "已完成", "terminated": "已终止",
    "ready": "待办理", "cancelled": "已取消", "pending": "待激活",
}

ACTIONS = {
    "instance.start": "发起流程", "instance.suspend": "挂起", "instance.resume": "恢复", "instance.terminate": "终止",
    "instance.incident": "流程故障", "instance.attach": "上传附件", "instance.cc": "抄送", "instance.comment": "评论",
    "task.claim": "认领", "task.unclaim": "取消认领", "task.complete": "提交", "task.transfer": "转办",
    "task.delegate": "委派", "task.delegation_resolved": "委派退回", "task.send_back": "退回", "task.withdraw": "撤回",
    "task.urge": "催办", "task.cosign.add": "加签", "task.cosign.remove": "减签", "task.cosign.sign": "加签签署",
    "task.submit_for_cosign": "提交，待加签人签署", "timer.fire": "定时触发",
    "instance.archive": "归档",
}

COMMENTS = {
    "opinion": "审批意见", "comment": "评论", "urge": "催办", "system": "系统", "transfer": "转办说明",
    "delegate": "委派说明", "send_back": "退回理由", "withdraw": "撤回理由", "cosign": "加签说明",
}


def status(code: str | None) -> str:
    """Return a status's translated label (the code itself when unknown)."""
    return _(STATUS[code]) if code in STATUS else (code or "")


def action(code: str) -> str:
    """Return an audit action's translated label (the code itself when unknown)."""
    return _(ACTIONS[code]) if code in ACTIONS else code


def comment(kind: str) -> str:
    """Return a comment kind's translated label."""
    return _(COMMENTS[kind]) if kind in COMMENTS else kind


def pretty(value: Any) -> tuple[str, bool]:
    """Return a value as text for a definition list, and whether it needs a block (<pre>)."""
    if isinstance(value, str):
        return value, "\n" in value
    if value is None or isinstance(value, (bool, int, float)):
        return json.dumps(value, ensure_ascii=False), False
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str), True
