"""The v2 import's orchestration without a server: the server chosen, progress reported through
the callback, a started import refused without --resume before any server is reached. (With the
lab's servers: tests/integration/test_v2_*.py.)"""

from __future__ import annotations

import contextlib

import pytest

from cozyops import inventory, paths
from cozyops.errors import ConfigError, CozyopsError
from cozyops.state import Ledger
from cozyops.v2 import importer, orchestrator
from cozyops.v2.tarball import Limits
from tests.unit.test_inventory import GROUP_VARS, make
from tests.v2export import realistic

HOSTS = {"all": {"children": {"cozy_servers": {"hosts": {
    "h1": {"ansible_host": "192.0.2.10"}, "h2": {"ansible_host": "192.0.2.11"}}}}}}
INSTANCES = {"instances": [{"domain": "alice.example.org", "server": "h2", "apps": ["drive"]}]}


@pytest.fixture
def fleet(tmp_path):
    return inventory.load(make(tmp_path / "prod", GROUP_VARS, HOSTS, INSTANCES))


def test_the_server_asked_for_else_the_instances_else_every_one(fleet):
    assert orchestrator.servers(fleet, "alice.example.org", "h1") == ["h1"]
    assert orchestrator.servers(fleet, "alice.example.org", None) == ["h2"]
    assert sorted(orchestrator.servers(fleet, "bob.example.org", None)) == ["h1", "h2"]
    with pytest.raises(ConfigError, match="--server h9"):
        orchestrator.servers(fleet, "alice.example.org", "h9")


def recorder(calls):
    @contextlib.contextmanager
    def progress(what, total):
        steps = []
        calls.append((what, total, steps))
        yield lambda nbytes, items: steps.append((nbytes, items))
    return progress


def test_a_dry_run_needs_no_fleet_and_reports_progress(tmp_path):
    export, holds = realistic()
    path = export.write(tmp_path / "x.tar.gz")
    calls = []
    report = orchestrator.import_export(None, path, orchestrator.Destination("alice.example.org", dry_run=True),
                                        Limits(), recorder(calls))
    assert report.dry_run and report.members > 0
    assert [(what, total) for what, total, _ in calls] == [("reading x.tar.gz", None)]
    steps = calls[0][2]
    assert steps and all(items == 1 for _, items in steps)  # one item a call of the reader's callback
    assert sum(nbytes for nbytes, _ in steps) > 0


def test_a_started_import_is_refused_without_resume_before_any_server_is_reached(fleet, tmp_path):
    export, _ = realistic()
    path = export.write(tmp_path / "x.tar.gz")
    ledger = Ledger(paths.fleet_state_dir(fleet.root), importer.fingerprint(path), "alice.example.org")
    ledger.start(str(path))
    ledger.close()
    # h2 (192.0.2.11, TEST-NET-1) is never reached: the refusal comes first.
    with pytest.raises(CozyopsError, match="was started and did not finish") as refused:
        orchestrator.import_export(fleet, path, orchestrator.Destination("alice.example.org"), Limits())
    assert "--resume" in str(refused.value)


def test_an_import_that_writes_needs_the_fleet(tmp_path):
    export, _ = realistic()
    path = export.write(tmp_path / "x.tar.gz")
    with pytest.raises(ValueError, match="needs the fleet"):
        orchestrator.import_export(None, path, orchestrator.Destination("alice.example.org"), Limits())
