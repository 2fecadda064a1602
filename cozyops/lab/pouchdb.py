"""pouchdb-server, the CouchDB API under the cozy-stack double: installed once on the machine.

The package's own ``pouchdb/package.json`` and its committed ``package-lock.json`` pin
pouchdb-server 4.2.0 and everything it pulls in. ``lab setup`` installs them with ``npm ci``
(nothing but the npm registry is needed) into the cache, in a directory named after a digest of
the lockfile: a new lockfile gives a new directory, one that exists is never rebuilt. The build is
atomic (a temporary directory renamed into place when complete) and keeps npm inside it
(``--cache``), so nothing is written to ``~/.npm``.

npm is not reachable from inside a lab host: the hosts get this directory from the machine.
pouchdb-server runs in "admin party" (no admin configured: once an admin exists, an
unauthenticated database creation crashes pouchdb-server 4.2.0) and has no ``/_up``: readiness
is ``GET /``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from cozyops import paths
from cozyops.errors import LabError

PACKAGE_DIR = Path(__file__).resolve().parent / "pouchdb"
LOCKFILE = PACKAGE_DIR / "package-lock.json"
MANIFEST = PACKAGE_DIR / "package.json"
VERSION = "4.2.0"
# Written last into a complete installation.
MARKER = ".cozyops-pouchdb.json"
# The server's entry point inside an installation.
ENTRY = Path("node_modules") / "pouchdb-server" / "bin" / "pouchdb-server"


def cache_under(variable: str, name: str) -> Path:
    """Where an npm installation of the lab's is kept: ``$variable``, else the cache directory's ``name``."""
    override = os.environ.get(variable)
    return Path(override) if override else paths.cache_dir() / name


def lock_digest(lockfile: Path) -> str:
    return hashlib.sha256(lockfile.read_bytes()).hexdigest()[:16]


def complete(directory: Path, marker: str, entry: Path) -> bool:
    return (directory / marker).is_file() and (directory / entry).is_file()


def require(what: str, directory: Path, marker: str, entry: Path) -> Path:
    """``directory`` when it holds a complete installation; an error naming ``what`` otherwise."""
    if not complete(directory, marker, entry):
        raise LabError(what, f"is not installed ({directory})", "run `sudo cozyops lab setup`")
    return directory


def cache_root() -> Path:
    """Where installations are kept: COZYOPS_POUCHDB_CACHE, else the cache directory's pouchdb-server/."""
    return cache_under("COZYOPS_POUCHDB_CACHE", "pouchdb-server")


def digest() -> str:
    return lock_digest(LOCKFILE)


def path() -> Path:
    return cache_root() / digest()


def installed(directory: Path) -> bool:
    return complete(directory, MARKER, ENTRY)


def find() -> Path:
    """The installation that ``lab setup`` made for this lockfile; an error if there is none."""
    return require(f"pouchdb-server {VERSION}", path(), MARKER, ENTRY)


def npm(what: str = "pouchdb-server") -> str:
    """The machine's npm (Node.js comes from the machine: Debian's or NodeSource's package)."""
    found = shutil.which("npm")
    if found is None or shutil.which("node") is None:
        raise LabError(
            what,
            "needs Node.js (20 or newer) and npm on the PATH, and they are not there",
            "install the nodejs package (with npm), then run `sudo cozyops lab setup` again",
        )
    return found


def install(log: Path) -> Path:
    """``npm ci`` the lockfile into the cache unless already there; the installation's directory.

    Idempotent (an installation that exists is returned as is) and atomic.
    """
    final = path()
    if installed(final):
        return final
    marker = {"pouchdb-server": VERSION, "lockfile": digest()}
    return npm_ci("pouchdb-server", MANIFEST, LOCKFILE, final, ENTRY, MARKER, marker, log)


def npm_ci(what: str, manifest: Path, lockfile: Path, final: Path, entry: Path, marker_name: str, marker: dict,
           log: Path, extra: tuple[str, ...] = ()) -> Path:
    """``npm ci`` of ``manifest`` and ``lockfile`` into ``final``, atomically (a build directory
    renamed into place once ``entry`` is there and the marker written); npm's cache stays inside."""
    program = npm(what)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = final.parent / f".build-{final.name}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        work.mkdir()
        shutil.copyfile(manifest, work / "package.json")
        shutil.copyfile(lockfile, work / "package-lock.json")
        command = [program, "ci", "--no-audit", "--no-fund", *extra, "--cache", str(work / ".npm-cache")]
        # npm 11 warns that leveldown's and sqlite3's install scripts are not allowed: nothing
        # breaks (leveldown ships prebuilt binaries; sqlite3 is only for --sqlite).
        env = {**os.environ, "npm_config_update_notifier": "false"}
        with open(log, "ab") as out:
            out.write(("$ " + " ".join(command) + f"  (in {work})\n").encode())
            out.flush()
            done = subprocess.run(
                command, cwd=work, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
            )
        if done.returncode != 0:
            raise LabError(f"npm ci ({what})", f"failed (exit {done.returncode}); see {log}")
        if not (work / entry).is_file():
            raise LabError(f"npm ci ({what})", f"did not install {entry}; see {log}")
        shutil.rmtree(work / ".npm-cache", ignore_errors=True)
        stamp = {**marker, "built": time.strftime("%Y-%m-%dT%H:%M:%SZ")}
        (work / marker_name).write_text(json.dumps(stamp, indent=2) + "\n")
        work.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def argv(node: str, port: int, host: str, data_dir: Path, install_dir: Path | None = None) -> list[str]:
    """The command line that runs pouchdb-server in the foreground, its data under ``data_dir``.

    pouchdb-server writes its ``config.json`` (no admin unless one is added) and ``log.txt`` in
    its working directory: the command changes into ``data_dir`` (creating it) before loading the
    server, so that it writes nowhere else whatever the caller's working directory; the databases
    are in ``data_dir/db``. ``install_dir`` is where the process sees the installation (a lab host
    may see the machine's cache at another path); default: ``find()``.
    """
    base = install_dir if install_dir is not None else find()
    data = str(data_dir)
    boot = (
        "const fs = require('fs');"
        f"fs.mkdirSync({json.dumps(data + '/db')}, {{recursive: true}});"
        f"process.chdir({json.dumps(data)});"
        f"require({json.dumps(str(base / ENTRY))});"
    )
    # With -e, process.argv[1] is the first argument after the script: a name for the
    # server's option parser to skip, as it skips the script path when run directly.
    return [
        node, "-e", boot, "pouchdb-server", "--host", host, "--port", str(port), "--dir", data + "/db", "--no-color"
    ]
