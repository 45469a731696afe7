"""Chinese labels (msgids) of statuses, audit actions and comment kinds; translated where shown."""
from __future__ import annotations

import json
from typing import Any

from flask_babel import gettext as _

STATUS = {
    "running": "运行中", "suspended": "已挂起", "incident": "故障", "completed": "已完成", "terminated": "已终止",
    "ready": "待办理", "cancelled": "已取消", "pending": "待激活",
    # plan items (计划任务), ledger issues (问题台账) and report runs
    "open": "待认领", "claimed": "已认领", "done": "已完成", "registered": "已登记", "dispatched": "已派单",
    "accepted": "已响应", "in_progress": "办理中", "feedback": "已反馈", "closed": "已销号", "returned": "已退回",
    "failed": "失败",
}

# 申请延期 (extension requests): their own words, not a task's ("pending" is 待审批 here, 待激活 for a co-signer)
EXTENSION = {"pending": "待审批", "granted": "已批准", "refused": "未批准", "cancelled": "已取消"}

ACTIONS = {
    "instance.start": "发起流程", "instance.suspend": "挂起", "instance.resume": "恢复", "instance.terminate": "终止",
    "instance.incident": "流程故障", "instance.attach": "上传附件", "instance.cc": "抄送", "instance.comment": "评论",
    "task.claim": "认领", "task.unclaim": "取消认领", "task.complete": "提交", "task.transfer": "转办",
    "task.delegate": "委派", "task.delegation_resolved": "委派退回", "task.send_back": "退回", "task.withdraw": "撤回",
    "task.urge": "催办", "task.cosign.add": "加签", "task.cosign.remove": "减签", "task.cosign.sign": "加签签署",
    "task.submit_for_cosign": "提交，待加签人签署", "timer.fire": "定时触发", "document.issue": "出具文书",
    "instance.migrate": "迁移版本", "instance.archive": "归档",
    "escalation.yellow": "黄灯临期提醒", "escalation.red": "红灯逾期提醒", "escalation.handler": "提醒承办人",
    "escalation.unit_head": "升级至单位负责人", "escalation.responsible_leader": "升级至责任领导",
    "escalation.city_leader": "升级至市级领导", "approval.working_days": "计算审批工作日",
    "auth.login": "登录", "auth.logout": "退出登录", "auth.lockout": "登录失败锁定",
    "api_token.issue": "签发接口令牌", "api_token.revoke": "吊销接口令牌",
    "call.publish": "发布揭榜任务", "call.bid": "揭榜", "call.appoint": "确定揭榜单位", "call.close": "关闭揭榜任务",
    "cc.read": "阅读抄送", "demo.load": "载入演示数据", "filter.save": "保存筛选", "filter.delete": "删除筛选",
    "indicator.record": "录入指标数据", "indicator.value.set": "修改指标数据", "indicator.value.delete": "删除指标数据",
    "indicator.period.replace": "替换指标期数据", "ledger.register": "登记问题", "ledger.dispatch": "派单",
    "ledger.accepted": "响应", "ledger.returned": "退回", "ledger.progress": "进展报告",
    "ledger.extension.grant": "批准延期", "ledger.extension.refuse": "不批准延期", "ledger.feedback": "反馈",
    "ledger.closed": "核验销号", "ledger.reopened": "核验未通过", "notify.preference": "修改通知设置",
    "notify.webhook": "设置推送地址", "notify.webhook_removed": "删除推送地址", "org.role.add": "新增角色",
    "notify.language": "修改语言", "org.unit.add": "新增单位", "org.unit.update": "修改单位",
    "org.user.add": "新增用户", "org.user.deactivate": "停用用户", "org.user.password": "修改密码",
    "org.user.edit": "编辑人员（调岗、角色）", "org.user.password_reset": "重置密码", "org.user.reactivate": "启用用户",
    "plan.indicator.add": "新增指标", "plan.industry.add": "新增产业链", "plan_item.claim": "认领计划任务",
    "plan_item.create": "生成计划任务", "process.deploy": "部署流程", "project.add": "新增项目",
    "project.library.add": "入库", "project.stage": "项目阶段变更", "project.update": "修改项目",
    "report.request": "生成报表", "supervision.extension_request": "申请延期", "supervision.urge": "督办催办",
    "supervision.reassign": "改派", "supervision.escalate": "升级督办", "supervision.extension_grant": "批准延期",
    "supervision.extension_refuse": "不批准延期", "supervision.extension_cancel": "撤回延期申请（调岗）",
    "lead.register": "登记招商线索", "lead.dispatch": "线索派单", "lead.accepted": "接收线索", "lead.returned": "退回线索",
    "lead.contact": "对接企业", "lead.project": "线索转入项目库", "lead.dropped": "线索未形成项目",
    "ledger.confirmed": "回访确认", "ledger.revisit_failed": "回访未通过",
    "meeting.agenda": "生成会议议程", "meeting.decision": "记录会议决定", "meeting.close": "结束会议",
    "report.schedule": "按时生成报表", "message.buffer": "暂存消息", "message.expire": "消息过期",
    "message.queue": "消息待后台投递", "message.refuse": "拒收消息", "message.start": "消息启动流程",
    "message.deliver": "投递消息", "message.retry": "重新投递消息",
    "signal.broadcast": "广播信号", "signal.deliver": "投递信号", "task.return_to_candidates": "退回候选人",
    "task.hand_over": "离岗移交", "ledger.hand_over": "离岗移交", "lead.hand_over": "离岗移交",
    "ledger.leader_hand_over": "离岗移交责任领导", "lead.leader_hand_over": "离岗移交责任领导",
    "project.leader_hand_over": "离岗移交责任领导", "ledger.leader": "指定责任领导", "lead.leader": "指定责任领导",
    "task.assignee_inactive": "指派对象已停用", "task.assignee_unknown": "指派对象不存在",
    "task.duty_barred": "职责分离：办理人不能回访、核验",
    "task.escalation_unit_unknown": "督办升级单位不存在", "task.assignee_not_user": "办理人不是用户",
    "task.orphans_close": "关闭遗留加签与延期申请",
    "org.directory.sync": "目录同步", "org.unit.directory_update": "目录同步更新单位", "org.unit.head": "设置单位负责人",
    "org.user.directory_update": "目录同步更新用户", "org.user.manager": "设置上级领导", "org.user.move": "调整所在单位",
    "org.user.sso_update": "统一身份认证更新用户", "org.user.sso_link": "关联统一身份认证",
    "project.approval_certified": "审批阶段出证",
    "project.approval_start": "启动审批阶段", "project.approval_linked": "关联已发起的第一阶段审批（不重复发起）",
    "project.leader": "设置包挂领导", "project.libraries": "调整项目库",
    "project.need": "登记要素保障需求", "project.need_resolved": "要素保障已解决", "project.plan": "设置计划日期",
    "project.stage_decide": "确认项目阶段", "project.stage_report": "报送项目阶段",
    "project.sign_reported": "揭榜挂帅报告签约（已签约，保留原记录）", "project.hand_over": "项目转交挂帅单位",
    "project.stage_back": "退回项目阶段（更正误录）", "auth.backchannel_logout": "统一身份认证注销登录",
}

OBJECTS = {
    "app_user": "用户", "bid": "揭榜", "call": "揭榜任务", "demo": "演示数据", "human_task": "任务",
    "indicator": "指标", "indicator_value": "指标数据", "industry": "产业链", "ledger_issue": "台账问题",
    "org_unit": "单位", "plan_item": "计划任务", "process_instance": "流程实例", "process_version": "流程版本",
    "project": "项目", "project_library": "项目库", "role": "角色", "report_run": "报表",
    "api_token": "接口令牌",  # nosec B105 # a label, not a password
    "saved_filter": "筛选", "notification": "通知", "investment_lead": "招商线索", "review_meeting": "评审会议",
    "bpmn_message": "消息", "issued_document": "文书", "project_need": "要素保障需求", "directory": "目录",
    "indicator_period": "指标期数据", "attachment": "附件", "comment": "评论", "carbon_copy": "抄送", "task": "任务",
    "notify_webhook": "推送地址",
}

COMMENTS = {
    "opinion": "审批意见", "applicant_opinion": "申请说明", "comment": "评论", "urge": "催办", "system": "系统",
    "transfer": "转办说明", "delegate": "委派说明", "send_back": "退回理由", "withdraw": "撤回理由", "cosign": "加签说明",
}


def status(code: str | None) -> str:
    """Return a status's translated label (the code itself when unknown)."""
    return _(STATUS[code]) if code in STATUS else (code or "")


def extension(code: str | None) -> str:
    """Return an extension request's status as translated words (the code itself when unknown)."""
    return _(EXTENSION[code]) if code in EXTENSION else (code or "")


def action(code: str) -> str:
    """Return an audit action's translated label (the code itself when unknown)."""
    return _(ACTIONS[code]) if code in ACTIONS else code


def object_type(code: str | None) -> str:
    """Return an audited object type's translated label (the code itself when unknown)."""
    return _(OBJECTS[code]) if code in OBJECTS else (code or "")


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
