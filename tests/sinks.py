"""Local test servers for the outbound edges: an SMTP server and an HTTP server that keep what they receive.

Only outbound edges are faked, and by real servers on 127.0.0.1 — the deliverers in engine/jobs.py
talk SMTP and HTTP to them exactly as they would to a mail relay or a WeChat Work / DingTalk robot.
"""
from __future__ import annotations

import email
import email.policy
import json
import socketserver
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        return body.get_content() if body is not None else ""  # type: ignore[union-attr]


class SmtpSink:
    """A minimal SMTP server (EHLO, MAIL, RCPT, DATA, QUIT) on a free port, keeping every message.

    `quit_reply`: what it answers to QUIT (a relay that took the message and then says goodbye oddly).
    `hold`: when given, each message is taken ("250") but the answer to QUIT waits until the event is set — a
    sender killed meanwhile has a mail out and no record of it.
    """

    def __init__(self, *, quit_reply: str = "221 bye", hold: threading.Event | None = None) -> None:
        self.mails: list[Mail] = []
        self._lock = threading.Lock()
        self.received = threading.Event()  # set when the first message was kept
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self) -> None:
                self.reply("220 sink.local ESMTP test sink")
                sender, recipients = "", []
                while True:
                    raw = self.rfile.readline()
                    if not raw:
                        return
                    command = raw.decode("utf-8", "replace").strip()
                    verb = command[:4].upper()
                    if verb == "EHLO":
                        self.reply("250-sink.local")
                        self.reply("250-8BITMIME")
                        self.reply("250 SMTPUTF8")
                    elif verb == "HELO":
                        self.reply("250 sink.local")
                    elif verb == "MAIL":
                        sender, recipients = command.split(":", 1)[1].strip().split()[0].strip("<>"), []
                        self.reply("250 OK")
                    elif verb == "RCPT":
                        recipients.append(command.split(":", 1)[1].strip().strip("<>"))
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 end with <CRLF>.<CRLF>")
                        lines = []
                        while (line := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                            lines.append(line[1:] if line.startswith(b"..") else line)
                        message = email.message_from_bytes(b"".join(lines), policy=email.policy.default)
                        with sink._lock:
                            sink.mails.append(Mail(sender, recipients, message))  # type: ignore[arg-type]
                        sink.received.set()
                        self.reply("250 OK queued")
                    elif verb in ("RSET", "NOOP"):
                        self.reply("250 OK")
                    elif verb == "QUIT":
                        if hold is not None:
                            hold.wait(60)
                        self.reply(quit_reply)
                        return
                    else:
                        self.reply("502 not implemented")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> SmtpSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Hook:
    path: str
    body: Any
    content_type: str
    idempotency_key: str | None = None


@dataclass
class HookSink:
    """An HTTP server on a free port that keeps each POSTed JSON body; it can fail the first N requests.

    GETs are recorded too (`gets`) and answered with a small JSON Schema: what a server-side fetch would get.
    """

    fail_first: int = 0
    # As a WeChat Work group robot answers: HTTP 200 whatever happened, the outcome in `errcode`. A text message over
    # `robot_max_bytes` of UTF-8 is refused (40058, not kept); the first `busy_first` requests are turned away (45009).
    robot_max_bytes: int | None = None
    busy_first: int = 0
    hooks: list[Hook] = field(default_factory=list)
    gets: list[str] = field(default_factory=list)
    keys: list[str | None] = field(default_factory=list)  # each POST's Idempotency-Key, failed ones too

    def __post_init__(self) -> None:
        sink = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with lock:
                    sink.keys.append(self.headers.get("Idempotency-Key"))
                    if sink.fail_first > 0:
                        sink.fail_first -= 1
                        self.send_response(500)
                        self.end_headers()
                        return
                    body = json.loads(data)
                    answer = b'{"errcode": 0, "errmsg": "ok"}'
                    text = body.get("text", {}).get("content", "") if isinstance(body, dict) else ""
                    if sink.busy_first > 0:
                        sink.busy_first -= 1
                        answer = b'{"errcode": 45009, "errmsg": "api freq out of limit"}'
                    elif sink.robot_max_bytes is not None and len(text.encode()) > sink.robot_max_bytes:
                        answer = b'{"errcode": 40058, "errmsg": "content exceed max length 2048"}'
                    else:
                        sink.hooks.append(Hook(self.path, body, self.headers.get("Content-Type", ""),
                                               self.headers.get("Idempotency-Key")))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(answer)

            def do_GET(self) -> None:
                with lock:
                    sink.gets.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"type": "string"}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/robot") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> HookSink:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()
