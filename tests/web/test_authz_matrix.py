"""The authorisation matrix: every route × every role, on SQLite and PostgreSQL, through Flask's test client.

ONE table (`MATRIX`) says, for every endpoint of `app.url_map` (static files aside), who may use it with the
path parameters the `world` fixture fills in — objects that belong to somebody outside the matrix (邵芳, an
applicant, and 高文静, a window officer), so a role that reaches them without a reason is an IDOR. A route
without an entry fails `test_every_route_is_in_the_matrix`: a new route has to say who may use it.

Checked: each role's GET (allowed → a page or a redirect that is not the login; refused → 403/404 without a
word of the other user's data); anonymous → the login page (HTML) or 401 (API), public pages excepted; every
POST without its CSRF token → 400; every POST by a role that may not → 403/404; and after all of it
(GETs included) not one row of the database changed. Staff POSTing to admin, modeller and audit routes are part
of the last check.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from engine import deploy, documents
from engine.audit.models import AuditEvent
from engine.db import make_engine, make_sessionmaker
from engine.org import tokens
from engine.org.actors import SYSTEM, actor_for
from engine.org.models import OrgUnit, User
from engine.org.token_models import ApiToken
from engine.runtime import instances, messages
from engine.runtime.models import ProcessVersion
from engine.tasks import collab, inbox
from engine.tasks.collab_models import Notification, SavedFilter
from engine.tasks.models import HumanTask
from plan.data import demo, seed
from plan.indicators.models import IndicatorValue
from plan.leads.models import InvestmentLead
from plan.ledger.models import LedgerIssue
from plan.meetings.models import ReviewMeeting
from plan.projects.models import Project
from plan.reports.models import ReportRun
from plan.schema import Base
from tests.web.conftest import csrf_of
from web import create_app

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "jz-matrix-Passw0rd"
# The roles of the issue, each a seed user (data/seed/users.yaml).
USERS = {
    "applicant": "gupeng",         # 项目单位 (staff of an enterprise: the least privileged login)
    "reviewer": "linzhiyuan",      # 审批部门, 发改局
    "leader": "sunmingyuan",       # 责任领导, head of 发改局
    "city_leader": "wangjianguo",  # 市级领导
    "ledger_officer": "jiangtao",  # 台账管理员
    "data_officer": "fanwenjuan",  # 数据监测, 统计局
    "process_owner": "suxiaoming",  # 流程管理员
    "auditor": "qianlihua",        # 审计督查
    "admin": "admin",
}
# POSTs that carry no CSRF token by design: the provider's back-channel logout (no browser, no session), whose
# signed logout token is the proof. Without a token they are refused all the same (400/404), changing nothing.
NO_CSRF = frozenset({"sso.backchannel_logout"})
OWNER, BYSTANDER = "shaofang", "gaowenjing"  # the world's objects belong to them; neither is in the matrix
LEAD = "ZS-2025-9001"  # the world's 招商线索, of 李哥庄镇 and its leader
SECRETS = ("SECRET-机密项目", "SECRET-KEY-7731", "SECRET-附件内容", "SECRET-评论", "SECRET-筛选", "SECRET-令牌",
           "SECRET-通知")

R = frozenset
ALL = R(USERS)
NOBODY: frozenset[str] = R()
SEES_ALL = R({"city_leader", "process_owner", "auditor", "admin"})  # access.READ_ALL_ROLES + admins
REPORTS = R({"leader", "city_leader", "ledger_officer", "data_officer", "process_owner", "auditor", "admin"})
SUPERVISORS = R({"leader", "city_leader", "auditor", "admin"})  # a 督办 area: unit heads, 包挂 leaders, 督查
MODELLER_READ = R({"process_owner", "auditor", "admin"})
OWNERS = R({"process_owner", "admin"})
AUDIT = R({"auditor", "admin"})
DATA_ENTRY = R({"data_officer", "admin"})
ADMIN = R({"admin"})
WRITERS = ALL - {"auditor"}  # auditors read everything and change nothing


@dataclass(frozen=True)
class Access:
    """Who may use an endpoint: `get` / `post` are the roles allowed (None: the method is not routed).

    `public`: anonymous users get the page too. `params` override the world's path values by name (a
    value starting with '@' is a key of the world's ids). `query` is appended to GETs; `form` is the body
    of the POSTs (JSON for /api/)."""

    get: frozenset[str] | None = None
    post: frozenset[str] | None = None
    public: bool = False
    params: dict[str, str] = field(default_factory=dict)
    query: str = ""
    form: dict[str, Any] = field(default_factory=dict)
    json: bool = False  # the body is JSON with an X-CSRFToken header (the modeller's fetches, the API)


TASK_FORM = {"to_username": "jiangtao", "usernames": "jiangtao", "body": "x", "note": "x", "reason": "x",
             "message": "x", "position": "before", "opinion": "x", "to": "previous"}

MATRIX: dict[str, Access] = {
    # the app
    "index": Access(get=ALL, public=True),  # a redirect to 待办
    # operations: probes are public; /metrics answers only its bearer token or allow-list, never a login
    # (tests/web/test_ops_web.py), so every role and anonymous users get 403 here
    "ops.healthz": Access(get=ALL, public=True),
    "ops.readyz": Access(get=ALL, public=True),
    "ops.metrics": Access(get=NOBODY, public=True),
    "favicon": Access(get=ALL, public=True),
    # the switch: GET sets the cookie; POST (logged in) saves one's own language too, auditors' included
    "set_language": Access(get=ALL, post=ALL, public=True, params={"code": "en"}),
    "auth.login": Access(get=ALL, post=ALL, public=True),
    "auth.logout": Access(post=ALL),
    "auth.password": Access(get=ALL, post=ALL),  # one's own password (wrong current password here: 422)
    # 统一身份认证 (off in this world: 404 to anonymous; a logged-in user is sent on to 待办)
    "sso.login": Access(get=ALL, public=True),
    "sso.callback": Access(get=ALL, public=True, query="code=x&state=y"),
    # the provider's back-channel logout: server to server, a signed logout token and no CSRF token (404 here too;
    # tests/web/test_sso_backchannel.py with SSO on)
    "sso.backchannel_logout": Access(post=ALL, public=True, form={"logout_token": "a.b.c"}),
    # 待办 / 已办 / 我发起的 / 抄送我的: each user's own; the ids are the owner's
    "inbox.index": Access(get=ALL),
    "inbox.done": Access(get=ALL),
    "inbox.started": Access(get=ALL),
    "inbox.cc": Access(get=ALL),
    "inbox.bulk_form": Access(get=SEES_ALL, query="ids=@task"),
    "inbox.bulk": Access(post=WRITERS),  # per task: see test_bulk_actions_refuse_other_users_tasks_one_by_one
    "inbox.cc_read": Access(post=NOBODY, params={"cc_id": "@cc"}),
    "inbox.cc_read_all": Access(post=WRITERS),
    "inbox.save_filter": Access(post=WRITERS, form={"name": "x", "q": "x"}),
    "inbox.delete_filter": Access(post=NOBODY, params={"filter_id": "@filter"}),
    # the task page: the owner's task
    "tasks.show": Access(get=SEES_ALL),
    "tasks.diagram": Access(get=SEES_ALL),
    "tasks.attachment": Access(get=SEES_ALL),
    "tasks.claim": Access(post=NOBODY, form=TASK_FORM),
    "tasks.unclaim": Access(post=ADMIN, form=TASK_FORM),  # admins release a task stuck with somebody
    "tasks.complete": Access(post=NOBODY, form=TASK_FORM),
    "tasks.transfer": Access(post=NOBODY, form=TASK_FORM),
    "tasks.delegate": Access(post=NOBODY, form=TASK_FORM),
    "tasks.resolve": Access(post=NOBODY, form=TASK_FORM),
    "tasks.add_cosigners": Access(post=NOBODY, form=TASK_FORM),
    "tasks.remove_cosigner": Access(post=NOBODY, form=TASK_FORM, params={"cosign_id": "@task"}),
    "tasks.send_back": Access(post=NOBODY, form=TASK_FORM),
    "tasks.withdraw": Access(post=NOBODY, form=TASK_FORM),
    "tasks.request_extension": Access(post=NOBODY, form={**TASK_FORM, "due_date": "2099-12-31"}),  # the holder's
    # leaders urge, CC and comment on what they may see (an instance page's readers)
    "tasks.urge": Access(post=SEES_ALL - {"auditor"}, form=TASK_FORM),
    "tasks.carbon_copy": Access(post=SEES_ALL - {"auditor"}, form=TASK_FORM),
    "tasks.comment": Access(post=SEES_ALL - {"auditor"}, form=TASK_FORM),
    "tasks.attach": Access(post=SEES_ALL - {"auditor"}, form=TASK_FORM),
    # 发起流程 (anyone may start a process whose start event names no starters)
    "processes.index": Access(get=ALL),
    "processes.start": Access(get=ALL, post=WRITERS, params={"key": "parallel_approval"}),
    # 流程实例: the owner's instance
    "instances.index": Access(get=ALL),
    "instances.show": Access(get=SEES_ALL),
    "instances.diagram": Access(get=SEES_ALL),
    "instances.suspend": Access(post=ADMIN),
    "instances.resume": Access(post=ADMIN),
    "instances.terminate": Access(post=ADMIN),
    # 审批单 and issued documents of the owner's instance; the 审批单 is internal (applicants: not even their own)
    "documents.sheet": Access(get=SEES_ALL),
    "documents.sheet_pdf": Access(get=SEES_ALL),
    "documents.document_pdf": Access(get=SEES_ALL, params={"doc_id": "@doc"}),
    "documents.verify": Access(get=ALL, public=True, params={"code": "@verify_code"}),  # public facts only
    # a copy compared with the issued file by its digest: public, kept nowhere (a request without a file: 400)
    "documents.verify_file": Access(post=ALL, public=True, params={"code": "@verify_code"}),
    # 通知: the bystander's notification
    "notifications.index": Access(get=ALL),
    "people.search": Access(get=SEES_ALL, query="task=@task&q=s"),  # on a case: who may see it; scope in test_people_picker
    "notifications.read": Access(post=NOBODY, params={"notification_id": "@notification"}),
    "notifications.read_all": Access(post=WRITERS),
    # 通知设置: one's own only (no user in the path); auditors change nothing, their own settings included
    "notifications.settings_page": Access(get=ALL),
    "notifications.save_settings": Access(post=WRITERS),
    "notifications.send_test": Access(post=WRITERS),
    "notifications.save_language": Access(post=ALL, form={"language": "en"}),  # one's own; an auditor's too
    # 督办: the owner's task as the object (in nobody's unit: only the admins' area covers it)
    "supervision.index": Access(get=SUPERVISORS),
    "supervision.heat": Access(get=SUPERVISORS | OWNERS, params={"process_key": "parallel_approval"}),
    "supervision.urge": Access(post=ADMIN, params={"object_type": "task", "object_id": "@task"}, form=TASK_FORM),
    "supervision.reassign": Access(post=ADMIN, params={"object_type": "task", "object_id": "@task"},
                                   form=TASK_FORM),
    # the 改派 form is a read: 督查 (auditors) supervise every unit and open it; their POST is refused (read-only)
    "supervision.reassign_form": Access(get=AUDIT, params={"object_type": "task", "object_id": "@task"}),
    # its picker's live search: whom the form offers, to whom may open the form
    "supervision.reassign_people": Access(get=AUDIT, params={"object_type": "task", "object_id": "@task"},
                                          query="q=s"),
    "supervision.extension": Access(post=ADMIN, params={"object_type": "task", "object_id": "@task"},
                                    form={"decision": "grant", "due_date": "2030-01-01"}),
    "supervision.escalate": Access(post=ADMIN, params={"object_type": "task", "object_id": "@task"},
                                   form=TASK_FORM),
    # 报表: a run another user asked for
    "reports.index": Access(get=REPORTS),
    "reports.start": Access(post=REPORTS - {"auditor"}, form={"kind": "weekly", "day": "2025-09-01"}),
    "reports.show": Access(get=REPORTS, params={"run_id": "@run"}),
    "reports.download": Access(get=REPORTS, params={"run_id": "@run", "fmt": "xlsx"}),
    # 项目推进暨评审会议: read by those who read reports, decided by leaders and 招商专员 (none in the matrix), who
    # see every agenda item; the other readers only the projects they see (here none: the meeting answers 404)
    "meetings.index": Access(get=REPORTS),
    "meetings.show": Access(get=R({"leader", "city_leader", "auditor", "admin"}), params={"meeting_id": "@meeting"}),
    "meetings.decide": Access(post=R({"leader", "city_leader", "admin"}), params={"meeting_id": "@meeting"},
                              form={"project_code": "XM-2025-0012", "outcome": "advance", "decision": "x"}),
    "meetings.close": Access(post=R({"leader", "city_leader", "admin"}), params={"meeting_id": "@meeting"}),
    # 经济运行监测: the government's staff, scoped by unit; a project, unit and indicator of 临空经济区 (no role's unit)
    "dashboard.index": Access(get=ALL - {"applicant"}),  # docs/security.md: not applicants from outside
    "dashboard.chart": Access(get=ALL - {"applicant"}, params={"name": "investment", "fmt": "json"}),
    "dashboard.indicator": Access(get=R({"city_leader", "auditor", "admin"}), params={"code": "@indicator"}),
    "dashboard.indicator_chart": Access(get=R({"city_leader", "auditor", "admin"}),
                                        params={"code": "@indicator", "fmt": "json"}),
    "dashboard.project": Access(get=R({"city_leader", "auditor", "admin"}), params={"code": "@project"}),
    "dashboard.units": Access(get=ALL - {"applicant"}),
    "dashboard.unit": Access(get=R({"city_leader", "auditor", "admin"}), params={"code": "lkq"}),
    "dashboard.data": Access(get=DATA_ENTRY),
    "dashboard.save": Access(post=DATA_ENTRY, form={"period": "2025-08", "value:gdp_growth": "1"}),
    "dashboard.upload": Access(post=DATA_ENTRY, form={"period": "2025-08"}),
    "dashboard.confirm": Access(post=DATA_ENTRY, form={"period": "2025-08", "payload": "eA==", "sha256": "x"}),
    "dashboard.template": Access(get=DATA_ENTRY, params={"fmt": "csv"}),
    # 项目库 / 问题台账: staff their units' (responsible or located), leaders their area, the city everything;
    # applicants nothing. The objects: a project of 临空经济区 and an issue of 李哥庄镇 (no role's unit or area)
    "projects.index": Access(get=ALL - {"applicant"}),
    "projects.show": Access(get=R({"city_leader", "auditor", "admin"}), params={"project_id": "@project_id"}),
    "projects.chart": Access(get=ALL - {"applicant"}),
    # 项目录入: a unit's data (or investment) officers; the world's project is nobody's here but the admin's
    "projects.new": Access(get=DATA_ENTRY),
    "projects.create": Access(post=DATA_ENTRY, form={"name": "x", "investment": "1", "unit_code": "tjj",
                                                     "libraries": "key", "category": "key"}),
    "projects.import_form": Access(get=DATA_ENTRY),
    "projects.import_template": Access(get=DATA_ENTRY),
    "projects.import_preview": Access(post=DATA_ENTRY),
    "projects.import_confirm": Access(post=DATA_ENTRY, form={"payload": "eA==", "sha256": "x"}),
    "projects.plan": Access(post=ADMIN, params={"project_id": "@project_id"}, form={"planned_sign": "2026-01-05"}),
    "projects.backward": Access(post=ADMIN, params={"project_id": "@project_id"},
                                form={"planned_complete": "2026-12-30", "construction_wd": "100", "produce_wd": "10"}),
    "projects.stage": Access(post=ADMIN, params={"project_id": "@project_id"},
                             form={"stage": "producing", "on": "2025-08-01", "evidence": "x"}),
    "projects.move_back": Access(post=ADMIN, params={"project_id": "@project_id"},
                                 form={"stage": "lead", "reason": "x"}),
    "projects.decide": Access(post=ADMIN, params={"project_id": "@project_id", "report_id": "1",
                                                  "decision": "confirm"}),
    "projects.libraries": Access(post=ADMIN, params={"project_id": "@project_id"}, form={"libraries": "land"}),
    "projects.leader": Access(post=ADMIN, params={"project_id": "@project_id"}, form={"leader": "wangjianguo"}),
    "projects.add_need": Access(post=ADMIN, params={"project_id": "@project_id"},
                                form={"kind": "land", "description": "x"}),
    "projects.resolve_need": Access(post=ADMIN, params={"project_id": "@project_id", "need_id": "1"},
                                    form={"resolution": "x"}),
    "projects.start_approval": Access(post=ADMIN, params={"project_id": "@project_id"},
                                      form={"stage": "land_planning"}),
    "ledger.index": Access(get=ALL - {"applicant"}),
    "ledger.show": Access(get=R({"city_leader", "auditor", "admin"}), params={"issue_id": "@issue"}),
    # 指定责任领导 (plan.item_leaders): admins, 市级领导 and the head of the item's unit (none in the matrix here)
    "ledger.leader": Access(post=R({"city_leader", "admin"}), params={"issue_id": "@issue"},
                            form={"leader": "wangjianguo"}),
    # 招商线索: a lead of 李哥庄镇 made for the matrix (no role's unit or area), read as an issue is
    "leads.show": Access(get=R({"city_leader", "auditor", "admin"}), params={"lead_id": "@lead"}),
    "leads.leader": Access(post=R({"city_leader", "admin"}), params={"lead_id": "@lead"},
                           form={"leader": "wangjianguo"}),
    # 流程建模: process owners deploy and migrate; auditors and admins read
    "modeller.index": Access(get=MODELLER_READ),
    "modeller.new": Access(get=OWNERS),
    "modeller.process": Access(get=MODELLER_READ, params={"key": "parallel_approval"}),
    "modeller.diff": Access(get=MODELLER_READ, params={"key": "parallel_approval"}),
    "modeller.edit": Access(get=MODELLER_READ),
    "modeller.files_json": Access(get=MODELLER_READ),
    "modeller.file_download": Access(get=MODELLER_READ, params={"name": "parallel_approval.bpmn"}),
    "modeller.diagram": Access(get=MODELLER_READ),
    "modeller.download_zip": Access(get=MODELLER_READ),
    "modeller.targets": Access(get=MODELLER_READ),
    "modeller.migrate_preview": Access(get=MODELLER_READ),
    "modeller.deploy_files": Access(post=OWNERS, form={"files": []}, json=True),
    "modeller.import_files": Access(post=OWNERS),
    "modeller.form_preview": Access(post=OWNERS, form={"schema": {"type": "object"}}, json=True),
    "modeller.migrate": Access(post=OWNERS, form={"to": "@version", "instance": "@instance"}),
    # 消息与信号: the modeller's readers, each of them everything (the world's processes have no deployer)
    "messages.index": Access(get=MODELLER_READ, query="state=buffered"),
    "messages.waiting": Access(get=MODELLER_READ, query="kind=message&name=%E8%A1%A5%E6%AD%A3%E6%9D%90%E6%96%99"),
    "messages.signals": Access(get=MODELLER_READ, query="name=%E8%AE%A1%E5%88%92%E8%B0%83%E6%95%B4"),
    # 重新投递 a refused message: admins only (readers are refused too); the world's is kept, so even theirs is a 409
    "messages.retry": Access(post=ADMIN, params={"message_id": "@message"}),
    # 审计: auditors and admins
    "audit.index": Access(get=AUDIT),
    "audit.event": Access(get=AUDIT, params={"event_id": "@event"}),
    "audit.timeline": Access(get=AUDIT),
    "audit.verify": Access(get=AUDIT),
    "audit.export_csv": Access(get=AUDIT),
    "audit.export_xlsx": Access(get=AUDIT),
    # 管理: admins; API tokens: one's own (the owner's token and user here)
    "admin.index": Access(get=ADMIN),
    "admin.create_user": Access(post=ADMIN, form={"username": "intruder", "password": "intruder-Passw0rd",
                                                  "display_name": "x", "is_admin": "1"}),
    "admin.deactivate_user": Access(post=ADMIN, params={"user_id": "@owner"}),
    "admin.user_notifications": Access(get=ADMIN, params={"user_id": "@owner"}),  # to read, the webhook masked
    # 编辑人员: admins only; the forms a hostile member of staff would send (make themself admin, head, a password)
    "admin.person": Access(get=ADMIN, params={"user_id": "@owner"}),
    "admin.person_memberships": Access(post=ADMIN, params={"user_id": "@owner"},
                                       form={"units": "lkq", "roles": "process_owner", "is_admin": "1"}),
    "admin.person_mark": Access(post=ADMIN, params={"user_id": "@owner"},
                                form={"unit": "lkq", "mark": "head", "on": "1"}),
    "admin.person_password": Access(post=ADMIN, params={"user_id": "@owner"}, form={"password": "intruder-Passw0rd"}),
    "admin.person_reactivate": Access(post=ADMIN, params={"user_id": "@owner"}),
    "admin.token_list": Access(get=ALL),
    "admin.issue_token": Access(post=ADMIN, form={"username": OWNER, "name": "x"}),
    "admin.revoke_token": Access(post=ADMIN, params={"token_id": "@token"}),
    # JSON API (session cookie + X-CSRFToken here; bearer tokens in test_api.py)
    "api.openapi": Access(get=ALL, public=True),
    "api.landing": Access(get=ALL, public=True),
    "api.task_list": Access(get=ALL),
    "api.task_show": Access(get=SEES_ALL),
    "api.task_claim": Access(post=NOBODY),
    "api.task_unclaim": Access(post=ADMIN),
    "api.task_complete": Access(post=NOBODY, form={"data": {}}),
    "api.task_transfer": Access(post=NOBODY, form={"to_username": "jiangtao"}),
    "api.task_send_back": Access(post=NOBODY, form={"to": "previous", "reason": "x"}),
    "api.task_send_back_preview": Access(post=NOBODY, form={"to": "previous"}),
    "api.task_delegate": Access(post=NOBODY, form={"to_username": "jiangtao"}),
    "api.task_resolve": Access(post=NOBODY, form={"opinion": "x"}),
    "api.task_add_cosigners": Access(post=NOBODY, form={"usernames": ["jiangtao"], "position": "before"}),
    "api.task_remove_cosigner": Access(post=NOBODY, params={"cosign_id": "@task"}),
    "api.task_urge": Access(post=SEES_ALL - {"auditor"}, form={"message": "x"}),
    "api.task_request_extension": Access(post=NOBODY, form={"due_date": "2099-12-31", "reason": "x"}),
    "api.instance_list": Access(get=ALL),
    "api.instance_show": Access(get=SEES_ALL),
    "api.process_list": Access(get=ALL),
    "api.process_start": Access(post=WRITERS, params={"key": "parallel_approval"}),
    # messages: a 补正 for an application nobody has (ttl 0: nothing kept) and the owner's kept 补正;
    # the signal 计划调整 names 产业规划 and 市级领导 as its senders
    "api.message_publish": Access(post=ADMIN, form={"name": "补正材料", "business_key": "MATRIX-NONE", "ttl": 0,
                                                    "data": {"supplement_reply": "x", "supplement_pledge": True}}),
    "api.message_show": Access(get=ADMIN, params={"message_id": "@message"}),
    "api.signal_broadcast": Access(post=R({"city_leader", "admin"}), form={"name": "计划调整"}),
}


# --- the world ------------------------------------------------------------------------------------------------

@dataclass
class World:
    app: Flask
    ids: dict[str, Any]
    clients: dict[str, FlaskClient]

    def session(self) -> Session:
        return self.app.extensions["jzflow.sessionmaker"]()  # type: ignore[no-any-return]


def build(db_url: str) -> dict[str, Any]:
    """Seed, deploy bpmn/, load the demo, then give the owner an instance with everything hanging off it."""
    engine = make_engine(db_url)
    factory = make_sessionmaker(engine)
    try:
        with factory() as s:
            seed.load_seed(s)
            deploy.deploy(s, deploy.read_directory(ROOT / "bpmn"), actor=SYSTEM)
            s.commit()
            demo.load_demo(s)
            cheap = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
            for user in s.scalars(select(User)):
                user.password_hash = cheap
            s.commit()
        with factory() as s:
            owner = actor_for(s, OWNER)
            row = instances.start(s, process_key="parallel_approval", actor=owner, title=SECRETS[0],
                                  business_key=SECRETS[1], data={"project_name": SECRETS[0]})
            s.commit()
            task = s.scalar(select(HumanTask).where(HumanTask.instance_id == row.id, HumanTask.state == "ready"))
            assert task is not None and task.assignee_id == owner.user_id
            attachment = collab.attach(s, instance_id=row.id, actor=owner, name="secret.txt",
                                       content=SECRETS[2].encode(), task_id=task.id)
            collab.add_comment(s, instance_id=row.id, actor=owner, body=SECRETS[3], task_id=task.id)
            cc = collab.carbon_copy(s, instance_id=row.id, actor=owner, usernames=[BYSTANDER], note="x")[0]
            saved = inbox.save_filter(s, owner, name=SECRETS[4], list_name="index", flt=inbox.Filter(q="x"))
            tokens.issue(s, s.get(User, owner.user_id), SECRETS[5])  # type: ignore[arg-type]
            token_id = s.scalar(select(ApiToken.id).where(ApiToken.user_id == owner.user_id))
            bystander = actor_for(s, BYSTANDER)
            lgz = s.scalar(select(OrgUnit).where(OrgUnit.code == "lgz"))
            assert lgz is not None
            lead = InvestmentLead(code=LEAD, title="矩阵招商线索", enterprise="青岛示例企业", unit_id=lgz.id,
                                  responsible_leader_id=lgz.responsible_leader_id, status="contacting")
            s.add(lead)
            s.flush()
            note = Notification(user_id=bystander.user_id, kind="cc", title=SECRETS[6], body=SECRETS[6],
                                link=f"/tasks/{task.id}")
            run = ReportRun(kind="weekly", period_start=date(2025, 9, 1),
                            period_end=date(2025, 9, 8), title="周调度", status="done",
                            progress=100, requested_by_id=bystander.user_id, xlsx=b"PK-xlsx", pdf=b"%PDF-")
            meeting = ReviewMeeting(held_on=date(2025, 9, 17), title="项目推进暨评审会议", status="planned",
                                    agenda=[{"project_id": outsiders(s)["project_id"], "code": "XM-2025-0012",
                                             "name": SECRETS[0], "stage": "signed", "reasons": ["x"]}])
            s.add_all([note, run, meeting])
            s.flush()
            issued = documents.issue(s, instance_id=row.id, kind="matrix", rule=documents.NumberRule(
                "matrix", "M{year}-{seq:04d}"), title="文书", subject="公开事项", issuers=["发展和改革局"],
                issued_on=date(2025, 9, 1), actor=owner)
            kept = messages.publish(s, name="补正材料", actor=owner, business_key=SECRETS[1], ttl=86400,
                                    payload={"supplement_reply": SECRETS[0], "supplement_pledge": True})
            event = s.scalar(select(AuditEvent.id).where(AuditEvent.stream == f"instance:{row.id}")
                             .order_by(AuditEvent.id))
            version = s.scalar(select(ProcessVersion.id).where(ProcessVersion.id == row.version_id))
            ids = {"task": task.id, "instance": row.id, **outsiders(s), "attachment": attachment.id, "cc": cc.id,
                   "filter": saved.id,
                   "token": token_id, "owner": owner.user_id, "notification": note.id, "run": run.id,
                   "meeting": meeting.id, "event": event, "version": version, "doc": issued.id,
                   "verify_code": issued.verify_code, "project": "XM-2025-0012", "indicator": "airport_cargo",
                   "message": kept.id}
            s.commit()
            assert s.scalar(select(SavedFilter.id).where(SavedFilter.id == saved.id)) is not None
            assert s.scalar(select(IndicatorValue.id).limit(1)) is not None
        return ids
    finally:
        engine.dispose()


def outsiders(s: Session) -> dict[str, int]:
    """A project, an issue and a lead that no role of the matrix has a reason to see (临空经济区, 李哥庄镇, 李哥庄镇)."""
    matrix = set(s.scalars(select(User.id).where(User.username.in_(list(USERS.values())))))
    project = s.scalar(select(Project).where(Project.code == "XM-2025-0012"))
    issue = s.scalar(select(LedgerIssue).join(OrgUnit, OrgUnit.id == LedgerIssue.unit_id)
                     .where(OrgUnit.code == "lgz", LedgerIssue.project_id.is_(None)).order_by(LedgerIssue.id))
    lead = s.scalar(select(InvestmentLead).where(InvestmentLead.code == LEAD))
    assert project is not None and issue is not None and lead is not None
    assert not {project.responsible_leader_id, issue.responsible_leader_id, issue.handler_id,
                lead.responsible_leader_id, lead.handler_id} & matrix
    return {"project_id": project.id, "issue": issue.id, "lead": lead.id}


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    yield from open_world(db_url)


def open_world(db_url: str) -> Iterator[World]:
    """Build the world on a fresh database and log every role in (the generator behind `world`)."""
    ids = build(db_url)
    app = create_app({"DATABASE_URL": db_url, "TESTING": True, "WTF_CSRF_ENABLED": True, "RATELIMIT_ENABLED": False,
                      "SECRET_KEY": "matrix-secret"})
    clients: dict[str, FlaskClient] = {"anonymous": app.test_client()}
    for role, username in USERS.items():
        client = app.test_client()
        response = client.post("/login", data={"username": username, "password": PASSWORD,
                                               "csrf_token": csrf_of(client)})
        assert response.status_code == 302, (role, response.get_data(as_text=True)[:500])
        clients[role] = client
    yield World(app, ids, clients)
    app.extensions["jzflow.engine"].dispose()


# --- requests -------------------------------------------------------------------------------------------------

ROUTED = ("GET", "POST")


def endpoints(app: Flask) -> dict[str, Any]:
    return {r.endpoint: r for r in app.url_map.iter_rules() if r.endpoint != "static"}


def value(world: World, raw: Any) -> Any:
    if isinstance(raw, str) and raw.startswith("@"):
        return world.ids[raw[1:]]
    if isinstance(raw, dict):
        return {k: value(world, v) for k, v in raw.items()}
    return raw


def path_of(world: World, endpoint: str, rule: Any) -> str:
    entry = MATRIX[endpoint]
    defaults = {"task_id": "@task", "instance_id": "@instance", "attachment_id": "@attachment",
                "version_id": "@version", "run_id": "@run", "event_id": "@event", "meeting_id": "@meeting"}
    values = {name: value(world, entry.params.get(name, defaults.get(name))) for name in rule.arguments}
    missing = [name for name, v in values.items() if v is None]
    assert not missing, f"{endpoint}: no value for {missing}: add params to its MATRIX entry"
    path: str = rule.build(values, append_unknown=False)[1]
    return path


def is_api(path: str) -> bool:
    return path.startswith("/api/")


def post(world: World, role: str, endpoint: str, path: str, form: dict[str, Any], *, csrf: bool = True) -> Any:
    client = world.clients[role]
    token = csrf_of(client, "/login" if role == "anonymous" else "/inbox") if csrf else None
    if is_api(path) or MATRIX[endpoint].json:
        return client.post(path, json=form, headers={"X-CSRFToken": token} if token else {})
    return client.post(path, data={**form, **({"csrf_token": token} if token else {})})


def leaked(body: str) -> list[str]:
    return [s for s in SECRETS if s in body]


def to_login(response: Any) -> bool:
    return response.status_code in (301, 302, 303) and "/login" in response.headers.get("Location", "")


def snapshot(world: World) -> dict[str, str]:
    """A digest of every table's rows: any INSERT, UPDATE or DELETE shows."""
    digests = {}
    with world.session() as s:
        for table in Base.metadata.sorted_tables:
            rows = s.execute(text(f"SELECT * FROM {table.name} ORDER BY 1")).all()
            digests[table.name] = hashlib.sha256(repr([tuple(map(str, r)) for r in rows]).encode()).hexdigest()
        s.rollback()
    return digests


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(t for t in before if before[t] != after[t])


# --- the tests ------------------------------------------------------------------------------------------------

def test_every_route_is_in_the_matrix(tmp_path: Any) -> None:
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'routes.sqlite'}", "TESTING": True})
    routes = endpoints(app)
    missing = sorted(set(routes) - set(MATRIX))
    stale = sorted(set(MATRIX) - set(routes))
    assert not missing, f"routes without an entry in MATRIX (say who may use them): {missing}"
    assert not stale, f"MATRIX entries of routes that no longer exist: {stale}"
    for endpoint, rule in routes.items():
        methods = set(rule.methods or ()) & set(ROUTED)
        entry = MATRIX[endpoint]
        assert ("GET" in methods) == (entry.get is not None), f"{endpoint}: GET is {sorted(methods)}"
        assert ("POST" in methods) == (entry.post is not None), f"{endpoint}: POST is {sorted(methods)}"
    app.extensions["jzflow.engine"].dispose()


def test_every_role_gets_what_it_may_and_nothing_else(world: World) -> None:
    before = snapshot(world)
    wrong: list[str] = []
    for endpoint, rule in sorted(endpoints(world.app).items()):
        entry = MATRIX[endpoint]
        if entry.get is None:
            continue
        path = path_of(world, endpoint, rule)
        if entry.query:
            path += "?" + "&".join(f"{k}={value(world, v)}" for k, v in
                                   (pair.split("=", 1) for pair in entry.query.split("&")))
        for role in USERS:
            response = world.clients[role].get(path)
            body = response.get_data().decode("utf-8", "replace")
            if role in entry.get:
                if response.status_code >= 400 or to_login(response):
                    wrong.append(f"{role} GET {path}: {response.status_code}, expected access")
            elif response.status_code not in (403, 404):
                wrong.append(f"{role} GET {path}: {response.status_code}, expected 403/404")
            elif leaked(body):
                wrong.append(f"{role} GET {path}: refused but shows {leaked(body)}")
    assert not wrong, "\n".join(wrong)
    assert changed(before, snapshot(world)) == [], "a GET changed the database"


def test_anonymous_users_are_sent_to_log_in(world: World) -> None:
    wrong: list[str] = []
    for endpoint, rule in sorted(endpoints(world.app).items()):
        entry = MATRIX[endpoint]
        path = path_of(world, endpoint, rule)
        for method in ("GET", "POST"):
            if (entry.get if method == "GET" else entry.post) is None:
                continue
            if method == "GET":
                response = world.clients["anonymous"].get(path)
            else:
                response = post(world, "anonymous", endpoint, path, value(world, entry.form))
            body = response.get_data().decode("utf-8", "replace")
            if leaked(body):
                wrong.append(f"anonymous {method} {path} shows {leaked(body)}")
            if entry.public:
                continue
            if is_api(path):
                if response.status_code != 401 or response.headers.get("WWW-Authenticate") is None:
                    wrong.append(f"anonymous {method} {path}: {response.status_code}, expected 401")
            elif not to_login(response):
                wrong.append(f"anonymous {method} {path}: {response.status_code}, expected the login page")
    assert not wrong, "\n".join(wrong)


def test_posts_without_csrf_and_posts_by_the_wrong_role_change_nothing(world: World) -> None:
    before = snapshot(world)
    audit_rows = _count(world, AuditEvent)
    wrong: list[str] = []
    posts = [(e, r) for e, r in sorted(endpoints(world.app).items()) if MATRIX[e].post is not None]
    for endpoint, rule in posts:
        entry = MATRIX[endpoint]
        path = path_of(world, endpoint, rule)
        form = value(world, entry.form)
        for role in ("applicant", "admin"):  # no token: refused before anything else, whoever asks
            if endpoint == "auth.logout" or (endpoint == "auth.login" and role == "admin"):
                continue
            response = post(world, role, endpoint, path, form, csrf=False)
            if endpoint in NO_CSRF:
                if response.status_code not in (400, 404):
                    wrong.append(f"{role} POST {path} (no CSRF by design): {response.status_code}, expected 400/404")
            elif response.status_code != 400:
                wrong.append(f"{role} POST {path} without CSRF: {response.status_code}, expected 400")
        for role in sorted(ALL - entry.post):
            response = post(world, role, endpoint, path, form)
            body = response.get_data(as_text=True)
            if response.status_code not in (403, 404):
                wrong.append(f"{role} POST {path}: {response.status_code}, expected 403/404: {body[:200]!r}")
            elif leaked(body):
                wrong.append(f"{role} POST {path}: refused but shows {leaked(body)}")
    assert not wrong, "\n".join(wrong)
    assert _count(world, AuditEvent) == audit_rows
    assert changed(before, snapshot(world)) == []


def test_staff_posting_to_admin_modeller_and_audit_routes_are_refused_and_change_nothing(world: World) -> None:
    counts = {m.__tablename__: _count(world, m) for m in (User, ApiToken, ProcessVersion, AuditEvent)}
    routes = [(e, r) for e, r in sorted(endpoints(world.app).items())
              if e.split(".")[0] in ("admin", "modeller", "audit") and MATRIX[e].post is not None]
    assert {e.split(".")[0] for e, _ in routes} >= {"admin", "modeller"}
    for role in ("applicant", "reviewer", "leader", "ledger_officer", "data_officer"):
        for endpoint, rule in routes:
            if role in (MATRIX[endpoint].post or ()):
                continue
            path = path_of(world, endpoint, rule)
            response = post(world, role, endpoint, path, value(world, MATRIX[endpoint].form))
            # anyone may revoke their own tokens: another's answers as one that does not exist
            expected = 404 if endpoint == "admin.revoke_token" else 403
            assert response.status_code == expected, (role, path, response.status_code)
    assert {m.__tablename__: _count(world, m) for m in (User, ApiToken, ProcessVersion, AuditEvent)} == counts
    with world.session() as s:
        assert s.scalar(select(User.is_active).where(User.id == world.ids["owner"])) is True
        assert s.scalar(select(ApiToken.revoked_at).where(ApiToken.id == world.ids["token"])) is None
        s.rollback()


def test_a_read_only_token_reads_what_its_user_may_and_every_api_write_is_403(world: World) -> None:
    """Every /api route with a read-only token of each role: a GET answers as the matrix says for the role; every POST
    is 403 token_read_only, saying the token is read-only, whatever the role may do — and nothing changes."""
    with world.session() as s:
        readers = {role: tokens.issue(s, s.get(User, actor_for(s, name).user_id), "只读令牌",  # type: ignore[arg-type]
                                      actor=actor_for(s, name), scope=tokens.READ) for role, name in USERS.items()}
        s.commit()
    routes = [(e, r) for e, r in sorted(endpoints(world.app).items()) if is_api(r.rule)]
    client = world.app.test_client()
    before, wrong = snapshot(world), []
    for endpoint, rule in routes:
        entry, path = MATRIX[endpoint], path_of(world, endpoint, rule)
        for role, token in readers.items():
            if entry.post is None:
                continue
            response = client.post(path, json=value(world, entry.form), headers={"Authorization": f"Bearer {token}"})
            body = response.get_json(silent=True) or {}
            if response.status_code != 403 or body.get("error") != "token_read_only" or "只读" not in body.get(
                    "message", "") or "read-only" not in body.get("message", ""):
                wrong.append(f"{role} read-only token POST {path}: {response.status_code} {body}")
    assert changed(before, snapshot(world)) == [], "a read-only token's POST changed the database"
    for endpoint, rule in routes:
        entry, path = MATRIX[endpoint], path_of(world, endpoint, rule)
        for role, token in readers.items():
            if entry.get is None:
                continue
            response = client.get(path, headers={"Authorization": f"Bearer {token}"})
            allowed = role in entry.get or entry.public
            if allowed != (response.status_code < 400):
                wrong.append(f"{role} read-only token GET {path}: {response.status_code}, allowed: {allowed}")
    assert not wrong, "\n".join(wrong)


def test_the_owner_reaches_what_the_matrix_keeps_from_others(world: World) -> None:
    """The same ids work for the one they belong to: the refusals above are about who asks, not broken ids."""
    client = world.app.test_client()
    response = client.post("/login", data={"username": OWNER, "password": PASSWORD, "csrf_token": csrf_of(client)})
    assert response.status_code == 302
    ids = world.ids
    for path in (f"/tasks/{ids['task']}", f"/instances/{ids['instance']}", f"/api/tasks/{ids['task']}",
                 f"/tasks/{ids['task']}/attachments/{ids['attachment']}",
                 f"/instances/{ids['instance']}/documents/{ids['doc']}.pdf"):
        response = client.get(path)
        assert response.status_code == 200, path
    assert SECRETS[0] in client.get(f"/tasks/{ids['task']}").get_data(as_text=True)
    assert SECRETS[4] in client.get("/inbox").get_data(as_text=True)
    assert SECRETS[5] in client.get("/admin/tokens").get_data(as_text=True)


def test_bulk_actions_refuse_other_users_tasks_one_by_one(world: World) -> None:
    before = snapshot(world)
    task = world.ids["task"]
    for role in sorted(WRITERS):
        for action, extra in (("claim", {}), ("transfer", {"to_username": "jiangtao"})):
            response = post(world, role, "inbox.bulk", "/inbox/bulk", {"ids": task, "action": action, **extra})
            assert response.status_code == 200, (role, action, response.status_code)
            html = response.get_data(as_text=True)
            results = html[html.index('class="card bulk-results"'):html.index("</section>", html.index("bulk-results"))]
            if role not in SEES_ALL:  # those may read the task; the others do not even learn its name
                assert f'<a href="/tasks/{task}">#{task}</a>' in results, (role, action, results)
            assert 'class="failed"' in results and 'class="ok"' not in results
            assert not leaked(html)
    assert changed(before, snapshot(world)) == []


def _count(world: World, model: Any) -> int:
    from sqlalchemy import func
    with world.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_the_messages_pages_show_the_owners_kept_message_to_their_readers_only(world: World) -> None:
    """bpmn/ came from the command line (no deployer): the process owner and the auditor see it like the admin."""
    for role in sorted(ALL):
        for path in ("/messages", "/messages/waiting?kind=message&name=%E8%A1%A5%E6%AD%A3%E6%9D%90%E6%96%99",
                     "/messages/signals"):
            response = world.clients[role].get(path)
            body = response.get_data(as_text=True)
            if role in MODELLER_READ:
                assert response.status_code == 200, (role, path)
            else:
                assert response.status_code == 403 and not leaked(body), (role, path)
        if role in MODELLER_READ:
            shown = world.clients[role].get("/messages").get_data(as_text=True)
            assert SECRETS[1] in shown and f'data-message="{world.ids["message"]}"' in shown, role
