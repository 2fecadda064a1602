"""`cozyops cert` without a CA: listing from the fleet's state, bad input, the lock."""

import json

from tests.unit.test_dns_cli import lock_held_elsewhere, manual_fleet, run  # noqa: F401 - the fixture
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
    with lock_held_elsewhere(manual_fleet / ".cozyops", "manual-test", "cozyops dns apply"):
        code, _, err = run(capsys, "cert", "issue", "--dry-run", "--fleet", str(manual_fleet))
    assert code == 1 and "another cozyops run is working on it" in err and "cozyops dns apply" in err


def test_dry_run_shows_and_respects_the_lets_encrypt_budget(capsys, tmp_path):
    """Let's Encrypt production: 50 new certificates per registered domain per week; no CA is asked."""
    group_vars = {**GROUP_VARS, "cozy_dns": {"provider": "manual"}}
    instances = {"instances": [{"domain": f"u{i:02d}.example.org", "server": "h1"} for i in range(52)]}
    fleet = make(tmp_path / "fleet", group_vars=group_vars, instances=instances)
    code, out, err = run(capsys, "cert", "issue", "--dry-run", "--json", "--fleet", str(fleet))
    plan = json.loads(out)
    assert code == 1 and len(plan["issue"]) == 50 and plan["over_budget"] == ["u50.example.org", "u51.example.org"]
    assert plan["budget"] == {"limit_per_week": 50, "left": {"example.org": 0}}
    assert "2 over the weekly budget: u50.example.org, u51.example.org" in err


def test_budget_counts_this_weeks_new_certificates_and_exempts_renewals(tmp_path):
    import datetime

    from cozyops import inventory
    from cozyops.tls.manager import CertManager
    from cozyops.tls.store import Record

    group_vars = {**GROUP_VARS, "cozy_dns": {"provider": "manual"}, "cozy_acme": {"directory": "letsencrypt",
                                                                                  "budget": 3}}
    instances = {"instances": [{"domain": f"u{i}.example.org", "server": "h1"} for i in range(4)]}
    manager = CertManager(inventory.load(make(tmp_path / "fleet", group_vars=group_vars, instances=instances)))
    now = datetime.datetime.now(datetime.UTC)
    past = [Record(f"x{i}.example.org", (f"x{i}.example.org",), "1", now, now, "CA", manager.directory, "ecdsa", now)
            for i in range(2)]
    # u0's name set was issued 40 days ago: it is a renewal, exempt
    past.append(Record("u0.example.org", ("u0.example.org", "*.u0.example.org"), "2", now, now, "CA",
                       manager.directory, "ecdsa", now - datetime.timedelta(days=40)))
    manager.store.record([(record, False) for record in past])
    manager.store.db.execute("DELETE FROM certificates")  # only the history counts here
    manager.store.db.commit()
    plan = manager.plan()
    assert [spec.name for spec in plan.verdict.renewals] == ["u0.example.org"]
    assert [spec.name for spec in plan.verdict.allowed] == ["u1.example.org"]  # 2 used this week, limit 3
    assert [spec.name for spec in plan.refused] == ["u2.example.org", "u3.example.org"]
    # recorded as a renewal when issued, so that it does not count against next week's budget
    assert [(spec.name, renewal) for spec, renewal in plan.todo] == [("u0.example.org", True),
                                                                      ("u1.example.org", False)]
    manager.close()
