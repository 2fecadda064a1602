"""The pure parts of rolling upgrades: batches, the health check's verdicts, app hosts, the run's vars."""

from __future__ import annotations

from pathlib import Path

import pytest

from cozyops.errors import ConfigError
from cozyops.model import DnsProviderKind, DnsSettings, Fleet, Instance, SubdomainMode
from cozyops.servers import upgrade as upg

OLD, NEW = "1.6.40+lab.1.a", "1.6.41+lab.1.a"


def healthy(**changes) -> upg.Health:
    values = {"server": "h1", "status": "OK", "version": OLD, "package": OLD, "instances": 2,
              "app_host": "drive.alice.example.org", "app_status": 302}
    return upg.Health(**{**values, **changes})


def test_batches_keep_the_order_given():
    table = [
        (["h1", "h2", "h3", "h4"], 2, [["h1", "h2"], ["h3", "h4"]]),
        (["h1", "h2", "h3"], 2, [["h1", "h2"], ["h3"]]),
        (["h3", "h1"], 1, [["h3"], ["h1"]]),
        (["h1", "h2"], 5, [["h1", "h2"]]),
    ]
    for hosts, size, expected in table:
        assert upg.batches(hosts, size) == expected
    with pytest.raises(ConfigError, match="--batch"):
        upg.batches(["h1"], 0)


def test_what_the_health_check_finds_on_one_observation():
    table = [
        (healthy(), []),
        (healthy(app_host="", app_status=None), []),  # a server without instances: no app to check
        (upg.Health("h1", False, error="h1: SSH: connection refused"), ["unreachable: h1: SSH: connection refused"]),
        (healthy(status="KO"), ["/status: KO"]),
        (healthy(status=""), ["/status: no answer"]),
        (healthy(app_status=502), ["drive.alice.example.org through nginx: 502"]),
        (healthy(app_status=404), ["drive.alice.example.org through nginx: 404"]),
        (healthy(app_status=None), ["drive.alice.example.org through nginx: no answer"]),
        (healthy(app_status=200), []),
    ]
    for health, expected in table:
        assert upg.problems(health) == expected, health


def test_what_an_upgrade_broke():
    before = healthy()
    table = [
        (healthy(version=NEW, package=NEW), NEW, []),
        (healthy(version=NEW, package=NEW), None, []),
        (healthy(version=OLD, package=NEW), NEW, [f"runs {OLD} while {NEW} is installed (not restarted?)"]),
        (healthy(), NEW, [f"package {OLD} installed, not {NEW}"]),
        (healthy(version=NEW, package=NEW, instances=0, app_status=404), NEW,
         ["drive.alice.example.org through nginx: 404", "instances: 2 before the upgrade, 0 after"]),
        (healthy(version=NEW, package=NEW, instances=3), None, ["instances: 2 before the upgrade, 3 after"]),
        (upg.Health("h1", False, error="timed out"), NEW, ["unreachable: timed out"]),
    ]
    for after, to, expected in table:
        assert upg.compare(before, after, to) == expected, (after, to)


def test_a_server_unhealthy_before_has_to_be_healthy_after():
    broken = healthy(version=NEW, package=NEW, instances=0, app_host="", app_status=None,
                     error="cozy-stack knows none of the fleet's 1 instance(s) on this server (alice.example.org)")
    # rolled back: healthy again, its instance back (the count is not held against it)
    assert upg.compare(broken, healthy(), OLD) == []
    # still broken after: said, with what was already wrong before
    assert upg.compare(broken, broken, NEW) == [
        "cozy-stack knows none of the fleet's 1 instance(s) on this server (alice.example.org) "
        "(already before the upgrade)"]


def fleet(mode: SubdomainMode, instances: tuple[Instance, ...] = ()) -> Fleet:
    return Fleet("f", Path("/nonexistent"), "example.org", mode, DnsSettings(DnsProviderKind.MANUAL), None,
                 {}, instances)


def test_the_app_host_checked_through_nginx():
    alice = Instance("alice.example.org", "h1", apps=("drive", "photos"))
    bare = Instance("bob.example.org", "h1", apps=())
    assert upg.app_host(fleet(SubdomainMode.NESTED), alice) == "drive.alice.example.org"
    assert upg.app_host(fleet(SubdomainMode.FLAT), alice) == "alice-drive.example.org"
    assert upg.app_host(fleet(SubdomainMode.NESTED), bare) == "home.bob.example.org"


def test_the_probed_instance_is_one_the_server_knows():
    instances = (Instance("zed.example.org", "h1"), Instance("alice.example.org", "h2"),
                 Instance("bob.example.org", "h1"))
    model = fleet(SubdomainMode.NESTED, instances)
    assert upg.probe_instance(model, "h1").domain == "bob.example.org"
    assert upg.probe_instance(model, "h1", {"zed.example.org"}).domain == "zed.example.org"
    assert upg.probe_instance(model, "h1", set()) is None
    assert upg.probe_instance(model, "h3") is None


def test_the_runs_vars():
    assert upg.extravars(None) == {"cozy_upgrade_batch": "100%"}
    assert upg.extravars(NEW) == {"cozy_upgrade_batch": "100%", "cozy_stack_version": NEW,
                                  "cozy_stack_allow_downgrade": True}


def test_a_stopped_run_in_json():
    ok = upg.BatchOutcome(1, ["h1", "h2"], {"h1": healthy()}, {"h1": healthy(version=NEW, package=NEW)}, "r1")
    bad = upg.BatchOutcome(2, ["h3"], {"h3": healthy(server="h3")}, {}, "r2",
                           {"h3": ["instances: 2 before the upgrade, 0 after"]})
    result = upg.UpgradeResult(NEW, [ok, bad], ["h4"])
    data = result.to_json()
    assert result.failed and result.stopped_at is bad
    assert data["ok"] is False and data["untouched"] == ["h4"]
    assert data["stopped"] == {"batch": 2, "stage": "health",
                               "failures": {"h3": ["instances: 2 before the upgrade, 0 after"]}}
    assert data["batches"][0]["ok"] and data["batches"][0]["after"]["h1"]["package"] == NEW
    assert not upg.UpgradeResult(NEW, [ok], []).failed


def test_the_summary_of_a_stopped_run(capsys):
    from cozyops.cli.server import _upgrade_summary

    bad = upg.BatchOutcome(1, ["h1", "h2"], {"h1": healthy(), "h2": healthy(server="h2", instances=0)},
                           {"h1": healthy(version=NEW, package=NEW, instances=0),
                            "h2": healthy(server="h2", version=NEW, package=NEW, instances=0)}, "r1",
                           {"h1": ["instances: 2 before the upgrade, 0 after"]})
    _upgrade_summary(upg.UpgradeResult(NEW, [bad], ["h3", "h4"]))
    err = capsys.readouterr().err
    assert f"batch 1 h1: failed, cozy-stack {OLD} -> {NEW}, 0 instance(s)" in err
    assert f"batch 1 h2: ok, cozy-stack {OLD} -> {NEW}, 0 instance(s)" in err
    assert "upgrade stopped at batch 1 (h1, h2), in the health check after its upgrade:" in err
    assert "  h1: instances: 2 before the upgrade, 0 after" in err
    assert "not touched: h3, h4" in err
    assert f"roll back: cozyops server upgrade --to {OLD} h1 h2" in err
