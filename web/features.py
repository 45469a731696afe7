"""The feature blueprints, one package each (docs/architecture.md)."""
from __future__ import annotations

import importlib

from flask import Flask

FEATURES = (
    "web.inbox",          # 待办 / 已办 / 我发起的 / 抄送我的, saved filters, bulk actions
    "web.tasks",          # the task page: form, diagram, history, operations
    "web.processes",      # 发起: start a process with its start form
    "web.instances",      # instance list and page; suspend / resume / terminate
    "web.documents",      # 审批单 (print, PDF), issued documents (联合意见书 PDF), public /verify/<code>
    "web.notifications",  # in-app notifications
    "web.people",         # 选人: the people one may pick for 转办 / 委派 / 加签 / 抄送
    "web.supervision",    # 督办: overdue and escalated work of a leader's area
    "web.projects",       # 项目库: the projects one may see and a project's page
    "web.ledger",         # 问题台账: the ledger issues one may see and an issue's page
    "web.leads",          # 招商线索: a lead's page and its 责任领导
    "web.reports",        # 周调度 / 月通报 downloads
    "web.meetings",       # 项目推进暨评审会议: agendas and decisions
    "web.dashboard",      # 经济运行监测: targets, gaps, projects, warnings
    "web.modeller",       # process owners edit BPMN/DMN/forms, deploy, migrate
    "web.messages",       # 消息与信号: recent messages, waiting catches, signal broadcasts (admins, process owners)
    "web.audit",          # auditors review history and verify the chain
    "web.admin",          # users and org units (admins)
    "web.api",            # JSON API under /api with an OpenAPI document
)


def register(app: Flask) -> None:
    """Register every feature's blueprint (`bp`) and its `init_app`, if it has one."""
    for name in FEATURES:
        module = importlib.import_module(name)
        app.register_blueprint(module.bp)
        if hasattr(module, "init_app"):
            module.init_app(app)
