"""Browser tests: a live jzflow server on a fresh database, driven by Debian's chromium (Playwright).

`live_server` migrates a fresh SQLite database, loads data/seed, deploys bpmn/, loads the demo
(`jzflow demo`) and flags the slow projects (the daily job) with the clock frozen at 2025-09-01 09:00
Asia/Shanghai, and serves `create_app` with werkzeug's `make_server` in a thread on 127.0.0.1 and a
free port, for the whole session. The
clock stays frozen at that moment during every test. The front-end bundle (web/static/dist) is
built first if it is missing. Screenshots go to $JZFLOW_E2E_ARTIFACTS (default instance/e2e/).
Seeded users log in with the seed's development password.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from engine import clock, migrate
from engine.db import make_engine, make_sessionmaker
from engine.services import demo, deploy, seed, slow_projects
from engine.services.actors import SYSTEM

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 9, 1, 9, 0, tzinfo=clock.SHANGHAI)
PASSWORD = "jzflow-dev-2025"  # data/seed/users.yaml default_password
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
BUNDLES = ("jzflow.js", "dashboard.js")


@dataclass(frozen=True)
class LiveServer:
    url: str
    database_url: str


def _build_bundle() -> None:
    dist = ROOT / "web" / "static" / "dist"
    if all((dist / name).is_file() for name in BUNDLES):
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("the front-end bundle is not built and npm is missing: run `npm ci && npm run build`")
    if not (ROOT / "node_modules").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=ROOT, check=True, timeout=600)
    subprocess.run([npm, "run", "build"], cwd=ROOT, check=True, timeout=600)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    _build_bundle()
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
