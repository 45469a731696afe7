"""A real OpenLDAP server (Debian's slapd) for the tests: its own slapd.conf, an mdb database, a loopback port.

The server runs as an unprivileged process (`-u nobody` when the tests run as root) from a private
directory, seeded offline with `slapadd` from LDIF, and is stopped when the test ends. Tests then change the
directory through the LDAP protocol (ldap3) as the people who run it would. A missing slapd skips on a laptop
and fails under CI=true (`make system-packages` installs it).
"""
from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess  # nosec B404 # the tests start their own slapd
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ldap3

from engine.org import ldap_read
from tests.conftest import require_service

SUFFIX = "dc=jiaozhou,dc=gov,dc=cn"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "ldap-test-secret"
READER_DN = f"cn=jzflow-reader,{SUFFIX}"  # the service account jzflow binds as (read-only, under the size limit)
READER_PW = "reader-test-secret"
SCHEMA = Path("/etc/ldap/schema")


def slapd() -> str:
    """Return slapd's path, or skip (fail under CI) when it is not installed."""
    path = shutil.which("slapd") or ("/usr/sbin/slapd" if Path("/usr/sbin/slapd").exists() else None)
    slapadd = shutil.which("slapadd") or ("/usr/sbin/slapadd" if Path("/usr/sbin/slapadd").exists() else None)
    require_service("slapd", None if path and slapadd and SCHEMA.is_dir() else
                    "slapd/slapadd not installed (apt-get install slapd ldap-utils; `make system-packages`)")
    assert path is not None
    return path


@dataclass
class Directory:
    url: str
    home: Path

    def settings(self, **overrides: Any) -> ldap_read.Settings:
        base = ldap_read.Settings(url=self.url, bind_dn=READER_DN, bind_password=READER_PW, base_dn=SUFFIX,
                                  page_size=50, timeout=10.0, max_deactivate_fraction=0.2)
        return replace(base, **overrides)

    @contextmanager
    def admin(self) -> Iterator[ldap3.Connection]:
        conn = ldap3.Connection(ldap3.Server(self.url), user=ROOT_DN, password=ROOT_PW, auto_bind=True,
                                raise_exceptions=True)
        try:
            yield conn
        finally:
            conn.unbind()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _conf(home: Path, size_limit: int, paged_total: str) -> str:
    return "\n".join([
        *(f"include {SCHEMA / name}.schema" for name in ("core", "cosine", "inetorgperson")),
        "modulepath /usr/lib/ldap", "moduleload back_mdb",
        f"pidfile {home / 'slapd.pid'}", f"argsfile {home / 'slapd.args'}",
        f"sizelimit size.soft={size_limit} size.hard={size_limit} size.prtotal={paged_total}",
        "access to * by * read",
        "database mdb", f'suffix "{SUFFIX}"', f'rootdn "{ROOT_DN}"', f"rootpw {ROOT_PW}",
        f"directory {home / 'data'}", "maxsize 104857600", "",
    ])


@contextmanager
def running(ldif: str, *, size_limit: int = 500, paged_total: str = "unlimited") -> Iterator[Directory]:
    """Start slapd seeded with `ldif` (the suffix entry is added first); stop it afterwards."""
    binary = slapd()
    home = Path(tempfile.mkdtemp(prefix="jzflow-slapd-"))  # not under pytest's 0700 tmp: `nobody` must reach it
    (home / "data").mkdir()
    (home / "slapd.conf").write_text(_conf(home, size_limit, paged_total), encoding="utf-8")
    top = f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: jiaozhou\n{_line('o', '胶州市')}\n\n"
    top += (f"dn: {READER_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
            f"cn: jzflow-reader\nuserPassword: {READER_PW}\n\n")
    (home / "seed.ldif").write_text(top + ldif, encoding="utf-8")
    slapadd = shutil.which("slapadd") or "/usr/sbin/slapadd"
    done = subprocess.run([slapadd, "-q", "-f", str(home / "slapd.conf"), "-l", str(home / "seed.ldif")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    drop = []
    if os.geteuid() == 0:  # never run the server as root
        shutil.chown(home, "nobody", "nogroup")
        for path in home.rglob("*"):
            shutil.chown(path, "nobody", "nogroup")
        drop = ["-u", "nobody", "-g", "nogroup"]
    port = _free_port()
    url = f"ldap://127.0.0.1:{port}"
    log = (home / "slapd.log").open("w")
    proc = subprocess.Popen([binary, "-f", str(home / "slapd.conf"), "-h", url + "/", "-d", "0", *drop],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("slapd did not start: " + (home / "slapd.log").read_text()[-2000:]) from None
                time.sleep(0.05)
        yield Directory(url=url, home=home)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(home, ignore_errors=True)


def _line(attr: str, value: str) -> str:
    """One LDIF line; a value that is not plain ASCII goes base64 (RFC 2849)."""
    if value.isascii() and not value.startswith((" ", ":", "<")) and "\n" not in value:
        return f"{attr}: {value}"
    return f"{attr}:: {base64.b64encode(value.encode('utf-8')).decode('ascii')}"


def unit(code: str, name: str, *, under: str = "", head: str = "") -> str:
    """LDIF of an org unit (its head, a person's DN, in `manager`: extensibleObject allows it on an OU)."""
    dn = f"ou={code},{under + ',' if under else ''}{SUFFIX}"
    lines = [_line("dn", dn), "objectClass: organizationalUnit", "objectClass: extensibleObject", _line("ou", code),
             _line("description", name)]
    if head:
        lines.append(_line("manager", head))
    return "\n".join(lines) + "\n\n"


def person(uid: str, name: str, *, unit_path: str, manager: str = "", mail: str = "") -> str:
    """LDIF of a person in the unit at `unit_path` (e.g. "ou=fgj")."""
    lines = [_line("dn", f"uid={uid},{unit_path},{SUFFIX}"), "objectClass: inetOrgPerson", _line("uid", uid),
             _line("cn", name), _line("sn", name[:1]), _line("displayName", name)]
    if manager:
        lines.append(_line("manager", manager))
    if mail:
        lines.append(_line("mail", mail))
    return "\n".join(lines) + "\n\n"


def dn_of(uid: str, unit_path: str) -> str:
    return f"uid={uid},{unit_path},{SUFFIX}"
