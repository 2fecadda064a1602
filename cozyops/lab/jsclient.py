"""cozy-stack-client, cozy-stack's official JavaScript client, for the double's conformance run.

``jsclient/package.json`` and its committed ``package-lock.json`` pin cozy-stack-client 60.21.1
with what it loads: cozy-client 60.21.2 (it brings lodash and the other modules that
cozy-stack-client requires without declaring them), cozy-flags and @babel/runtime. ``lab setup``
installs them as it does pouchdb-server (``npm ci`` into the cache, in a directory named after
the lockfile's digest, atomically), with ``--legacy-peer-deps``: the peer dependencies (React,
React Native) are for applications with a user interface, not needed by the client's calls.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cozyops import paths
from cozyops.errors import LabError
from cozyops.lab import pouchdb

PACKAGE_DIR = Path(__file__).resolve().parent / "jsclient"
LOCKFILE = PACKAGE_DIR / "package-lock.json"
MANIFEST = PACKAGE_DIR / "package.json"
VERSION = "60.21.1"
MARKER = ".cozyops-jsclient.json"
ENTRY = Path("node_modules") / "cozy-stack-client" / "dist" / "index.js"
NPM_ARGS = ("--legacy-peer-deps",)


def cache_root() -> Path:
    """COZYOPS_JSCLIENT_CACHE, else the cache directory's cozy-stack-client/."""
    override = os.environ.get("COZYOPS_JSCLIENT_CACHE")
    return Path(override) if override else paths.cache_dir() / "cozy-stack-client"


def digest() -> str:
    return hashlib.sha256(LOCKFILE.read_bytes()).hexdigest()[:16]


def path() -> Path:
    return cache_root() / digest()


def installed(directory: Path) -> bool:
    return (directory / MARKER).is_file() and (directory / ENTRY).is_file()


def find() -> Path:
    """The installation ``lab setup`` made for this lockfile; an error if there is none."""
    directory = path()
    if not installed(directory):
        raise LabError(f"cozy-stack-client {VERSION}", f"is not installed ({directory})",
                       "run `sudo cozyops lab setup`")
    return directory


def install(log: Path) -> Path:
    """``npm ci`` the lockfile into the cache unless already there (idempotent, atomic)."""
    final = path()
    if installed(final):
        return final
    marker = {"cozy-stack-client": VERSION, "lockfile": digest()}
    return pouchdb.npm_ci("cozy-stack-client", MANIFEST, LOCKFILE, final, ENTRY, MARKER, marker, log, NPM_ARGS)
