"""Run a real Celery worker as a subprocess for integration tests (docs/architecture.md).

The worker runs in its own session (process group), so `kill()` takes down the main process,
its prefork pool children and an embedded beat at once — what a power cut or an OOM kill does.
Its output goes to a log file under the test's tmp_path; every failure message carries the tail.
Use `Workers` as a context manager (or from a fixture) so no process outlives its test.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from engine import clock, config
from engine.db import session_scope
from engine.org.actors import SYSTEM
from engine.runtime import instances

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def worker_env(settings: Mapping[str, str]) -> dict[str, str]:
    """Return this process's environment without any JZFLOW_* setting, plus `settings`.

    A developer's own JZFLOW_REDIS_URL must not turn the embedded test into a Redis test.
    """
    keep = ("JZFLOW_AUDIT_KEY", "JZFLOW_AUDIT_ANCHOR")  # the run's audit key and anchor file (tests/conftest.py)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JZFLOW_") or k in keep}
    env.update(settings)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class WorkerFailed(AssertionError):
    """The worker died, or what we waited for did not happen in time."""


class Worker:
    """One `celery worker` subprocess: start(env), wait_until(predicate), kill(), stop()."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._offset = 0  # where this run's output starts in the (appended) log

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, env: Mapping[str, str], *, beat: bool = False, concurrency: int = 1) -> Worker:
        """Start the worker with exactly these JZFLOW_* settings (see `worker_env`)."""
        if self.running:
            raise RuntimeError("worker already running")
        argv = [sys.executable, "-m", "celery", "-A", "engine.celery_app:celery", "worker",
                f"--concurrency={concurrency}", "--pool=prefork", "--loglevel=INFO", "--without-gossip",
                "--without-mingle", f"--hostname=jztest-{os.getpid()}-{time.monotonic_ns()}@%h"]
        if beat:
            argv.append("--beat")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in _reap)
        self._offset = self._log.tell()
        self._log.write(f"\n===== start {' '.join(argv[2:])}\n".encode())
        self._log.flush()
        self.process = subprocess.Popen(argv, cwd=REPO, env=worker_env(env), stdin=subprocess.DEVNULL,
                                        stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def log_tail(self, lines: int = 60) -> str:
        """Return the last lines of the log, for failure messages."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no worker log)"
        return "\n".join(text.splitlines()[-lines:])

    def _fail(self, message: str) -> WorkerFailed:
        return WorkerFailed(f"{message}\n----- tail of {self.log_path} -----\n{self.log_tail()}")

    def wait_until(self, predicate: Callable[[], T], timeout: float, *, what: str = "condition",
                   poll: float = 0.05) -> T:
        """Poll `predicate` until it returns something truthy; fail with the log if the worker dies."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if self.process is not None and self.process.poll() is not None:
                raise self._fail(f"worker exited with code {self.process.returncode} while waiting for {what}")
            if time.monotonic() > deadline:
                raise self._fail(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(poll)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the worker says it is ready to consume."""
        def ready() -> bool:
            try:
                with open(self.log_path, "rb") as fh:
                    fh.seek(self._offset)
                    return b" ready." in fh.read()
            except FileNotFoundError:
                return False
        self.wait_until(ready, timeout, what="the worker to be ready", poll=0.05)

    def pool_children(self) -> list[int]:
        """Return the pids of the worker's direct children (prefork pool processes, beat), from /proc."""
        if self.process is None:
            return []
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # the process ended while we looked
            if int(fields[1]) == self.process.pid:
                children.append(int(stat.parent.name))
        return children

    def kill(self) -> None:
        """SIGKILL the whole process group: main process, pool children and beat, mid-job."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._reap(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        """Warm shutdown (SIGTERM to the main process), then SIGKILL whatever is left of the group."""
        if self.process is None:
            return
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # pool children or beat left behind
            except (ProcessLookupError, PermissionError):
                pass
            self._reap(timeout=10)

    def _reap(self, timeout: float) -> None:
        assert self.process is not None
        try:
            self.process.wait(timeout)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None


class Workers:
    """Start workers that log under `log_dir`; on exit, stop every one of them, whatever happened."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Worker] = []

    def start(self, env: Mapping[str, str], *, beat: bool = False) -> Worker:
        """Start one more worker (with its own log file) and wait until it consumes."""
        worker = Worker(self.log_dir / f"worker{len(self.started) + 1}.log")
        self.started.append(worker)
        worker.start(env, beat=beat)
        worker.wait_ready()
        return worker

    def tails(self, lines: int = 40) -> str:
        """Return the tails of every worker's log, for assertion messages."""
        return "".join(f"\n----- tail of {w.log_path} -----\n{w.log_tail(lines)}" for w in self.started)

    def stop_all(self) -> None:
        errors: list[BaseException] = []
        for worker in reversed(self.started):
            try:
                worker.stop()
            except BaseException as exc:  # keep stopping the others
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop_all()


def send_task(settings: config.Settings, name: str) -> None:
    """Enqueue a job by name on the broker of `settings`, as web or beat would (then let go of it)."""
    from engine.celery_app import make_celery
    app = make_celery(settings)
    try:
        with app.producer_or_acquire() as producer:
            app.send_task(name, producer=producer)
    finally:
        app.close()


def start_due_instances(factory: sessionmaker[Session], process_key: str, count: int,
                        data: Mapping[str, Any]) -> list[int]:
    """Start instances with the clock two hours back, so a one-hour timer is due for the worker's wall clock."""
    clock.freeze(datetime.now(clock.UTC) - timedelta(hours=2))
    try:
        with session_scope(factory) as session:
            return [instances.start(session, process_key=process_key, actor=SYSTEM, data=dict(data)).id
                    for _ in range(count)]
    finally:
        clock.unfreeze()
