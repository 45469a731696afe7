"""SpiffWorkflow's BPMN parser with what it leaves out of the standard put back: a signal end event throws its signal.

BPMN 2.0 (10.5.3, End Event): "the associated signal is sent for a Signal End Event". SpiffWorkflow 3.2.0's parser reads
message, cancel, error, escalation and terminate end events only; a signal end event was parsed as a plain one, deployed
without a word, and threw nothing, so the instances waiting on it waited for ever.
"""
from __future__ import annotations

from typing import Any, ClassVar

from SpiffWorkflow.bpmn.parser.event_parsers import (
    CANCEL_EVENT_XPATH,
    ERROR_EVENT_XPATH,
    ESCALATION_EVENT_XPATH,
    MESSAGE_EVENT_XPATH,
    SIGNAL_EVENT_XPATH,
    TERMINATION_EVENT_XPATH,
)
from SpiffWorkflow.bpmn.parser.util import full_tag
from SpiffWorkflow.spiff.parser.event_parsers import SpiffEndEventParser
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser


class EndEventParser(SpiffEndEventParser):  # type: ignore[misc]
    """An end event with its signal too: SpiffWorkflow 3.2.0 reads message, cancel, error, escalation and terminate
    end events only, and parsed a signal end event as a plain one, which threw nothing. Its spec (EndEvent, a
    ThrowingEvent) throws whatever definition it is given when it runs, as an intermediate throw does."""

    def create_task(self) -> Any:
        definition = self.get_event_definition([MESSAGE_EVENT_XPATH, SIGNAL_EVENT_XPATH, CANCEL_EVENT_XPATH,
                                                ERROR_EVENT_XPATH, ESCALATION_EVENT_XPATH, TERMINATION_EVENT_XPATH])
        task = self._create_task(definition)
        task.connect(self.spec.end)
        return task


_END = full_tag("endEvent")


class Parser(SpiffBpmnParser):  # type: ignore[misc]
    """SpiffWorkflow.spiff's parser (messageVariable, messagePayload, process correlations) with `EndEventParser`."""

    OVERRIDE_PARSER_CLASSES: ClassVar[dict[str, tuple[type, type]]] = {
        **SpiffBpmnParser.OVERRIDE_PARSER_CLASSES, _END: (EndEventParser, SpiffBpmnParser.OVERRIDE_PARSER_CLASSES[_END][1])}


__all__ = ["EndEventParser", "Parser"]
