"""`cozyops cert` without a CA: listing from the fleet's state, bad input, the lock."""

import json

from cozyops import state
from tests.unit.test_dns_cli import manual_fleet, run  # noqa: F401 - the fixture
from tests.unit.test_inventory import GROUP_VARS, make


def test_ls_lists_every_certificate_the_fleet_needs_as_missing(capsys, manual_fleet):  # noqa: F811
    code, out, _ = run(capsys, "cert", "ls", "--json", "--fleet", str(manual_fleet))
    assert code in (0, None)
    rows = json.loads(out)
    assert [(row["name"], row["names"], row["status"], row["fullchain"]) for row in rows] == [
        ("alice.example.org", ["alice.example.org", "*.alice.example.org"], "missing", None),
        ("bob.example.org", ["bob.example.org", "*.bob.example.org"], "missing", None),
    ]


def test_unknown_name_is_one_error_line(capsys, manual_fleet):  # noqa: F811
    code, out, err = run(capsys, "cert", "ls", "zed.example.org", "--fleet", str(manual_fleet))
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [
        "cozyops: error: certificate zed.example.org: neither a certificate nor an instance of the fleet "
        "(`cozyops cert ls` lists them)"]


def test_no_acme_settings_is_one_error_line(capsys, tmp_path):
    group_vars = {key: value for key, value in GROUP_VARS.items() if key != "cozy_acme"}
    fleet = make(tmp_path / "fleet", group_vars=group_vars)
    code, _, err = run(capsys, "cert", "ls", "--fleet", str(fleet))
    assert code == 1 and "cozy_acme: missing" in err and len(err.strip().splitlines()) == 1


def test_issue_refuses_while_another_run_holds_the_fleet(capsys, manual_fleet):  # noqa: F811
    with state.fleet_lock(manual_fleet / ".cozyops", "manual-test", "cozyops dns apply"):
        code, _, err = run(capsys, "cert", "issue", "--dry-run", "--fleet", str(manual_fleet))
    assert code == 1 and "another cozyops run is working on it" in err and "cozyops dns apply" in err
