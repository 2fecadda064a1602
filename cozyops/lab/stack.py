"""``lab up --with-stack``: the cozy-stack double and pouchdb-server on a lab host, over SSH.

Laid out as cozy-stack's Debian package lays out cozy-stack (../shared/reference/cozy-stack.md
section 5), so that provisioning can take this over: ``/usr/bin/cozy-stack``, ``/etc/cozy/cozy.yml``,
the scrypt hash in ``/etc/cozy/cozy-admin-passphrase`` (written by ``cozy-stack config passwd``,
as the package's postinst does), the clear-text copy in ``/etc/cozy/.cozy-admin-passphrase``
(0600), user ``cozy-stack`` in group ``cozy``, data under ``/var/lib/cozy``, logs in
``/var/log/cozy``; CouchDB's place is taken by pouchdb-server on 127.0.0.1:5984. Both run through
init scripts and start with the host.

The admin passphrase is generated on the host and never leaves it through cozyops's output: the
controller reads it over SSH when it needs it (as ``COZY_ADMIN_PASSPHRASE=$(cat ...)`` does).
Every step is idempotent; a second run changes nothing that is in place.
"""

from __future__ import annotations

import hashlib
import io
import shlex
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import jinja2

from cozyops import paths
from cozyops.errors import LabError
from cozyops.model import DEBIAN_PASSPHRASE_FILE
from cozyops.stack.connect import ADMIN_PORT, PUBLIC_PORT  # noqa: F401  (the lab's tests reach them by this name)
from cozyops.transport.base import Transport

DOUBLE_SOURCE = Path(__file__).with_name("stackdouble")
DOUBLE_DIR = "/usr/lib/cozy-stack-double"
POUCHDB_DIR = "/usr/lib/cozy-pouchdb-server"
DATABASE_SERVICE = "pouchdb-server"
PASSPHRASE_CLEAR = DEBIAN_PASSPHRASE_FILE
PASSPHRASE_HASH = "/etc/cozy/cozy-admin-passphrase"
# nodejs for pouchdb-server, python3-yaml for the double, curl as cozy-stack's package depends on
# it, insserv so that update-rc.d orders the boot by the init scripts' dependencies (the database
# before cozy-stack), as on a Debian server with sysvinit.
HOST_PACKAGES = ("nodejs", "python3-yaml", "curl", "insserv")
WRAPPER = f"""#!/bin/sh
# cozy-stack on a cozyops lab host: the test double of cozy-stack (see {DOUBLE_DIR}/stackdouble).
PYTHONPATH={DOUBLE_DIR} exec python3 -m stackdouble "$@"
"""
READY_TIMEOUT = 20.0

Report = Callable[[str], None]


def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(paths.data_dir("templates") / "cozy-stack"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render(name: str, **values: object) -> str:
    return _templates().get_template(name).render(written_by="cozyops lab up --with-stack", **values)


def _tar(folder: Path, arcname: str) -> bytes:
    """A tar of ``folder`` (no __pycache__), in memory: the double is small."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(folder, arcname=arcname, filter=lambda info: None if "__pycache__" in info.name else info)
    return buffer.getvalue()


def double_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(DOUBLE_SOURCE.rglob("*.py")):
        digest.update(path.relative_to(DOUBLE_SOURCE).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


class StackInstaller:
    """Installs and starts the double on one host; ``pouchdb_dir`` holds the machine's node_modules."""

    def __init__(self, transport: Transport, pouchdb_dir: Path, subdomains: str = "nested",
                 report: Report = lambda _: None) -> None:
        self.ssh = transport
        self.pouchdb_dir = pouchdb_dir
        self.subdomains = subdomains
        self.report = report

    def _sh(self, script: str, timeout: float = 600) -> str:
        return self.ssh.run(["sh", "-ec", script], timeout=timeout).check(self.ssh.name).text

    def install(self) -> None:
        started = time.monotonic()
        self._packages()
        self._users_and_dirs()
        self._pouchdb()
        changed = self._double()
        changed = self._config() or changed
        self._services(restart_stack=changed)
        self.report(f"{self.ssh.name}: cozy-stack double ready ({time.monotonic() - started:.1f} s)")

    def _packages(self) -> None:
        missing = self.ssh.run(["dpkg-query", "-W", "-f=${Status}\\n", *HOST_PACKAGES]).text
        if missing.count("install ok installed") == len(HOST_PACKAGES):
            return
        self.report(f"{self.ssh.name}: apt-get install {' '.join(HOST_PACKAGES)}")
        self._sh("export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q --no-install-recommends "
                 + " ".join(HOST_PACKAGES) + " >/dev/null")

    def _users_and_dirs(self) -> None:
        # As the Debian packages do: cozy-stack's postinst (group cozy, system user cozy-stack,
        # home /var/lib/cozy) and a couchdb system user for the database.
        self._sh(
            "getent group cozy >/dev/null || groupadd --system cozy\n"
            "id cozy-stack >/dev/null 2>&1 || useradd --system --gid cozy --home-dir /var/lib/cozy "
            "--shell /usr/sbin/nologin cozy-stack\n"
            "id couchdb >/dev/null 2>&1 || useradd --system --user-group --home-dir /var/lib/pouchdb-server "
            "--shell /usr/sbin/nologin couchdb\n"
            "install -d -o cozy-stack -g cozy -m 0750 /var/lib/cozy /var/log/cozy\n"
            "install -d -o root -g cozy -m 0750 /etc/cozy\n"
            "install -d -o couchdb -g couchdb -m 0750 /var/lib/pouchdb-server\n"
        )

    def _pouchdb(self) -> None:
        stamp = self.pouchdb_dir.name
        if self.ssh.run(["cat", f"{POUCHDB_DIR}/.cozyops-stamp"]).text.strip() == stamp:
            return
        self.report(f"{self.ssh.name}: copying pouchdb-server's node modules")
        staging = f"{POUCHDB_DIR}.new"
        with subprocess.Popen(["tar", "-C", str(self.pouchdb_dir), "-cf", "-", "node_modules"],
                              stdout=subprocess.PIPE) as tar:
            assert tar.stdout is not None
            script = f"rm -rf {staging} && mkdir -p {staging} && tar -C {staging} -xf -"
            self.ssh.run(["sh", "-ec", script], stdin=tar.stdout, timeout=600).check(self.ssh.name)
        if tar.returncode != 0:
            raise LabError(f"tar of {self.pouchdb_dir}", f"exit {tar.returncode}")
        self._sh(f"echo {shlex.quote(stamp)} > {staging}/.cozyops-stamp && rm -rf {POUCHDB_DIR} "
                 f"&& mv {staging} {POUCHDB_DIR}")

    def _double(self) -> bool:
        stamp = double_digest()
        if self.ssh.run(["cat", f"{DOUBLE_DIR}/.cozyops-stamp"]).text.strip() == stamp:
            return False
        self.report(f"{self.ssh.name}: installing the cozy-stack double")
        archive = _tar(DOUBLE_SOURCE, "stackdouble")
        staging = f"{DOUBLE_DIR}.new"
        script = (f"rm -rf {staging} && mkdir -p {staging} && tar -C {staging} --no-same-owner -xf - "
                  f"&& echo {stamp} > {staging}/.cozyops-stamp && rm -rf {DOUBLE_DIR} && mv {staging} {DOUBLE_DIR}")
        self.ssh.run(["sh", "-ec", script], stdin=archive).check(self.ssh.name)
        self.ssh.put(WRAPPER.encode(), "/usr/bin/cozy-stack", 0o755)
        return True

    def _config(self) -> bool:
        config = render(
            "cozy.yml.j2",
            subdomains=self.subdomains,
            couchdb_url="http://127.0.0.1:5984/",
        ).encode()
        changed = self.ssh.run(["cat", "/etc/cozy/cozy.yml"]).stdout != config
        if changed:
            self.ssh.put(config, "/etc/cozy/cozy.yml", 0o640)
        # The passphrase is made on the host; only its scrypt hash is used by the server.
        self._sh(
            f"chgrp cozy /etc/cozy/cozy.yml\n"
            f"if [ ! -s {PASSPHRASE_CLEAR} ]; then\n"
            f"  (umask 077; head -c 24 /dev/urandom | base64 > {PASSPHRASE_CLEAR})\n"
            f"fi\n"
            f"if [ ! -s {PASSPHRASE_HASH} ]; then\n"
            f"  COZY_ADMIN_PASSPHRASE=\"$(cat {PASSPHRASE_CLEAR})\" cozy-stack -c /dev/null config passwd "
            f"{PASSPHRASE_HASH} 2>/dev/null\n"
            f"  chgrp cozy {PASSPHRASE_HASH}; chmod 0440 {PASSPHRASE_HASH}\n"
            f"fi\n"
        )
        return changed

    def _services(self, restart_stack: bool) -> None:
        values = {"database_service": DATABASE_SERVICE, "pouchdb_dir": POUCHDB_DIR,
                  "what": "the cozy-stack double of cozyops's lab"}
        scripts = ((DATABASE_SERVICE, "init.d-pouchdb-server.j2"), ("cozy-stack", "init.d-cozy-stack.j2"))
        for service, template in scripts:
            script = render(template, **values).encode()
            path = f"/etc/init.d/{service}"
            changed = self.ssh.run(["cat", path]).stdout != script
            if changed:
                self.ssh.put(script, path, 0o755)
            changed = changed or (service == "cozy-stack" and restart_stack)
            self._sh(f"update-rc.d {service} defaults >/dev/null 2>&1\n"
                     + (f"service {service} restart >/dev/null\n" if changed else
                        f"service {service} status >/dev/null || service {service} start >/dev/null\n"))
            if service == DATABASE_SERVICE:
                self._wait(["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/5984"], "pouchdb-server on 127.0.0.1:5984")
        self._wait(["cozy-stack", "status"], "cozy-stack status")

    def _wait(self, command: list[str], what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            result = self.ssh.run(command)
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                log = self.ssh.run("tail -n 5 /var/log/cozy/stack.log /var/log/pouchdb-server.log 2>&1").text
                raise LabError(f"{self.ssh.name}: {what}", f"not ready after {READY_TIMEOUT:.0f} s",
                               " | ".join(log.strip().splitlines()[-5:]))
            time.sleep(0.2)


def admin_passphrase(transport: Transport) -> str:
    """The admin passphrase, read on the server as Debian's scripts do (never printed)."""
    return transport.run(["cat", PASSPHRASE_CLEAR]).check(transport.name).text.strip()
