"""Throughput: task completions per second through the web app's JSON API under gunicorn, on PostgreSQL.

    python bench/throughput.py [--duration 60] [--clients 8] [--workers 2] [--threads 4] [--instances 4] [--others N]

A fresh PostgreSQL database (bench/common.py) gets the bench org and processes and `--others` instances bulk-loaded
and analysed, as an office's database would be after some months (bench/engine.py's seeding); each client is a
user of its own with an API token and `--instances` instances of `bench_loop` (fixtures/bench_loop.bpmn:
every completion of its `report` user task runs one more round and opens the next one). gunicorn serves
the product's entry point `web.wsgi:app` (its logging at INFO: a line a request, written to a file in the run's
folder, shown if the run fails; `--factory`: `web:create_app` as before the twenty-first pass, no logging set up)
on 127.0.0.1 only (a free port) with `--workers` processes of `--threads` threads;
the API rate limit is lifted for the run (still counted: in-process, or in Redis with `--redis URL`). The
clients (threads of this process, one keep-alive connection each, the request http.client would send written on
a plain socket) complete their instances' open tasks
round-robin — different instances, so no two clients race for one instance — as fast as answers come, for
`--warmup` seconds untimed and then `--duration` seconds. Every answer must be 200 with the next task;
afterwards the database must hold exactly as many completed tasks as answers counted.

Last line: `per_s=<completions per second> p95_ms=<95th percentile of a completion's round trip>`.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == _ROOT / "bench":
    sys.path[0] = str(_ROOT)

from sqlalchemy import func, select

from bench import common
from bench import engine as engine_bench
from engine import org
from engine.org import tokens
from engine.org.actors import actor_for
from engine.runtime.instances import start
from engine.tasks.models import HumanTask

PROCESS = "bench_loop"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Client(threading.Thread):
    """One API user completing its instances' open tasks round-robin."""

    def __init__(self, port: int, token: str, task_ids: list[int], stop: threading.Event,
                 measuring: threading.Event, *, fresh: bool = False) -> None:
        super().__init__(daemon=True)
        self.fresh = fresh
        self.port, self.token, self.task_ids = port, token, task_ids
        self.stop, self.measuring = stop, measuring
        self.latencies: list[float] = []
        self.done = 0  # every 200 answer, warm-up included
        self.errors: list[str] = []

    def run(self) -> None:
        # The request as http.client writes it (the same request line and headers, so the server's work per request
        # is what such a client causes), on a plain socket: http.client's request assembly and its header parsing
        # through the email package took client CPU the server shares the two cores with (bench/README, 21st pass).
        head = (f"Host: 127.0.0.1:{self.port}\r\nAccept-Encoding: identity\r\n"
                f"Authorization: Bearer {self.token}\r\nContent-Type: application/json\r\n").encode()
        conn: _Connection | None = None
        n = 0
        try:
            while not self.stop.is_set():
                slot = n % len(self.task_ids)
                body = json.dumps({"data": {"progress": f"第{n}轮", "done": False}}).encode()
                request = (f"POST /api/tasks/{self.task_ids[slot]}/complete HTTP/1.1\r\n".encode() + head
                           + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                began = time.perf_counter()
                if conn is None or self.fresh:  # fresh: a connection per request, as a proxy without a keep-alive pool
                    if conn is not None:
                        conn.close()
                    conn = _Connection(self.port)
                status, payload = conn.exchange(request)
                elapsed = time.perf_counter() - began
                if status != 200:
                    self.errors.append(f"{status}: {payload[:200]!r}")
                    return
                answer = json.loads(payload)
                if answer.get("status") != "running" or len(answer.get("next_tasks") or []) != 1:
                    self.errors.append(f"unexpected answer {answer}")
                    return
                self.task_ids[slot] = int(answer["next_tasks"][0])
                self.done += 1
                if self.measuring.is_set():
                    self.latencies.append(elapsed)
                n += 1
        except Exception as exc:  # a dead server or a broken connection ends this client; reported below
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            if conn is not None:
                conn.close()


class _Connection:
    """One keep-alive HTTP/1.1 connection: send a request, read the status and a Content-Length body."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as http.client sets it
        self.buffer = b""

    def exchange(self, request: bytes) -> tuple[int, bytes]:
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding":
                raise ConnectionError("a chunked answer: this client reads Content-Length bodies only")
        if length is None:
            raise ConnectionError("an answer without Content-Length")
        while len(self.buffer) < length:
            self._read()
        payload, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, payload

    def _read(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc's CPU times are in these


def _workers(server_pid: int) -> list[tuple[Path, list[str]]]:
    """The gunicorn workers (children of the master) as (their /proc folder, the fields of their stat after the
    name); [] elsewhere."""
    found: list[tuple[Path, list[str]]] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a process that ended while we looked
        if int(fields[1]) == server_pid:  # fields[1] is the parent's pid
            found.append((stat.parent, fields))
    return found


def _worker_cpu(server_pid: int) -> list[float]:
    """CPU seconds used so far by each gunicorn worker, from /proc; [] elsewhere."""
    return sorted((int(fields[11]) + int(fields[12])) / _TICKS  # utime and stime
                  for _folder, fields in _workers(server_pid))


def _worker_switches(server_pid: int) -> int:
    """Context switches so far of all threads of the gunicorn workers (voluntary and not), from /proc; 0 elsewhere.

    A thread that gives up the GIL for a system call, or waits for a database answer, is switched out: the count
    per completion shows such handovers, which cost the machine's CPU without showing in the profiles.
    """
    total = 0
    for folder, _fields in _workers(server_pid):
        for status in folder.glob("task/*/status"):
            try:
                lines = status.read_text().splitlines()
            except OSError:
                continue  # a thread that ended while we looked
            total += sum(int(line.split()[1]) for line in lines if "ctxt_switches:" in line)
    return total


def _machine_cpu() -> float:
    """CPU seconds the whole machine spent busy so far (all cores, /proc/stat); 0 elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    busy = sum(int(v) for i, v in enumerate(fields[:8]) if i not in (3, 4))  # all but idle and iowait
    return busy / _TICKS


# The repository's gunicorn.conf.py with one hook more: each worker says when it has loaded the app. The clients
# connect only once every worker is up: connected while the first one alone was, their keep-alive connections would
# all stay with it and the run would measure one worker (half the figure, in three of four runs before this).
_CONFIG = """\
import os, runpy
from pathlib import Path
globals().update({{k: v for k, v in runpy.run_path({conf!r}).items() if not k.startswith("__")}})


def post_worker_init(worker):
    Path({ready!r}, str(worker.pid)).touch()
"""


def _config(folder: Path) -> tuple[Path, Path]:
    """A gunicorn config file in `folder` (the repository's, plus the ready hook) and the folder the hook writes to."""
    ready = folder / "ready"
    ready.mkdir(parents=True)
    conf = folder / "gunicorn_bench.conf.py"
    conf.write_text(_CONFIG.format(conf=str(_ROOT / "gunicorn.conf.py"), ready=str(ready)), encoding="utf-8")
    return conf, ready


def _tail(log: Path, lines: int = 30) -> str:
    """The last lines the server wrote (its log goes to a file: a line a request would flood the terminal)."""
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_ready(port: int, server: subprocess.Popen[bytes], ready: Path, workers: int, timeout: float = 60) -> None:
    """Wait until every worker has loaded the app and one of them answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited with {server.returncode}")
        if sum(1 for _ in ready.iterdir()) < workers:
            time.sleep(0.1)
            continue
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/openapi.json")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not answer in time")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds (default 60)")
    parser.add_argument("--warmup", type=float, default=5.0, help="untimed seconds first (default 5)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker (default 4)")
    parser.add_argument("--instances", type=int, default=4, help="instances per client (default 4)")
    parser.add_argument("--reuse-port", action="store_true",
                        help="JZFLOW_WEB_REUSE_PORT=1: a listening socket per worker (docs/operations.md)")
    parser.add_argument("--connection-per-request", action="store_true",
                        help="a new connection for every request (default: one keep-alive connection per client)")
    parser.add_argument("--others", type=int, default=10_000,
                        help="instances already in the database, of the approval bench process, spread over a year "
                             "(default 10000: an office's database after some months; 0: an empty one, whose "
                             "unanalysed tables PostgreSQL plans as if they stayed tiny)")
    parser.add_argument("--factory", action="store_true",
                        help="serve web:create_app (no logging configured, as the bench did up to the 20th pass) "
                             "instead of the product's web.wsgi:app")
    parser.add_argument("--redis", metavar="URL", default=None,
                        help="JZFLOW_REDIS_URL for the server: the rate limiter counts in Redis, as in production "
                             "(default: the in-process store)")
    args = parser.parse_args(argv)
    if min(args.clients, args.workers, args.threads, args.instances) < 1 or args.duration <= 0 or args.others < 0:
        parser.error("counts must be positive, --others not negative and --duration > 0")
    with common.database("postgres") as db, tempfile.TemporaryDirectory(prefix="jzflow_tp_") as tmp:
        client_tokens: list[str] = []
        client_tasks: list[list[int]] = []
        setup = engine_bench.prepare(db)  # the bench org and process, and the templates of other instances
        if args.others:
            engine_bench.grow_to(setup, args.others)  # bulk-loaded, then VACUUM ANALYZE as autovacuum would
        with db.factory() as session:
            for c in range(args.clients):
                user = org.add_user(session, username=f"tp_client{c:02d}", display_name=f"压测用户{c:02d}",
                                    role_codes=["applicant"])  # the lane 申请人
                session.flush()
                client_tokens.append(tokens.issue(session, user, "throughput bench", scope=tokens.READ_WRITE))
                actor = actor_for(session, user.username)
                ids = [start(session, process_key=PROCESS, actor=actor).id for _ in range(args.instances)]
                session.flush()
                rows = {r.instance_id: r.id for r in session.execute(select(HumanTask.instance_id, HumanTask.id).where(
                    HumanTask.instance_id.in_(ids), HumanTask.state == "ready"))}
                client_tasks.append([rows[i] for i in ids])
            session.commit()
        port = _free_port()
        env = {**os.environ, "JZFLOW_DATABASE_URL": db.url, "JZFLOW_INSTANCE_DIR": tmp,
               "JZFLOW_SECRET_KEY": "throughput-bench-" + os.urandom(8).hex(), "PYTHONPATH": str(_ROOT)}
        env.pop("JZFLOW_REDIS_URL", None)
        if args.redis:
            env["JZFLOW_REDIS_URL"] = args.redis
        env["JZFLOW_WEB_REUSE_PORT"] = "1" if args.reuse_port else "0"
        env["JZFLOW_API_RATE_LIMIT"] = "100000000 per minute"  # create_app reads it (README's setting)
        app = "web:create_app()" if args.factory else "web.wsgi:app"
        server_log = Path(tmp) / "server.log"
        conf, ready = _config(Path(tmp) / "gunicorn")
        server = subprocess.Popen(  # nosec B603 # our own interpreter and arguments
            [sys.executable, "-m", "gunicorn", "--config", str(conf), "--bind", f"127.0.0.1:{port}",
             "--workers", str(args.workers),
             "--max-requests", "0",  # no recycling mid-run: a recycled worker closes its clients' connections
             "--threads", str(args.threads), "--worker-class", "gthread", "--log-level", "warning", app],
            cwd=str(_ROOT), env=env, stderr=server_log.open("wb"))
        try:
            try:
                _wait_ready(port, server, ready, args.workers)
            except SystemExit:
                print(_tail(server_log), file=sys.stderr)
                raise
            stop, measuring = threading.Event(), threading.Event()
            clients = [Client(port, client_tokens[c], client_tasks[c], stop, measuring, fresh=args.connection_per_request)
                       for c in range(args.clients)]
            for client in clients:
                client.start()
            time.sleep(args.warmup)
            counted_before = sum(c.done for c in clients)
            cpu_before, switches_before = _worker_cpu(server.pid), _worker_switches(server.pid)
            client_before, machine_before = time.process_time(), _machine_cpu()
            measuring.set()
            began = time.perf_counter()
            time.sleep(args.duration)
            measuring.clear()
            elapsed = time.perf_counter() - began
            cpu_after, switches = _worker_cpu(server.pid), _worker_switches(server.pid) - switches_before
            client_cpu, machine_cpu = time.process_time() - client_before, _machine_cpu() - machine_before
            counted = sum(c.done for c in clients) - counted_before
            stop.set()
            for client in clients:
                client.join(timeout=60)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        errors = [e for c in clients for e in c.errors]
        if errors:
            print(_tail(server_log), file=sys.stderr)
            raise SystemExit(f"{len(errors)} client(s) failed, first: {errors[0]}")
        with db.factory() as session:
            stored = session.scalar(select(func.count()).select_from(HumanTask).where(
                HumanTask.state == "completed", HumanTask.bpmn_id == "report"))
        total = sum(c.done for c in clients)
        if stored != total:
            raise SystemExit(f"the database holds {stored} completed tasks, the clients counted {total}")
    latencies = sorted(t for c in clients for t in c.latencies)
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] * 1000 if latencies else 0.0
    median = statistics.median(latencies) * 1000 if latencies else 0.0
    print(f"completions={counted} seconds={elapsed:.1f} clients={args.clients} workers={args.workers} "
          f"threads={args.threads} p50_ms={median:.1f} load={os.getloadavg()[0]:.2f}")
    # How the work spread over the workers: only when none restarted in between (the lists then pair up).
    spent = [after - before for before, after in zip(cpu_before, cpu_after, strict=True)] \
        if len(cpu_before) == len(cpu_after) and cpu_after else []
    per = max(counted, 1)
    if spent:
        print("worker_cpu_s=" + ",".join(f"{s:.1f}" for s in spent)
              + f" cpu_ms_per_completion={sum(spent) * 1000 / per:.2f}")
    if switches > 0:
        print(f"worker_switches_per_completion={switches / per:.1f}")
    if machine_cpu and spent:  # where the cores went: the workers, the clients (this process), the rest (PostgreSQL, …)
        print(f"machine_cpu_ms_per_completion={machine_cpu * 1000 / per:.2f} clients_ms={client_cpu * 1000 / per:.2f} "
              f"rest_ms={(machine_cpu - sum(spent) - client_cpu) * 1000 / per:.2f}")
    print(f"per_s={counted / elapsed:.1f} p95_ms={p95:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
