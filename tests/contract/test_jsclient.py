"""The conformance run of cozy-stack-client, cozy-stack's official JavaScript client, against the double.

``jsclient/conformance.js`` makes the client's calls unmodified, as an application makes them
(files, trash, references, data, settings, permissions), with a CLI token whose scope covers
them, and reports each call; every call must pass but those listed in ``KNOWN_FAILURES``, each with
its reason (docs/double.md, "Public API"). The client is pinned by cozyops/lab/jsclient/ and
installed by ``cozyops lab setup``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import Double, unique

SCRIPT = Path(__file__).resolve().parent / "jsclient" / "conformance.js"
SCOPE = "io.cozy.files io.cozy.settings io.cozy.permissions io.cozy.photos.albums io.cozy.cozyops.conformance"
# Calls that still fail, each with the reason (none is the double's fault).
KNOWN_FAILURES: dict[str, str] = {}


def run_client(d: Double) -> dict:
    from cozyops.lab import jsclient

    try:
        install = jsclient.find()
    except Exception as error:  # LabError: tell how to install it
        pytest.fail(str(error))
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on the PATH")
    domain = unique("js") + ".cozy.test"
    reply = d.create(domain, Locale="en")
    assert reply.status == 201, reply.text
    token = d.token(domain, scope=SCOPE)
    done = subprocess.run([node, str(SCRIPT), str(install / "node_modules"), f"http://127.0.0.1:{d.public_port}",
                           domain, token], capture_output=True, text=True, timeout=300, cwd=d.directory)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_cozy_stack_client_conformance(nested: Double):
    report = run_client(nested)
    assert "fatal" not in report, report["fatal"]
    results = report["results"]
    assert len(results) >= 48, len(results)
    failed = {r["call"]: r["error"] for r in results if not r["ok"]}
    unexpected = {call: error for call, error in failed.items() if call not in KNOWN_FAILURES}
    assert not unexpected, json.dumps(unexpected, indent=1)
    # A listed failure that passes now is taken off the list.
    assert set(KNOWN_FAILURES) <= set(failed), set(KNOWN_FAILURES) - set(failed)
