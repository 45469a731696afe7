"""The words of each notice, by text id: a Chinese title and body with named placeholders (the msgids of the web's
i18n catalogue), and the arguments that fill them.

A notice is stored as its text id and arguments (`Note.params`, the in-app outbox payload, `notification.params`) as
well as rendered in Chinese (`title`, `body`): e-mail, webhooks and anything reading the title get the Chinese; the
web renders the notice again in its reader's language (web/notifications/wording.py). Arguments are data (names of
people, tasks, units; notes people typed): they fill placeholders and are never themselves a format string, so a task
named "%(x)s" or "{0}" prints as typed. `words` names the arguments that are the app's own fixed words (a step of the
ladder, a reason the engine gives): the web translates those too. Every text has an English line in the catalogue
(tests/engine/test_notice_texts.py), and every notice is built here (`note`), so a new one without a translation fails.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any

# text id → (title, body). Bodies that are only "%(note)s" carry what a person typed.
TEXTS: dict[str, tuple[str, str]] = {
    # inbox operations (engine.tasks)
    "transferred": ("%(actor)s转办给您: %(task)s", "%(note)s"),
    "delegated": ("%(actor)s委派给您: %(task)s", "%(note)s"),
    "delegation_resolved": ("%(actor)s已处理委派: %(task)s", "%(note)s"),
    "cosign_asked": ("%(actor)s请您加签: %(task)s", "%(note)s"),
    "cosign_done": ("加签已完成，请办理: %(task)s", ""),
    "urged": ("%(actor)s催办: %(task)s", "%(note)s"),
    "cc": ("%(actor)s抄送给您", "%(note)s"),
    "sent_back": ("%(actor)s退回: %(task)s", "%(note)s"),
    "sent_back_cancelled": ("%(actor)s退回到「%(target)s」，您的任务已取消: %(task)s", "%(note)s"),
    "task_cancelled": ("任务已取消: %(task)s", "%(reason)s"),
    "task_cancelled_by": ("任务已取消: %(task)s", "%(actor)s办理了其他步骤: %(reason)s"),
    "delegate_left": ("委派的任务已退回您（被委派人已停用）: %(task)s", ""),
    "tasks_handed_over": ("%(count)s 项待办已移交给您 (%(count)s tasks handed over to you)", ""),
    # caps (engine.notify.quota)
    "notice_suppressed": (
        "本小时另有通知因超出上限未单独发送，请查看待办/督办",
        "%(date)s %(start)s–%(end)s（北京时间）给您的通知已超出上限（每小时 %(cap)s 条，或某一流程实例的上限），"
        "此后本小时内的通知不再逐条发送，本条不计入上限。请到待办、督办查看需要您办理的事项 (further notices this hour were "
        "not sent one by one: see your inbox)"),
    "notice_cap_instance": (
        "流程实例 %(instance)s 一小时内的通知已达上限，其余不再发送",
        "流程实例 %(instance)s 一小时内已发出 %(sent)s 条通知（上限 %(cap)s），此后本小时内的通知不再发送。请检查流程中的"
        "循环、多实例、频繁触发的定时器或反复的催办、抄送 (instance %(instance)s reached its notice cap for the hour; "
        "further notices are dropped)"),
    "notice_cap_user": (
        "用户 %(user)s 一小时内收到的通知已达上限，其余不再发送",
        "用户 %(user)s 一小时内已收到 %(sent)s 条通知（上限 %(cap)s），此后本小时内给他的通知不再发送。请检查流程中的循环、"
        "多实例、频繁触发的定时器，或是否有人反复催办、抄送、转办给他 (user %(user)s reached the notice cap for the hour; "
        "further notices to them are dropped)"),
    "notify_test": ("jzflow 通知测试 (test notice)", "这是一条测试通知：收到即表示该渠道设置正确。"),
    # deadlines (engine.deadlines)
    "due_soon": ("临期提醒: %(title)s", "办理期限 %(due)s，请抓紧办理。"),
    "overdue": ("逾期提醒: %(title)s", "已超过办理期限 %(due)s，请尽快办理。"),
    "escalated_late": ("督办升级(%(step)s): %(title)s",
                       "自动督办升级至%(step)s：%(title)s，已逾期 %(days)s 个工作日。%(note)s"),
    "escalated_due": ("督办升级(%(step)s): %(title)s", "自动督办升级至%(step)s：%(title)s，办理期限 %(due)s。%(note)s"),
    "escalated_by_late": ("督办升级(%(step)s): %(title)s",
                          "%(actor)s督办升级至%(step)s：%(title)s，已逾期 %(days)s 个工作日。%(note)s"),
    "escalated_by_due": ("督办升级(%(step)s): %(title)s",
                         "%(actor)s督办升级至%(step)s：%(title)s，办理期限 %(due)s。%(note)s"),
    "extension_withdrawn": ("您对“%(task)s”的延期申请已撤回 (extension request withdrawn)",
                            "您已调离该任务所属的单位或角色，任务已退回原单位的候选人，由接手的人另行申请延期。"),
    "extension_requested": ("%(actor)s申请延期: %(title)s", "申请延期至 %(due)s。%(note)s"),
    "extension_granted": ("延期申请已批准: %(title)s", "%(note)s"),
    "extension_granted_due": ("延期申请已批准: %(title)s", "%(note)s 新的期限 %(due)s。"),
    "extension_refused": ("延期申请未获批准: %(title)s", "%(note)s"),
    "extension_refused_due": ("延期申请未获批准: %(title)s", "%(note)s 新的期限 %(due)s。"),
    # a process's problems, to its owners (engine.runtime.assignment, engine.deadlines.unknown_units)
    "assignee_inactive": (
        "流程 %(process)s 的任务 %(element)s（%(task)s）指向已停用的人员 %(who)s",
        "任务 %(element)s 的 %(prop)s 指向已停用的人员 %(who)s，已按查无此人处理：改由其余候选人、泳道、发起人或管理员办理。"
        "请修改流程或其数据 (task '%(element)s': %(prop)s names deactivated user '%(username)s'; passed over as a name "
        "nobody has)"),
    "assignee_unknown": (
        "流程 %(process)s 的任务 %(element)s（%(task)s）指向不存在的人员 %(who)s",
        "任务 %(element)s 的 %(prop)s 指向不存在的人员 %(who)s，已跳过：改由其余候选人、泳道、发起人或管理员办理。"
        "请修改流程或其数据 (task '%(element)s': %(prop)s names %(count)s name(s) nobody has, listed above; passed over)"),
    "assignee_unknown_more": (  # more names than a note lists (engine.runtime.owner_notes.MAX_TOLD): how many in all
        "流程 %(process)s 的任务 %(element)s（%(task)s）指向不存在的人员 %(who)s 等 %(count)s 个",
        "任务 %(element)s 的 %(prop)s 指向不存在的人员 %(who)s 等 %(count)s 个，已跳过：改由其余候选人、泳道、发起人或管理员"
        "办理。请修改流程或其数据 (task '%(element)s': %(prop)s names %(count)s name(s) nobody has, listed above; passed "
        "over)"),
    "assignee_not_user": (
        "流程 %(process)s 的任务 %(element)s（%(task)s）的 assignee 指向单位/角色 %(who)s",
        "任务 %(element)s 的 assignee 指向 %(who)s，是单位/角色而不是用户名，已跳过：改由候选人、泳道、发起人或管理员办理。"
        "请用 candidates（候选人表达式）指定单位或角色 (task '%(element)s': assignee names %(count)s unit(s) or role(s), "
        "not usernames; passed over: name units and roles in candidates)"),
    "assignee_not_user_more": (
        "流程 %(process)s 的任务 %(element)s（%(task)s）的 assignee 指向单位/角色 %(who)s 等 %(count)s 个",
        "任务 %(element)s 的 assignee 指向 %(who)s 等 %(count)s 个，是单位/角色而不是用户名，已跳过：改由候选人、泳道、"
        "发起人或管理员办理。请用 candidates（候选人表达式）指定单位或角色 (task '%(element)s': assignee names %(count)s "
        "unit(s) or role(s), not usernames; passed over: name units and roles in candidates)"),
    "escalation_unit_unknown": (
        "流程 %(process)s 的任务 %(element)s（%(task)s）的 escalationUnit '%(name)s' 不是任何单位",
        "任务 %(element)s 的 escalationUnit 指向 '%(name)s'，它不是任何单位：逾期升级时已跳过单位负责人一级，升至上一级。"
        "请修改流程或其数据，或创建该单位 (task '%(element)s': escalationUnit names '%(name)s', which is no unit; the unit "
        "head's rung passed to the rung above)"),
    # the directory (engine.org)
    "unit_gone": ("%(unit)s 已不在组织目录中，仍有 %(count)s 项待办无人可认领 (%(code)s left the directory)",
                  "请联系系统管理员将其待办移交到现有单位。"),
    "leaver_returned": ("%(who)s 已不在组织目录中，账号已停用 (%(username)s left the directory)",
                        "其 %(count)s 项待办已退回%(unit)s的候选人，请安排办理。"),
    "leaver_returned_nounit": ("%(who)s 已不在组织目录中，账号已停用 (%(username)s left the directory)",
                               "其 %(count)s 项待办已退回所在单位的候选人，请安排办理。"),
    "leaver_idle": ("%(who)s 已不在组织目录中，账号已停用 (%(username)s left the directory)", "其名下没有待办。"),
    "headless": ("%(unit)s 的负责人 %(who)s 已调离，该单位暂无负责人 (%(code)s: its head moved out)",
                 "请在组织目录或“编辑人员”中指定新的负责人。"),
}


def register(more: Mapping[str, tuple[str, str]]) -> None:
    """Add an application's texts (the plan's: plan/notices.py): the engine words only its own notices.

    Raises: ValueError for a text id already worded otherwise
    """
    for text, words in more.items():
        if TEXTS.setdefault(text, words) != words:
            raise ValueError(f"notice text {text!r} is worded twice")


# text id → its arguments that are a day, kept as an ISO date ("2026-03-07") and worded by whoever renders the text in
# its language ("03月07日" here, "March 7" on an English reader's page): a day is no word of any one language.
DAYS: dict[str, tuple[str, ...]] = {"notice_suppressed": ("date",)}


def chinese_day(day: date) -> str:
    """A day as the Chinese texts give it (month and day, the year understood): 03月07日."""
    return f"{day:%m}月{day:%d}日"


# An argument that is a list (the names a process problem lists) is kept as a list and joined by whoever renders the
# text, with the catalogue's word for LIST_JOIN: "、" in Chinese, ", " in English (a joined string reads as stored).
LIST_JOIN = "、"


def render(text: str, args: Mapping[str, Any], translate: Any = None,
           day: Callable[[date], Any] = chinese_day) -> tuple[str, str]:
    """Return (title, body) of a text filled with its arguments; `translate` (msgid → text) for another language,
    `day` (a date → its words) for the text's DAYS; a list argument joined with LIST_JOIN in the language.

    Raises: KeyError for an unknown text or a placeholder without an argument, ValueError for a day that is no ISO date.
    """
    title, body = TEXTS[text]
    filled = dict(args)
    for name in DAYS.get(text, ()):
        if name in filled:
            filled[name] = day(date.fromisoformat(str(filled[name])))
    joiner = LIST_JOIN if translate is None else translate(LIST_JOIN)
    filled = {k: joiner.join(v) if isinstance(v, list | tuple) else v for k, v in filled.items()}
    if translate is not None:
        title, body = translate(title), translate(body) if body else body
    return title % filled, body % filled if body else ""


def params(text: str, args: Mapping[str, Any], words: Sequence[str] = ()) -> dict[str, Any]:
    """The stored form of a notice: its text id, its arguments (str, int or a list of str) and which of them are fixed
    words."""
    if text not in TEXTS:
        raise KeyError(text)
    stored: dict[str, Any] = {"text": text, "args": {
        k: v if isinstance(v, int) else [str(i) for i in v] if isinstance(v, list | tuple) else str(v)
        for k, v in args.items()}}
    if words:
        stored["words"] = list(words)
    return stored


__all__ = ["DAYS", "LIST_JOIN", "TEXTS", "chinese_day", "params", "register", "render"]
