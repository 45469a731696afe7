"""`make run`: the embedded default in one command — web, Celery worker and beat, no servers needed.

Prints the URL and the demo logins, then serves until Ctrl-C, stopping the worker with it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from engine import config

HOST = os.environ.get("JZFLOW_HOST", "127.0.0.1")
PORT = config.whole("JZFLOW_PORT", 5000, least=1)


def _banner(settings: config.Settings) -> str:
    from engine.db import make_engine, make_sessionmaker
    from engine.org import directory
    engine = make_engine(settings.database_url)
    lines = [f"jzflow 胶州经济工作流: http://{HOST}:{PORT}/",
             f"  database {settings.database_url}",
             f"  broker   {settings.broker_url}"]
    try:
        with make_sessionmaker(engine)() as session:
            logins, admin = directory.demo_logins(session)
            lines.append("  demo logins (password: jzflow-dev-2025):")
            for username, name, role in logins:
                lines.append(f"    {username:<16} {name} — {role}")
            if admin:
                lines.append(f"    {admin:<16} 管理员 (admin)")
    finally:
        engine.dispose()
    return "\n".join(lines)


def _stop(_signum: int, _frame: object) -> None:
    raise SystemExit(0)  # unwind through main's `finally`, which stops the worker too


def main() -> None:
    """Start the worker (with beat) as a child process and serve the web app in this one."""
    settings = config.load()
    # SIGTERM's default action ends this process at once and would leave the worker, in a session of its own,
    # running as an orphan: turn it (and SIGHUP, a closed terminal) into a normal exit.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "engine.celery_app:celery", "worker",  # nosec B603 # fixed argv
                               "--beat", "--loglevel=WARNING", "--concurrency=2"],
                              cwd=Path(__file__).resolve().parent.parent, start_new_session=True)
    try:
        print(_banner(settings), flush=True)
        from engine import memory
        from engine.ops import logs
        from web import create_app
        logs.configure()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the app logs each request (with its id) itself
        memory.apply_limit()
        create_app().run(host=HOST, port=PORT, threaded=True, use_reloader=False)
    finally:
        # Warm shutdown: SIGTERM to the worker alone, which stops its pool and beat itself. (Sent to the whole
        # group, the pool processes die under the worker, which then hangs until it is killed.)
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGKILL)  # the worker and its pool processes
            worker.wait(timeout=10)


if __name__ == "__main__":
    main()
