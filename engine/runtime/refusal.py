"""A service refusing a person's submission: the submission is refused whole instead of an incident.

The contract. A person completes a task (the inbox form, POST /api/…/complete, 批量办理, 督办's decision) or starts a
process with data (the start page, the API, the CLI); the engine then runs the steps that follow in the same
transaction (engine/runtime/core.py `run`). When a service task reached in those steps — the next one, one several
steps on, one on a parallel branch — raises InvalidInput (FormInvalid, FieldError) naming a field of the form that
person submitted, the data is theirs to correct: `refuse` raises SubmissionRefused (a FormInvalid, 422, the service's
message under the field) out of the completion, and the caller rolls its transaction back. Nothing is kept: the task
stays open with its old data, no audit event of the completion, no notification, no projection change, lock_version as
it was, and no workflow in the hot-instance cache (the run took its workflow out of the cache; a save never ran, and a
rollback discards any pending entry of an instance the run started or told).

A service refusing something out of the person's reach (an InvalidInput that is an OutOfReach: another unit's
record) in data they did not submit (one an earlier step chose) refuses their completion the same way,
as StepOutOfReach (403) naming the reason: the step is not theirs to do (engine.tasks.fit), and a leader can 改派 it.

Everything else stays an incident, as before: an InvalidInput naming no field, or a field the person did not submit
(data an earlier step put there: not theirs to correct); another error of a service (Conflict, NotFound, a bug); steps
nobody submitted just now (a timer, a message, a submission held for co-signers and finished by the last one's
signature, an instance a service, a message or a signal started): `Running.refusable` is None there.
"""
from __future__ import annotations

from collections.abc import Iterable

from engine.errors import FieldError, FormInvalid, InvalidInput, OutOfReach, StepOutOfReach, SubmissionRefused
from engine.runtime.running import Running


def _errors(found: InvalidInput) -> list[FieldError]:
    if isinstance(found, FormInvalid):
        return list(found.errors)
    field = found.details.get("field")
    return [FieldError(field, found.message)] if isinstance(field, str) and field else []


def refuse(running: Running, chain: Iterable[BaseException]) -> None:
    """Refuse the person's submission when a service in its engine steps refused a field they submitted, or
    something out of their reach; else return (the caller opens the incident). `chain`: the error and its causes,
    outermost first.

    Raises: SubmissionRefused, StepOutOfReach
    """
    if running.refusable is None:
        return
    chain = list(chain)
    found = next((e for e in chain if isinstance(e, InvalidInput)), None)
    if found is None:
        return
    errors = _errors(found)
    if errors and all(e.field.split("/")[0] in running.refusable for e in errors):
        task = next((getattr(e, "task", None) for e in chain if getattr(e, "task", None) is not None), None)
        bpmn_id = getattr(getattr(task, "task_spec", None), "bpmn_id", None)
        raise SubmissionRefused(errors, bpmn_id=bpmn_id if isinstance(bpmn_id, str) else None) from found
    if isinstance(found, OutOfReach):  # data they did not submit names what they cannot reach: not theirs to do
        raise StepOutOfReach.of(found.message) from found


__all__ = ["refuse"]
