"""cozy-stack-client's installation for the double's conformance run: where it goes, what it pins."""

from __future__ import annotations

import json

import pytest

from cozyops.errors import LabError
from cozyops.lab import jsclient


def test_cache_root_and_digest(monkeypatch, tmp_path):
    monkeypatch.setenv("COZYOPS_JSCLIENT_CACHE", str(tmp_path))
    assert jsclient.cache_root() == tmp_path
    assert jsclient.path() == tmp_path / jsclient.digest() and len(jsclient.digest()) == 16


def test_lockfile_pins_the_client_and_what_it_loads():
    lock = json.loads(jsclient.LOCKFILE.read_text())
    assert lock["packages"]["node_modules/cozy-stack-client"]["version"] == jsclient.VERSION == "60.21.1"
    manifest = json.loads(jsclient.MANIFEST.read_text())["dependencies"]
    assert manifest == {"@babel/runtime": "7.29.17", "cozy-client": "60.21.2", "cozy-flags": "4.8.2",
                        "cozy-stack-client": "60.21.1"}
    for name, version in manifest.items():
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
    # Installed without peer dependencies (React, React Native): none of them is in the lockfile.
    assert "node_modules/react-native" not in lock["packages"]


def test_find_says_to_run_lab_setup(monkeypatch, tmp_path):
    monkeypatch.setenv("COZYOPS_JSCLIENT_CACHE", str(tmp_path))
    with pytest.raises(LabError, match=r"sudo cozyops lab setup"):
        jsclient.find()


def test_install_is_a_no_op_when_installed(monkeypatch, tmp_path):
    monkeypatch.setenv("COZYOPS_JSCLIENT_CACHE", str(tmp_path))
    done = jsclient.path()
    (done / jsclient.ENTRY).parent.mkdir(parents=True)
    (done / jsclient.ENTRY).write_text("")
    (done / jsclient.MARKER).write_text("{}")
    monkeypatch.setattr(jsclient.pouchdb, "npm_ci", lambda *a, **k: pytest.fail("npm ci ran"))
    assert jsclient.install(tmp_path / "log") == done and jsclient.find() == done
