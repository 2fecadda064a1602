"""The cozy-stack double under test: pouchdb-server and ``cozy-stack serve``, started for the session.

Two doubles run side by side, one per subdomain mode, each with its own pouchdb-server (the
registry ``global/instances`` is per CouchDB). Everything listens on 127.0.0.1 on free ports,
everything is written under pytest's temporary directory, and both processes of each double are
stopped (TERM, then KILL) and reaped by PID at the end.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

LAB_DIR = Path(__file__).resolve().parents[2] / "cozyops" / "lab"
# The double is a package of its own (it is copied to the hosts as `stackdouble`): tests that
# need one of its functions (the move MAC) import it from there.
if str(LAB_DIR) not in sys.path:
    sys.path.append(str(LAB_DIR))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(port: int, path: str, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"process exited ({proc.returncode}) before answering: {log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"nothing answers on 127.0.0.1:{port} after {timeout:.0f} s: {log.read_text()[-2000:]}")
            time.sleep(0.05)


def stop(proc: subprocess.Popen) -> None:
    """TERM, KILL after 5 s, and wait: the process is reaped by its PID."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self):
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Double:
    """A running double: its ports, passphrase, directory, and helpers that speak real HTTP and run the CLI."""

    mode: str
    directory: Path
    admin_port: int
    public_port: int
    couch_port: int
    passphrase: str
    procs: list = field(default_factory=list)
    minted: list = field(default_factory=list)

    @property
    def log(self) -> Path:
        return self.directory / "stack.log"

    def request(self, port: int, method: str, path: str, query: dict | None = None, headers: dict | None = None,
                body: bytes | None = None) -> Reply:
        target = path + ("?" + urlencode(query, quote_via=quote) if query else "")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request(method, target, body=body, headers=headers or {})
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def basic(self, password: str | None = None) -> dict:
        raw = ":" + (self.passphrase if password is None else password)
        return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}

    def admin(self, method: str, path: str, query: dict | None = None, headers: dict | None = None,
              auth: bool = True) -> Reply:
        return self.request(self.admin_port, method, path, query, {**(self.basic() if auth else {}),
                                                                   **(headers or {})})

    def public(self, method: str, path: str, host: str, token: str | None = None, query: dict | None = None,
               headers: dict | None = None, body: bytes | None = None) -> Reply:
        all_headers = {"Host": host, **(headers or {})}
        if token:
            all_headers["Authorization"] = "Bearer " + token
        return self.request(self.public_port, method, path, query, all_headers, body)

    def create(self, domain: str, **params) -> Reply:
        return self.admin("POST", "/instances", {"Domain": domain, **params})

    def token(self, domain: str, scope: str = "io.cozy.files io.cozy.contacts io.cozy.photos.albums",
              audience: str = "cli", **params) -> str:
        reply = self.admin("POST", "/instances/token", {"Domain": domain, "Audience": audience, "Scope": scope,
                                                        "Subject": "CLI", **params})
        assert reply.status == 200, reply.text
        self.minted.append(reply.text)
        return reply.text

    def cli(self, *args: str, env: dict | None = None, stdin: str | None = None,
            passphrase: bool = True) -> subprocess.CompletedProcess:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("COZY_")}
        full_env.update({"PYTHONPATH": str(LAB_DIR), "HOME": str(self.directory / "home")})
        if passphrase:
            full_env["COZY_ADMIN_PASSPHRASE"] = self.passphrase
        full_env.update(env or {})
        argv = [sys.executable, "-m", "stackdouble", "-c", str(self.directory / "cozy.yml"), *args]
        done = subprocess.run(argv, cwd=self.directory, env=full_env, input=stdin, capture_output=True, text=True,
                              timeout=120)
        return done


def start_double(root: Path, mode: str, started: list) -> Double:
    """Start pouchdb-server and the double; each process is added to ``started`` as soon as it runs."""
    from cozyops.lab import pouchdb

    try:
        install = pouchdb.find()
    except Exception as error:  # LabError: tell how to install it
        pytest.fail(str(error))
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on the PATH (pouchdb-server needs Node.js)")
    directory = root / mode
    (directory / "home").mkdir(parents=True)
    couch_port, admin_port, public_port = free_port(), free_port(), free_port()
    double = Double(mode, directory, admin_port, public_port, couch_port, "pass-" + secrets.token_urlsafe(12))
    double.procs = started
    couch_log = directory / "pouchdb.log"
    with open(couch_log, "wb") as out:
        couch = subprocess.Popen(pouchdb.argv(node, couch_port, "127.0.0.1", directory / "couch", install),
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=directory)
    double.procs.append(couch)
    wait_http(couch_port, "/", couch, couch_log)
    (directory / "cozy.yml").write_text(
        "host: 127.0.0.1\n"
        f"port: {public_port}\n"
        f"admin:\n  host: 127.0.0.1\n  port: {admin_port}\n"
        f"couchdb:\n  url: http://127.0.0.1:{couch_port}/\n"
        f"fs:\n  url: file://{directory}/storage\n"
        f"subdomains: {mode}\n"
        # The move tests import from an instance of the same double, on 127.0.0.1.
        "safe_http:\n  trusted_private_networks: [127.0.0.0/8]\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("COZY_")}
    env.update({"PYTHONPATH": str(LAB_DIR), "HOME": str(directory / "home"),
                "COZY_ADMIN_PASSPHRASE": double.passphrase})
    subprocess.run([sys.executable, "-m", "stackdouble", "config", "passwd", str(directory)], env=env, check=True,
                   capture_output=True, cwd=directory)
    env.pop("COZY_ADMIN_PASSPHRASE")
    with open(double.log, "wb") as out:
        stack = subprocess.Popen(
            [sys.executable, "-m", "stackdouble", "serve", "--allow-root", "-c", str(directory / "cozy.yml")],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=directory, env=env)
    double.procs.append(stack)
    wait_http(public_port, "/version", stack, double.log)
    wait_http(admin_port, "/version", stack, double.log)
    return double


@pytest.fixture(scope="session")
def doubles(tmp_path_factory: pytest.TempPathFactory, scratch_home: Path):
    root = tmp_path_factory.mktemp("stackdouble")
    started: list[subprocess.Popen] = []
    try:
        yield {mode: start_double(root, mode, started) for mode in ("nested", "flat")}
    finally:
        for proc in reversed(started):
            stop(proc)


@pytest.fixture(scope="session")
def nested(doubles) -> Double:
    return doubles["nested"]


@pytest.fixture(scope="session")
def flat(doubles) -> Double:
    return doubles["flat"]


def unique(prefix: str = "i") -> str:
    return f"{prefix}{secrets.token_hex(4)}"
