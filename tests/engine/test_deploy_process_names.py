"""A process id or name longer than its row holds is refused at deploy naming the file and the process
(engine/spiff/parser.py): before, PostgreSQL refused the row (value too long for varchar(120)), a 500 in the modeller
that named nothing, and a traceback from `jzflow deploy`."""
from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from engine import deploy
from engine.errors import DeployInvalid
from engine.org.actors import SYSTEM
from tests.engine.test_run_budget import HEAD


def _process(pid: str, name: str) -> bytes:
    return (HEAD + f"""  <bpmn:process id="{pid}" name="{name}" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:endEvent id="end"><bpmn:incoming>f1</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>""").encode()


@pytest.mark.parametrize(("pid", "name", "said"), [
    ("p" * 121, "短", "process id of 121 characters, at most 120"),
    ("long_name", "名" * 201, "process name of 201 characters, at most 200"),
])
def test_a_process_id_or_name_past_its_column_is_refused_naming_it(session: Session, pid: str, name: str,
                                                                   said: str) -> None:
    with pytest.raises(DeployInvalid) as info:
        deploy.deploy(session, {"long.bpmn": _process(pid, name)}, actor=SYSTEM, check_lanes=False)
    problem = next(p for p in info.value.problems if said in p.message)
    assert problem.file == "long.bpmn" and problem.element_id == pid[:120]


def test_the_longest_id_and_name_deploy(session: Session) -> None:
    deployed = deploy.deploy(session, {"long.bpmn": _process("p" * 120, "名" * 200)}, actor=SYSTEM, check_lanes=False)
    session.flush()
    assert deployed[0].key == "p" * 120
