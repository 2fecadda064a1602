"""pouchdb-server's installation: where it goes, what is missing, the command line that starts it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cozyops.errors import LabError
from cozyops.lab import pouchdb


def test_cache_root_and_digest(monkeypatch, tmp_path):
    monkeypatch.setenv("COZYOPS_POUCHDB_CACHE", str(tmp_path))
    assert pouchdb.cache_root() == tmp_path
    assert pouchdb.path() == tmp_path / pouchdb.digest() and len(pouchdb.digest()) == 16


def test_lockfile_pins_pouchdb_server():
    lock = json.loads(pouchdb.LOCKFILE.read_text())
    assert lock["packages"]["node_modules/pouchdb-server"]["version"] == pouchdb.VERSION == "4.2.0"
    assert json.loads(pouchdb.MANIFEST.read_text())["dependencies"] == {"pouchdb-server": "4.2.0"}


def test_find_says_to_run_lab_setup(monkeypatch, tmp_path):
    monkeypatch.setenv("COZYOPS_POUCHDB_CACHE", str(tmp_path))
    with pytest.raises(LabError, match=r"sudo cozyops lab setup"):
        pouchdb.find()


def test_argv_keeps_everything_under_the_data_dir(tmp_path):
    argv = pouchdb.argv("/usr/bin/node", 5984, "127.0.0.1", tmp_path / "data", install_dir=Path("/opt/p"))
    assert argv[0] == "/usr/bin/node" and argv[1] == "-e"
    assert f"process.chdir({json.dumps(str(tmp_path / 'data'))})" in argv[2]
    assert "/opt/p/node_modules/pouchdb-server/bin/pouchdb-server" in argv[2]
    assert argv[3:] == ["pouchdb-server", "--host", "127.0.0.1", "--port", "5984", "--dir",
                        str(tmp_path / "data" / "db"), "--no-color"]
