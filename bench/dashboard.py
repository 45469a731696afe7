"""Benchmark: the 经济运行监测 page (/dashboard) on the demo data, as a city leader sees it.

    python bench/dashboard.py [--db sqlite|postgres] [--repeat N] [--warmup N] [--profile]

A fresh database (SQLite file in a temporary directory, or a throwaway PostgreSQL database at
JZFLOW_BENCH_PG_URL) is migrated, seeded (data/seed), bpmn/ deployed, the demo loaded
(`jzflow demo`) and the slow projects flagged (issues raised), with the clock frozen at
2025-09-01 09:00 Asia/Shanghai. Then the whole request is timed through Flask's test client,
logged in as a city leader (everything in scope): routing, session, the read models
(plan.dashboard.overview) and the template. The last line is `p95_ms=<x>`.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import re
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == _ROOT / "bench":
    sys.path[0] = str(_ROOT)

from sqlalchemy import create_engine, select, text
from werkzeug.security import generate_password_hash

from engine import clock, deploy, migrate
from engine.db import make_engine, make_sessionmaker
from engine.org.actors import SYSTEM
from engine.org.models import User
from plan.data import demo, seed
from plan.projects import slow_projects

NOW = datetime(2025, 9, 1, 9, 0, tzinfo=clock.SHANGHAI)
LEADER = "wangjianguo"
PASSWORD = "bench-Passw0rd"
PG_URL = os.environ.get("JZFLOW_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/")


def prepare(url: str) -> str:
    """Migrate, seed, deploy, load the demo and flag slow projects; return the demo's summary."""
    migrate.upgrade(url)
    engine = make_engine(url)
    session = make_sessionmaker(engine)()
    try:
        seed.load_seed(session)
        deploy.deploy(session, deploy.read_directory(_ROOT / "bpmn"), actor=SYSTEM)
        session.commit()
        summary = demo.load_demo(session)
        session.commit()
        slow_projects.flag_slow_projects(session, clock.now(), SYSTEM)
        password = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
        for user in session.scalars(select(User)):
            user.password_hash = password
        session.commit()
        return summary
    finally:
        session.close()
        engine.dispose()


def measure(url: str, repeat: int, warmup: int, profile: bool) -> list[float]:
    from web import create_app
    app = create_app({"DATABASE_URL": url, "TESTING": True, "WTF_CSRF_ENABLED": False, "RATELIMIT_ENABLED": False,
                      "SECRET_KEY": "bench"})
    client = app.test_client()
    response = client.post("/login", data={"username": LEADER, "password": PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    for _ in range(warmup):
        page = client.get("/dashboard")
        assert page.status_code == 200, page.status_code
    html = client.get("/dashboard").get_data(as_text=True)
    found = re.findall(r'<tr data-code="[^"]+" data-light="(\w+)">', html)
    lights = {light: found.count(light) for light in ("red", "yellow", "green", "none")}
    print(f"page: {len(html) // 1024} KiB, indicator lights {lights}")
    profiler = cProfile.Profile() if profile else None
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        if profiler:
            profiler.enable()
        page = client.get("/dashboard")
        if profiler:
            profiler.disable()
        times.append((time.perf_counter() - start) * 1000)
        assert page.status_code == 200
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
        print(out.getvalue())
    app.extensions["jzflow.engine"].dispose()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    clock.freeze(NOW)
    with tempfile.TemporaryDirectory() as tmp:
        admin = None
        if args.db == "sqlite":
            url = f"sqlite:///{tmp}/dashboard.sqlite"
        else:
            name = f"jzflow_bench_dash_{uuid.uuid4().hex[:8]}"
            admin = create_engine(PG_URL + "postgres", isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            url = PG_URL + name
        try:
            print(f"demo: {prepare(url)}")
            times = measure(url, args.repeat, args.warmup, args.profile)
        finally:
            if admin is not None:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
                admin.dispose()
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * len(times)) - 1)]
    print(f"db={args.db} requests={len(times)} median_ms={statistics.median(times):.1f} max_ms={times[-1]:.1f}")
    print(f"p95_ms={p95:.1f}")


if __name__ == "__main__":
    main()
