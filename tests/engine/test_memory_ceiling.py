"""Trust I hole 4: under the per-process memory ceiling, a script that fills memory ends as an incident.

The ceiling (RLIMIT_DATA) is process-wide, so the scenario runs in a subprocess with a small limit.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCENARIO = textwrap.dedent("""
    import json, sys
    from xml.sax.saxutils import escape
    from engine import memory, migrate
    from engine.db import make_engine, make_sessionmaker
    from engine import deploy
    from engine.runtime import instances
    from engine.runtime.models import Incident
    from engine.org.actors import SYSTEM
    from sqlalchemy import select
    from tests.engine.test_trust_limits import process, script

    url = sys.argv[1]
    migrate.upgrade(url)
    session = make_sessionmaker(make_engine(url))()
    deploy.deploy(session, process(script("xs = ['x' * 900000 + str(i) for i in range(3000)]")), actor=SYSTEM,
                  check_lanes=False)
    session.commit()
    # The ceiling is on the data segment, which holds what the process has mapped already (the engine's thread stacks
    # among it, ~400 MB here): the cap leaves it room for a run's own allocations, and none for the script's 2.7 GB.
    data_kb = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmData:")))
    limit = memory.apply_limit(data_kb // 1024 + int(sys.argv[2]))
    row = instances.start(session, process_key="p", actor=SYSTEM)
    session.commit()
    kind = session.scalar(select(Incident.kind).where(Incident.instance_id == row.id))
    print(json.dumps({"limit": limit, "status": row.status, "kind": kind}))
""")


def test_hole4_memory_error_under_the_ceiling_becomes_an_incident(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "JZFLOW_INSTANCE_DIR": str(tmp_path),
           "JZFLOW_SCRIPT_TIME_LIMIT": "20"}
    done = subprocess.run([sys.executable, "-c", SCENARIO, f"sqlite:///{tmp_path / 'x.sqlite'}", "300"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["limit"] is not None and result["limit"] < 2 * 1024 ** 3  # below what the script asks for
    assert (result["status"], result["kind"]) == ("incident", "out_of_memory")
