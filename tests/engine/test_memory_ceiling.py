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
    limit = memory.apply_limit()
    row = instances.start(session, process_key="p", actor=SYSTEM)
    session.commit()
    kind = session.scalar(select(Incident.kind).where(Incident.instance_id == row.id))
    print(json.dumps({"limit": limit, "status": row.status, "kind": kind}))
""")


def test_hole4_memory_error_under_the_ceiling_becomes_an_incident(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "JZFLOW_MEMORY_LIMIT_MB": "400",
           "JZFLOW_INSTANCE_DIR": str(tmp_path), "JZFLOW_SCRIPT_TIME_LIMIT": "20"}
    done = subprocess.run([sys.executable, "-c", SCENARIO, f"sqlite:///{tmp_path / 'x.sqlite'}"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"limit": 400 * 1024 * 1024, "status": "incident", "kind": "out_of_memory"}
