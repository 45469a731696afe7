"""Domain errors: a small tree, each with a stable id and an HTTP status, translated once in web/."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


class EngineError(Exception):
    """Base of every error a user or client can cause."""

    code: ClassVar[str] = "engine_error"
    http_status: ClassVar[int] = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly description for APIs and the CLI."""
        return {"error": self.code, "message": self.message, **self.details}


class NotFound(EngineError):
    code = "not_found"
    http_status = 404


class ProcessNotFound(NotFound):
    code = "process_not_found"


class InstanceNotFound(NotFound):
    code = "instance_not_found"


class TaskNotFound(NotFound):
    code = "task_not_found"


class UserNotFound(NotFound):
    code = "user_not_found"


class TokenExpired(EngineError):
    """A bearer token past its expiry: refused as a credential, told apart from an unknown one."""

    code = "token_expired"
    http_status = 401


class PasswordChangeRequired(EngineError):
    """A bearer token of a person who must first change the temporary password an administrator set: refused as a
    credential (told apart from an unknown one), and revoked when they change it (engine.org.core.change_password)."""

    code = "password_change_required"
    http_status = 401


class Forbidden(EngineError):
    code = "forbidden"
    http_status = 403


class NotYourTask(Forbidden):
    code = "not_your_task"


class DutyRefused(NotYourTask):
    """职责分离: the step is not theirs to take or finish because of what they did on the same case (the message names
    the rule; a step of a process, also raised from inside a run: the completion is refused, never an incident)."""

    code = "separation_of_duties"


class StepOutOfReach(NotYourTask):
    """The step acts on something out of the person's reach (another unit's record: engine.tasks.fit): it is
    not theirs to take, finish or be handed (the message names the reason; also raised from inside a run for data
    they did not submit: the completion is refused, never an incident)."""

    code = "step_out_of_reach"

    @classmethod
    def of(cls, reason: str, **details: Any) -> StepOutOfReach:
        """The refusal of the person's taking or completing the step, for `reason` ("中文 (English)")."""
        zh, en = _halves(reason)
        return cls(f"您不能办理此任务：{zh}。未作任何更改，请联系上级把任务改派给能办理的人 "
                   f"(you cannot complete this task: {en}; nothing was changed, ask a leader to reassign it)",
                   reason=reason, **details)

    @classmethod
    def handed(cls, who: str, field: str, reason: str, **details: Any) -> StepOutOfReach:
        """The refusal of handing the step (转办给, 委派给, 改派给: `who`) to a person chosen in `field`."""
        zh, en = _halves(reason)
        return cls(f"{who}（{field}）：{zh}，此人不能办理此任务，请另选他人 "
                   f"({field}: {en}; they cannot complete this task, choose someone else)",
                   field=field, reason=reason, **details)


def _halves(message: str) -> tuple[str, str]:
    """The Chinese and the English of a "中文 (English)" message (the whole message twice when it has no gloss)."""
    head, paren, gloss = message.rstrip().rstrip(")").rpartition(" (")
    return (head, gloss) if paren and head and "(" not in gloss else (message, message)


class OutOfReach(Exception):
    """Mixed into the InvalidInput a service raises for something out of the acting person's reach: a field the person
    submitted is theirs to correct (the submission is refused naming it); otherwise their completion is refused
    (StepOutOfReach), not the instance stopped in an incident (engine/runtime/refusal.py)."""


class Conflict(EngineError):
    code = "conflict"
    http_status = 409


class ConcurrentModification(Conflict):
    code = "concurrent_modification"

    def __init__(self, instance_id: int) -> None:
        super().__init__("其他人刚刚处理了此事项，请刷新后重试 (someone else just acted; reload)",
                         instance_id=instance_id)


class InstanceBusy(Conflict):
    """Another piece of work holds the instance longer than the caller waits: nothing was changed, try again."""

    code = "instance_busy"

    def __init__(self, instance_id: int) -> None:
        super().__init__(f"流程实例 {instance_id} 正在被其他操作处理，请稍后重试 "
                         f"(instance {instance_id} is busy, try again)", instance_id=instance_id)


class TaskNotReady(Conflict):
    code = "task_not_ready"


class AlreadyClaimed(Conflict):
    code = "already_claimed"


class InstanceNotRunning(Conflict):
    code = "instance_not_running"


class InstanceArchived(Conflict):
    """The instance was archived: it is read-only (no migration, retry, reopen or other change)."""

    code = "instance_archived"


class RateLimited(EngineError):
    code = "rate_limited"
    http_status = 429


class InvalidInput(EngineError):
    code = "invalid_input"
    http_status = 422


@dataclass(frozen=True)
class FieldError:
    """One problem with one submitted field (a JSON pointer-ish path)."""

    field: str
    message: str


class FormInvalid(InvalidInput):
    code = "form_invalid"

    def __init__(self, errors: list[FieldError]) -> None:
        summary = "; ".join(f"{e.field}: {e.message}" for e in errors)
        super().__init__(f"表单数据无效 (form invalid): {summary}",
                         fields=[{"field": e.field, "message": e.message} for e in errors])
        self.errors = errors


class SubmissionRefused(FormInvalid):
    """A service the engine ran right after a person's submission refused what they entered (InvalidInput naming a
    field of their form): the submission is refused as a form is, and nothing of it was kept (engine/runtime/refusal.py).
    """

    def __init__(self, errors: list[FieldError], *, bpmn_id: str | None = None) -> None:
        super().__init__(errors)
        if bpmn_id:
            self.details["bpmn_id"] = bpmn_id  # the step that refused it, for the logs and API clients
        self.bpmn_id = bpmn_id


@dataclass(frozen=True)
class DeployProblem:
    """One reason a deployment was refused, pinned to file, element and line.

    A problem written for process owners carries its Chinese `template` (a translation catalogue msgid
    with %(name)s fields) and the `params` filled in; `message` is the Chinese text. The web layer
    shows `gettext(template) % params`, so the English UI reads the catalogue's English.
    """

    file: str
    message: str
    element_id: str | None = None
    line: int | None = None
    template: str | None = None
    params: dict[str, str | int] | None = None

    @classmethod
    def said(cls, file: str, template: str, *, element_id: str | None = None, line: int | None = None,
             **params: str | int) -> DeployProblem:
        """Build a problem in the process owner's words from a catalogue template and its fields."""
        return cls(file, template % params if params else template, element_id=element_id, line=line,
                   template=template, params=dict(params))

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.element_id:
            where += f" [{self.element_id}]"
        return f"{where}: {self.message}"


class DeployInvalid(InvalidInput):
    """The files do not validate; nothing was stored."""

    code = "deploy_invalid"

    def __init__(self, problems: list[DeployProblem]) -> None:
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"部署被拒绝 (deployment refused), {len(problems)} problem(s):\n{lines}",
                         problems=[vars(p) for p in problems])
        self.problems = problems


class IncidentRaised(EngineError):
    """The engine hit an error in a script, expression or budget; the instance holds an incident."""

    code = "incident"
    http_status = 409
