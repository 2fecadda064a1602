"""A test double of cozy-stack: its contract comes from reference/cozy-stack.md and cozy-stack-files-data-api.md.

cozy-stack (Cozy v3's Go server) cannot be built on the project's machines, so the lab runs this
double instead, laid out as the Debian package lays out cozy-stack (``/usr/bin/cozy-stack``,
``/etc/cozy/cozy.yml``, ``/etc/cozy/cozy-admin-passphrase``). It is written from those two
reference files, never from what a client needs: the ``cozy-stack`` command-line subset, the admin
API (Basic auth against the scrypt hash, JSON:API bodies and errors), the public API routed by the
Host header (``/version``, ``/status``, app subdomains, files, references, data), CLI tokens, and
the data in a CouchDB-compatible server (pouchdb-server) under the real database names.

Self-contained on purpose: the standard library and PyYAML only, so that it runs with a bare
Debian host's ``python3`` and ``python3-yaml`` (``PYTHONPATH=<dir> python3 -m stackdouble``).
"""

import json as _json
from pathlib import Path as _Path


def _build_info() -> dict:
    """What the lab's package says of its build (``<package dir>/build.json``, written by the lab's
    apt repository): the package's version, and ``fault`` for its deliberately broken build."""
    try:
        info = _json.loads((_Path(__file__).resolve().parent.parent / "build.json").read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


BUILD = _build_info()
# The cozy-stack the references describe (cozy/cozy-stack@db116385), or the lab package's version.
VERSION = str(BUILD.get("version") or "1.6.56-23-gdb1163854")
# "registry": the broken build looks for its instances where there are none (docs/upgrades.md).
FAULT = str(BUILD.get("fault") or "")
