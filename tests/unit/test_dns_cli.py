"""`cozyops dns` without a DNS server: the manual provider, bad input, the lock and the journal."""

import contextlib
import json
import subprocess
import sys

import pytest
import yaml

from cozyops import cli, state
from tests.unit.test_inventory import GROUP_VARS, make


def run(capsys, *argv):
    with pytest.raises(SystemExit) as done:
        cli.main(list(argv))
    out, err = capsys.readouterr()
    return done.value.code, out, err


@pytest.fixture
def manual_fleet(tmp_path):
    group_vars = {**GROUP_VARS, "cozy_dns": {"provider": "manual"}, "cozy_fleet_name": "manual-test"}
    instances = {"instances": [{"domain": "alice.example.org", "server": "h1"},
                               {"domain": "bob.example.org", "server": "h1"}]}
    return make(tmp_path / "fleet", group_vars=group_vars, instances=instances)


def test_manual_plan_prints_the_snippet_on_stdout(capsys, manual_fleet):
    code, out, err = run(capsys, "dns", "plan", "--fleet", str(manual_fleet))
    assert code in (0, None)
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert "$ORIGIN example.org." in lines
    assert "alice 300 IN A 192.0.2.10" in lines and "*.bob 300 IN A 192.0.2.10" in lines
    assert 'bob 300 IN CAA 0 issuewild "letsencrypt.org"' in lines
    assert not any("_cozyops" in line for line in lines)  # no ownership marks in a pasted zone
    assert "checksum" in err


def test_manual_plan_json_is_only_json(capsys, manual_fleet, monkeypatch):
    monkeypatch.setenv("COZYOPS_FLEET", str(manual_fleet))
    code, out, _ = run(capsys, "dns", "plan", "--json")
    data = json.loads(out)
    assert code in (0, None)
    assert data["provider"] == "manual" and data["zone"] == "example.org" and data["fleet"] == "manual-test"
    assert len(data["changes"]) == 6 and {c["action"] for c in data["changes"]} == {"create"}
    assert len(data["checksum"]) == 16 and data["snippet"].startswith("; DNS records of fleet manual-test")


def test_manual_apply_says_what_to_do_instead(capsys, manual_fleet):
    code, out, err = run(capsys, "dns", "apply", "--yes", "--fleet", str(manual_fleet))
    assert (code, out) == (1, "")
    assert err.strip() == ("cozyops: error: fleet manual-test: its DNS provider is manual: cozyops does not write its "
                           "zone (paste the records of `cozyops dns plan` at your DNS host, then run "
                           "`cozyops dns check`)")


def test_no_fleet_is_one_line(capsys, monkeypatch):
    monkeypatch.delenv("COZYOPS_FLEET", raising=False)
    code, _, err = run(capsys, "dns", "plan")
    assert code == 1
    assert err.strip() == "cozyops: error: fleet: no fleet directory (pass --fleet DIR or set COZYOPS_FLEET)"


def test_bad_fleet_input_is_one_line_naming_file_and_key(capsys, manual_fleet):
    (manual_fleet / "instances.yml").write_text(yaml.safe_dump({"instances": [{"domain": "x.example.org",
                                                                                 "server": "nope"}]}))
    code, out, err = run(capsys, "dns", "plan", "--fleet", str(manual_fleet))
    assert (code, out) == (1, "")
    assert err.strip() == ("cozyops: error: instances.yml: instances[0].server: 'nope' is not a host of "
                           "hosts.yml (hosts: h1)")


@contextlib.contextmanager
def lock_held_elsewhere(state_dir, fleet: str, command: str):
    """The fleet's lock held by another process for the duration (within one process the lock is
    re-entrant: `apply` provisions inside it)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from cozyops import state\n"
         "with state.fleet_lock(Path(sys.argv[1]), sys.argv[2], sys.argv[3]):\n"
         "    print('held', flush=True); sys.stdin.readline()", str(state_dir), fleet, command],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        yield
    finally:
        holder.communicate("\n", timeout=30)
    assert holder.returncode == 0


def test_the_lock_names_its_holder_and_is_released(tmp_path):
    with lock_held_elsewhere(tmp_path, "f", "first run"):
        with pytest.raises(state.LockedError, match=r"^fleet f: another cozyops run is working on it \(pid \d+, "
                                                     r"first run, since .*\) \(wait for it to finish\)$"):
            with state.fleet_lock(tmp_path, "f", "second run"):
                pass
    with state.fleet_lock(tmp_path, "f", "third run"):
        assert "third run" in (tmp_path / "lock").read_text()
        with pytest.raises(state.LockedError, match=r"\(pid \d+, third run, "):  # not re-entrant: refused
            with state.fleet_lock(tmp_path, "f", "nested"):
                pass
    with state.fleet_lock(tmp_path, "f", "fourth run", reentrant=True):
        with state.fleet_lock(tmp_path, "f", "nested"):  # re-entrant (apply, move): the same process takes it again
            assert "fourth run" in (tmp_path / "lock").read_text()
        assert "fourth run" in (tmp_path / "lock").read_text()
    assert (tmp_path / "lock").read_text() == ""


def test_the_journal_keeps_failed_batches_with_their_changes(tmp_path):
    journal = state.Journal(tmp_path)
    journal.record("dns-batch", "example.org at ns", "ok", 1000)
    journal.record("dns-batch", "example.org at ns", "failed", 2, "NXRRSET: ...", [{"name": "a.example.org."}])
    journal.close()
    again = state.Journal(tmp_path)
    failed = again.entries("dns-batch", "failed")
    expected = [(2, "NXRRSET: ...", [{"name": "a.example.org."}])]
    assert [(e["count"], e["error"], e["detail"]) for e in failed] == expected
    assert [e["outcome"] for e in again.entries()] == ["ok", "failed"]
