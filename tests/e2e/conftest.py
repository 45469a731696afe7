"""Browser tests: a live jzflow server on a fresh database, driven by Debian's chromium (Playwright).

`live_server` migrates a fresh SQLite database, loads data/seed, deploys bpmn/, loads the demo
(`jzflow demo`) and flags the slow projects (the daily job) with the clock frozen at 2025-09-01 09:00
Asia/Shanghai, and serves `create_app` with werkzeug's `make_server` in a thread on 127.0.0.1 and a
free port, for the whole session. The clock stays frozen at that moment during every test. The
front-end bundle (web/static/dist) is the one `make setup` built (`make assets` rebuilds it); a missing
bundle fails naming that command.
Screenshots go to $JZFLOW_E2E_ARTIFACTS (default instance/e2e/).
Seeded users log in with the seed's development password.

`app_process` is the other way in: jzflow started as `make run` starts it (the Makefile's `run` recipe in
a temporary JZFLOW_INSTANCE_DIR: init-db, seed, deploy, demo, then `python -m web.run` with its Celery
worker and beat), on the real clock, stopped with SIGTERM; `desk` keeps one logged-in tab per user on it.
Its screenshots go to test-artifacts/e2e/.
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from engine import clock, deploy, migrate
from engine.db import make_engine, make_sessionmaker
from engine.org.actors import SYSTEM
from plan.data import demo, seed
from plan.projects import slow_projects

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 9, 1, 9, 0, tzinfo=clock.SHANGHAI)
PASSWORD = "jzflow-dev-2025"  # data/seed/users.yaml default_password
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
DIST = ROOT / "web" / "static" / "dist"
BUNDLES = ("jzflow.js", "jzflow.css", "dashboard.js", "modeller.js", "modeller.css")


@dataclass(frozen=True)
class LiveServer:
    url: str
    database_url: str


def require_bundle(dist: Path = DIST) -> None:
    """Fail, naming the command, when the front-end bundle is missing: `make setup` builds it, tests never run npm."""
    missing = [name for name in BUNDLES if not (dist / name).is_file()]
    if missing:
        pytest.fail(f"the front-end bundle is not built ({', '.join(missing)} missing in {dist}): run `make assets` "
                    "(`make setup` and `make test` build it)")



@contextmanager
def serving(url: str) -> Iterator[LiveServer]:
    """Serve the app on a free local port against `url` in a thread; stop it and unfreeze the clock after."""
    from web import create_app
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "e2e-secret", "RATELIMIT_ENABLED": False,
                      "JZFLOW_NO_KICK": True})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="e2e-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(f"http://127.0.0.1:{server.server_port}", url)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        app.extensions["jzflow.engine"].dispose()
        clock.unfreeze()

@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    require_bundle()
    url = f"sqlite:///{tmp_path_factory.mktemp('e2e') / 'jzflow.sqlite'}"
    migrate.upgrade(url)
    clock.freeze(NOW)
    engine = make_engine(url)
    session = make_sessionmaker(engine)()
    try:
        seed.load_seed(session)
        deploy.deploy(session, deploy.read_directory(ROOT / "bpmn"), actor=SYSTEM)
        session.commit()
        demo.load_demo(session)
        session.commit()
        slow_projects.flag_slow_projects(session, clock.now(), SYSTEM)  # what the daily beat job does
        session.commit()
    finally:
        session.close()
        engine.dispose()
    with serving(url) as live:
        yield live


@pytest.fixture(autouse=True)
def _frozen_now(request: pytest.FixtureRequest) -> Iterator[None]:
    """Keep the server's clock at NOW during each browser test (the shared `_clock` fixture unfreezes after)."""
    if "live_server" in request.fixturenames:
        clock.freeze(NOW)
    yield


@pytest.fixture(scope="session")
def artifacts() -> Path:
    path = Path(os.environ.get("JZFLOW_E2E_ARTIFACTS", ROOT / "instance" / "e2e"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    tab = context.new_page()
    yield tab
    context.close()


def log_in(page: Any, server: LiveServer, username: str, password: str = PASSWORD) -> None:
    """Log in through the login form."""
    page.goto(f"{server.url}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "/login" not in page.url, page.content()[:2000]


# --- the app as `make run` starts it ---------------------------------------------------------------------
#
# `app_process` runs the commands of the Makefile's `run` recipe (init-db, seed, deploy bpmn/, demo, then
# `python -m web.run`: the Celery worker with beat on the embedded SQLite broker and the web server) in a
# temporary JZFLOW_INSTANCE_DIR on a free JZFLOW_PORT, waits for /healthz, and in teardown sends SIGTERM to
# web.run's process group and checks that nothing it started (worker, pool, beat) outlives it. The clock is
# the real one: the demo is laid out relative to today. Screenshots go to test-artifacts/e2e/ (gitignored).

ARTIFACTS_E2E = ROOT / "test-artifacts" / "e2e"


@dataclass(frozen=True)
class AppProcess:
    url: str
    database_url: str
    instance_dir: Path
    log: Path
    pid: int

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def run_recipe(makefile: Path = ROOT / "Makefile") -> list[list[str]]:
    """The `run` target's commands from the Makefile, with $(JZ) and $(PY) resolved to this virtualenv."""
    lines = makefile.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("run:") and "=" not in line)  # not a variable
    commands: list[list[str]] = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        words = shlex.split(line.strip())
        replaced = {"$(JZ)": str(Path(sys.executable).with_name("jzflow")), "$(PY)": sys.executable}
        commands.append([replaced.get(w, w) for w in words])
    assert commands and commands[-1][1:] == ["-m", "web.run"], commands
    return commands


def children(pid: int) -> set[int]:
    """Every live descendant of a process (from /proc), so teardown can tell whether one was left behind."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"`python -m web.run` exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if json.loads(response.read()).get("status") == "ok":
                    return
        except OSError:
            pass
        time.sleep(0.2)  # polling a starting process, not waiting for the app's behaviour
    pytest.fail(f"the server did not answer /healthz within {timeout:.0f} s:\n{log.read_text(errors='replace')[-4000:]}")


@pytest.fixture(scope="session")
def app_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    """jzflow started the way the README starts it (`make run`), in a temporary instance folder."""
    require_bundle()  # `make run` builds the front-end first (its `setup` prerequisite)
    instance = tmp_path_factory.mktemp("make-run")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("JZFLOW_DATABASE_URL", "JZFLOW_REDIS_URL")}
    env.update(JZFLOW_INSTANCE_DIR=str(instance), JZFLOW_PORT=str(port), PYTHONUNBUFFERED="1")
    # the `run` target's own default (run: export JZFLOW_PUBLIC_URL ?= http://JZFLOW_HOST:JZFLOW_PORT)
    assert "run: export JZFLOW_PUBLIC_URL ?=" in (ROOT / "Makefile").read_text(encoding="utf-8")
    env.setdefault("JZFLOW_PUBLIC_URL", f"http://127.0.0.1:{port}")
    *setup, serve = run_recipe()
    for command in setup:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, f"{' '.join(command)} → {done.returncode}\n{done.stdout}\n{done.stderr}"
    log = instance / "web-run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(serve, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = AppProcess(f"http://127.0.0.1:{port}", f"sqlite:///{instance / 'jzflow.sqlite'}", instance, log, proc.pid)
    started: set[int] = set()
    try:
        _wait_healthy(server.url, proc, log)
        started = children(proc.pid)
        yield server
    finally:
        started |= children(proc.pid)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # what a service manager sends to stop it
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            pytest.fail(f"web.run ignored SIGTERM for 60 s:\n{log.read_text(errors='replace')[-4000:]}")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(pid) for pid in started):
            time.sleep(0.1)  # the worker's pool processes are reaped just after it
        orphans = sorted(pid for pid in started if _alive(pid))
        for pid in orphans:  # only what this fixture started, by id
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not orphans, f"processes left running after SIGTERM to web.run: {orphans}"


@pytest.fixture(scope="session")
def e2e_artifacts() -> Path:
    """test-artifacts/e2e/: screenshots kept by CI (the folder is gitignored)."""
    ARTIFACTS_E2E.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_E2E


def sign_in(browser: Any, server: AppProcess | LiveServer, username: str, password: str = PASSWORD) -> Any:
    """A new browser context logged in as `username` through the login form; returns its page."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    context.set_default_timeout(20000)
    tab = context.new_page()
    tab.goto(f"{server.url}/login")
    tab.fill("input[name=username]", username)
    tab.fill("input[name=password]", password)
    with tab.expect_navigation():
        tab.click("form[action^='/login'] button[type=submit]")
    assert "/login" not in tab.url, tab.content()[:2000]
    return tab


@dataclass
class Desk:
    """One logged-in browser tab per user for the whole session: the login form allows 10 attempts a minute
    per address, and every user here logs in from 127.0.0.1. `errors` collects page errors and 5xx answers."""

    browser: Any
    server: AppProcess
    tabs: dict[str, Any]
    errors: list[str]

    def __call__(self, username: str) -> Any:
        if username not in self.tabs:
            tab = sign_in(self.browser, self.server, username)
            tab.on("pageerror", lambda exc, who=username: self.errors.append(f"{who}: {exc}"))
            tab.on("response", lambda r, who=username: self.errors.append(f"{who}: {r.status} {r.url}")
                   if r.status >= 500 else None)
            self.tabs[username] = tab
        return self.tabs[username]


@pytest.fixture(scope="session")
def desk(browser: Any, app_process: AppProcess) -> Iterator[Desk]:
    found = Desk(browser, app_process, {}, [])
    yield found
    for tab in found.tabs.values():
        tab.context.close()


def flash_texts(page: Any) -> list[str]:
    """The page's flash messages (info and error)."""
    return [t.strip() for t in page.locator("main .flash").all_inner_texts()]


def step_name(task_name: str) -> Any:
    """Match a task's link by its step: "部门审查", or "部门审查 · 发展和改革局" (the step and what it works on)."""
    import re
    return re.compile(rf"^{re.escape(task_name)}( · .+)?$")


def open_from_inbox(page: Any, server: AppProcess | LiveServer, title: str, task_name: str) -> str:
    """Find the task `task_name` of the instance titled `title` in 待办 (filtered by the title) and open it."""
    from urllib.parse import quote
    page.goto(f"{server.url}/inbox?q={quote(title)}")
    step = step_name(task_name)
    row = page.locator("table.tasks tbody tr", has_text=title).filter(has=page.get_by_role("link", name=step))
    assert row.count() == 1, f"{task_name} of {title} is not in the inbox once:\n{page.locator('main').inner_text()}"
    with page.expect_navigation():
        row.get_by_role("link", name=step).click()
    page.locator("h1", has_text=task_name).wait_for()
    return str(page.url)


def submit_task(page: Any) -> list[str]:
    """Submit the task page's form (办理) and return the flashes of the page it leads to."""
    with page.expect_navigation():
        page.locator("form.task-form button[type=submit]").click()
    return flash_texts(page)
