"""Rolling upgrades of cozy-stack on four lab hosts (issue 22), from the lab's apt repository:

the hosts are provisioned with the base build (the lab's fleet pins it), alice's instance lives on
h1 and bob's on h3 (h2 and h4 have none). The deliberately broken build (its double reads an empty
instance registry) stops the run after the first batch: h1 lost its instance, h2 (none to lose)
passes, h3 and h4 are not touched. `--to <base>` rolls h1 and h2 back (h1 unhealthy before, healthy
after); then the newer build goes
to all four in batches of two, each batch checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cozyops.lab import aptrepo
from tests.conftest import own_lab

# Four fresh hosts provisioned, then three upgrade runs: many minutes on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(2400)
HOSTS = ["h1", "h2", "h3", "h4"]


@pytest.fixture(scope="module")
def upgrade_lab(tmp_path_factory):
    instances: dict[str, str] = {}

    def place(lab) -> None:  # before the hosts are provisioned: the nginx role makes the instances' sites
        instances.update({"h1": f"alice.{lab.spec.zone}", "h3": f"bob.{lab.spec.zone}"})
        lab.fleet_dir.mkdir(parents=True, exist_ok=True)
        (lab.fleet_dir / "instances.yml").write_text(json.dumps({"instances": [
            {"domain": domain, "server": host, "apps": ["drive"]} for host, domain in instances.items()]}))

    with own_lab(tmp_path_factory, "u", place, hosts_wanted=4, with_stack=True) as lab:
        for host, domain in instances.items():
            added = on_host(lab, host, "COZY_ADMIN_PASSPHRASE=$(cat /etc/cozy/.cozy-admin-passphrase) "
                                       f"cozy-stack instances add --apps drive {domain}")
            assert added.returncode == 0, added.stderr
        yield lab


def inside(lab, argv: list[str], timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cozyops", "lab", "exec", "--dir", str(lab.dir), "--", *argv],
                          capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


def on_host(lab, host: str, command: str) -> subprocess.CompletedProcess:
    return inside(lab, ["ssh", "-F", str(lab.host_files.ssh_config), host, command], timeout=120)


def upgrade(lab, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    result = inside(lab, [sys.executable, "-m", "cozyops", "server", "upgrade", "--fleet", str(lab.fleet_dir),
                          *args])
    data = {}
    if "--json" in args and result.stdout.strip():
        data = json.loads(result.stdout)
    return result, data


def installed(lab, host: str) -> str:
    shown = on_host(lab, host, "dpkg-query -W -f='${Version}' cozy-stack")
    assert shown.returncode == 0, shown.stderr
    return shown.stdout.strip()


def versions() -> dict[str, str]:
    return aptrepo.stack_versions(aptrepo.find())


def test_the_fleet_runs_the_pinned_base_build(upgrade_lab):
    base = versions()["base"]
    assert {host: installed(upgrade_lab, host) for host in HOSTS} == {host: base for host in HOSTS}


def test_the_broken_build_stops_after_the_first_batch(upgrade_lab):
    want = versions()
    result, data = upgrade(upgrade_lab, "--to", want["broken"], "--batch", "2", "--json")
    assert result.returncode == 1, result.stderr[-3000:]
    assert [b["hosts"] for b in data["batches"]] == [["h1", "h2"]], data
    failures = data["stopped"]["failures"]
    assert data["stopped"]["batch"] == 1 and data["stopped"]["stage"] == "health", failures
    assert set(failures) == {"h1"}, failures  # h2 has no instance to lose: healthy
    assert "instances: 1 before the upgrade, 0 after" in failures["h1"], failures
    assert any(f"drive.alice.{upgrade_lab.spec.zone} through nginx: 404" in r for r in failures["h1"]), failures
    assert data["untouched"] == ["h3", "h4"]
    assert installed(upgrade_lab, "h1") == installed(upgrade_lab, "h2") == want["broken"]
    assert installed(upgrade_lab, "h3") == installed(upgrade_lab, "h4") == want["base"]
    # the run's artifacts and the journal keep it
    run = data["batches"][0]["run"]
    assert (upgrade_lab.fleet_dir / ".cozyops" / "runs" / run / "job_events").is_dir()



def test_a_roll_back_is_an_upgrade_to_the_older_build(upgrade_lab):
    want = versions()
    result, data = upgrade(upgrade_lab, "--to", want["base"], "--batch", "2", "h1", "h2")
    assert result.returncode == 0, result.stderr[-3000:]
    # h1 was unhealthy before (the broken build): said, upgraded all the same, healthy after
    assert "h1 is unhealthy before its upgrade: cozy-stack knows none of the fleet's 1 instance(s)" in result.stderr
    assert f"batch 1 h1: ok, cozy-stack {want['broken']} -> {want['base']}, 1 instance(s)" in result.stderr
    assert "Traceback" not in result.stderr
    assert [installed(upgrade_lab, host) for host in HOSTS] == [want["base"]] * 4


def test_a_rolling_upgrade_of_four_hosts_in_batches_of_two(upgrade_lab):
    want = versions()
    result, data = upgrade(upgrade_lab, "--to", want["upgrade"], "--batch", "2", "--pause", "1", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert data["ok"] and [b["hosts"] for b in data["batches"]] == [["h1", "h2"], ["h3", "h4"]], data
    for outcome in data["batches"]:
        for host in outcome["hosts"]:
            before, after = outcome["before"][host], outcome["after"][host]
            assert before["package"] == want["base"] and after["package"] == after["version"] == want["upgrade"]
            assert after["instances"] == before["instances"] == (1 if host in ("h1", "h3") else 0)
            assert after["status"] == "OK"
    assert data["batches"][1]["after"]["h3"]["app_host"] == f"drive.bob.{upgrade_lab.spec.zone}"
    assert data["batches"][1]["after"]["h3"]["app_status"] == 302
    assert [installed(upgrade_lab, host) for host in HOSTS] == [want["upgrade"]] * 4
    journal = inside(upgrade_lab, ["sqlite3", str(upgrade_lab.fleet_dir / ".cozyops" / "state.db"),
                                   "SELECT subject, outcome FROM journal WHERE kind = 'upgrade' ORDER BY id"])
    if journal.returncode == 0:  # (sqlite3's command line is not a lab package)
        assert journal.stdout.splitlines()[-2:] == ["h1 h2|ok", "h3 h4|ok"], journal.stdout
