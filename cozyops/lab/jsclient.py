"""cozy-stack-client, cozy-stack's official JavaScript client, for the double's conformance run.

``jsclient/package.json`` and its committed ``package-lock.json`` pin cozy-stack-client 60.21.1
with what it loads: cozy-client 60.21.2 (it brings lodash and the other modules that
cozy-stack-client requires without declaring them), cozy-flags and @babel/runtime. ``lab setup``
installs them as it does pouchdb-server (``npm ci`` into the cache, in a directory named after
the lockfile's digest, atomically), with ``--legacy-peer-deps``: the peer dependencies (React,
React Native) are for applications with a user interface, not needed by the client's calls.
"""

from __future__ import annotations

from pathlib import Path

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
    return pouchdb.cache_under("COZYOPS_JSCLIENT_CACHE", "cozy-stack-client")


def digest() -> str:
    return pouchdb.lock_digest(LOCKFILE)


def path() -> Path:
    return cache_root() / digest()


def installed(directory: Path) -> bool:
    return pouchdb.complete(directory, MARKER, ENTRY)


def find() -> Path:
    """The installation ``lab setup`` made for this lockfile; an error if there is none."""
    return pouchdb.require(f"cozy-stack-client {VERSION}", path(), MARKER, ENTRY)


def install(log: Path) -> Path:
    """``npm ci`` the lockfile into the cache unless already there (idempotent, atomic)."""
    final = path()
    if installed(final):
        return final
    marker = {"cozy-stack-client": VERSION, "lockfile": digest()}
    return pouchdb.npm_ci("cozy-stack-client", MANIFEST, LOCKFILE, final, ENTRY, MARKER, marker, log, NPM_ARGS)
