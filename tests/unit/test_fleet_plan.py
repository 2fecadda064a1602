"""The fleet planner's pure parts, from tables: what the servers hold (views) and what the fleet
owns -> instance and site changes, conflicts, "not in the fleet"; safety; the checksum."""

from __future__ import annotations

from pathlib import Path

from cozyops.fleet.orchestrator import FleetPlan, Orchestrator, ServerView, server_digest
from cozyops.instances import lifecycle, site
from cozyops.model import AcmeSettings, DnsProviderKind, DnsSettings, Fleet, Instance, Server, SubdomainMode
from cozyops.plan import Change, Safety


def fleet(*instances: Instance, mode=SubdomainMode.NESTED, name="f") -> Fleet:
    return Fleet(name, Path("/nowhere"), "example.org", mode, DnsSettings(DnsProviderKind.MANUAL),
                 AcmeSettings("https://ca/dir"), {"h1": Server("h1", "192.0.2.1"), "h2": Server("h2", "192.0.2.2")},
                 instances)


def seen(domain: str, locale="en", quota=0, blocked=False) -> lifecycle.Observed:
    return lifecycle.Observed(domain, locale, quota, None, blocked, None, False)


def planned(model: Fleet, views: dict[str, ServerView], owned: dict[str, dict]) -> FleetPlan:
    plan = FleetPlan(model.name, views=views)
    orchestrator = Orchestrator(model)
    orchestrator._plan_instances(plan, owned)
    orchestrator._plan_sites(plan)
    return plan


def owns(*domains: str, server="h1", settings=None) -> dict[str, dict]:
    return {d: {"server": server, "origin": "created", "settings": settings or {}, "at": ""} for d in domains}


def test_create_update_delete_only_what_the_fleet_owns():
    model = fleet(Instance("new.example.org", "h1"), Instance("kept.example.org", "h1", locale="fr"),
                  Instance("theirs.example.org", "h1"))
    views = {"h1": ServerView("h1", instances={d: seen(d) for d in (
        "kept.example.org", "gone.example.org", "theirs.example.org", "other.example.org")}), "h2": ServerView("h2")}
    plan = planned(model, views, owns("kept.example.org", "gone.example.org"))
    instances = [(c.action, c.key, c.before, c.after) for c in plan.of("instance")]
    assert instances == [
        ("update", ("kept.example.org",), {"locale": "en"}, {"locale": "fr"}),
        ("create", ("new.example.org",), None, {"server": "h1", "apps": list(model.instances[0].apps)}),
        ("delete", ("gone.example.org",), {"server": "h1", "locale": "en", "quota": 0, "context": None,
                                           "blocked": False, "blocking_reason": None}, None),
    ]
    assert [c["name"] for c in plan.conflicts] == ["theirs.example.org"]
    assert "does not own it" in plan.conflicts[0]["why"]
    assert plan.foreign == [{"domain": "other.example.org", "server": "h1", "blocked": False}]


def test_an_unreachable_server_plans_nothing_for_its_instances():
    model = fleet(Instance("a.example.org", "h2"))
    plan = planned(model, {"h1": ServerView("h1"), "h2": ServerView("h2", error="server h2: no answer")},
                   owns("a.example.org", server="h2"))
    assert plan.changes == []


def test_an_instance_on_another_server_is_a_conflict_not_a_creation():
    model = fleet(Instance("a.example.org", "h2"))
    plan = planned(model, {"h1": ServerView("h1", instances={"a.example.org": seen("a.example.org")}),
                           "h2": ServerView("h2")}, owns("a.example.org"))
    assert plan.of("instance") == [] and "is on server h1, wanted on h2" in plan.conflicts[0]["why"]


def test_sites_are_created_changed_removed_only_when_the_fleets():
    model = fleet(Instance("a.example.org", "h1"), Instance("b.example.org", "h1"), Instance("c.example.org", "h1"))
    text = site.render(model, model.servers["h1"], "a.example.org")
    found = {
        "a.example.org": site.Found("a.example.org", site.digest(text), True, "f", ""),
        "b.example.org": site.Found("b.example.org", "0" * 64, True, "f", ""),
        "c.example.org": site.Found("c.example.org", "1" * 64, True, "other", ""),
        "old.example.org": site.Found("old.example.org", "2" * 64, True, "f", ""),
        "hand.example.org": site.Found("hand.example.org", "3" * 64, True, "", ""),
    }
    views = {"h1": ServerView("h1", instances={d: seen(d) for d in ("a.example.org", "b.example.org",
                                                                     "c.example.org")}, sites=found),
             "h2": ServerView("h2")}
    plan = planned(model, views, owns("a.example.org", "b.example.org", "c.example.org"))
    assert [(c.action, c.key) for c in plan.of("site")] == [
        ("update", ("h1", "b.example.org")), ("delete", ("h1", "old.example.org"))]
    assert [(c["kind"], c["name"]) for c in plan.conflicts] == [("site", "c.example.org")]
    assert plan.owned_sites == 3


def test_flat_mode_has_one_site_per_server_for_the_zone():
    model = fleet(Instance("a.example.org", "h1"), Instance("b.example.org", "h1"), Instance("c.example.org", "h2"),
                  mode=SubdomainMode.FLAT)
    plan = planned(model, {"h1": ServerView("h1"), "h2": ServerView("h2")}, {})
    assert [(c.action, c.key) for c in plan.of("site")] == [("create", ("h1", "example.org")),
                                                             ("create", ("h2", "example.org"))]


def test_only_plans_the_named_instance():
    model = fleet(Instance("a.example.org", "h1"), Instance("b.example.org", "h1"))
    orchestrator = Orchestrator(model)
    orchestrator.only = {"b.example.org"}
    plan = FleetPlan("f", views={"h1": ServerView("h1", instances={"x.example.org": seen("x.example.org")})})
    orchestrator._plan_instances(plan, {})
    orchestrator._plan_sites(plan)
    assert [c.key for c in plan.changes] == [("b.example.org",), ("h1", "b.example.org")] and plan.foreign == []


def test_removing_most_owned_instances_is_unsafe():
    plan = FleetPlan("f", changes=[Change("instance", "delete", (f"i{n}",), {}, None) for n in range(4)],
                     owned_instances=10)
    assert plan.unsafe(Safety(3, 30.0)).startswith("instances: deletes or updates 4 of the 10 instances")
    assert plan.unsafe(Safety(10, 30.0)) is None  # not above both thresholds
    plan.owned_instances = 20
    assert plan.unsafe(Safety(3, 30.0)) is None  # 20 %


def test_the_checksum_covers_before_and_after():
    one = FleetPlan("f", changes=[Change("instance", "update", ("a",), {"locale": "en"}, {"locale": "fr"})])
    two = FleetPlan("f", changes=[Change("instance", "update", ("a",), {"locale": "en"}, {"locale": "de"})])
    assert one.checksum != two.checksum and len(one.checksum) == 16
    assert FleetPlan("f").checksum == FleetPlan("g").checksum  # nothing to do is nothing to do


def test_a_servers_inputs_are_the_roles_and_its_variables():
    assert server_digest("r", {"a": 1, "b": [2]}) == server_digest("r", {"b": [2], "a": 1})
    assert server_digest("r", {"a": 1}) != server_digest("r", {"a": 2}) != server_digest("s", {"a": 2})


def _journal(model: Fleet, domain: str, steps: list[str], keep_until: str | None = None) -> None:
    from cozyops import state

    with state.Steps(model.state_dir, "move", domain) as journal:
        journal.start({"domain": domain, "source": "h1", "target": "h2", "keep_days": 7})
        for step in steps:
            journal.record(step, {"keep_until": keep_until} if step == "moved" else {})
        if "moved" in steps:
            journal.finish("moved")


def test_moves_under_way_are_shown_and_a_source_past_its_keep_days_is_removed(tmp_path):
    from cozyops.instances.move import STEPS

    model = Fleet("f", tmp_path, "example.org", SubdomainMode.NESTED, DnsSettings(DnsProviderKind.MANUAL),
                  AcmeSettings("https://ca/dir"), {"h1": Server("h1", "192.0.2.1"), "h2": Server("h2", "192.0.2.2")},
                  [Instance(f"{n}.example.org", "h2") for n in ("due", "kept", "gone")]
                  + [Instance("going.example.org", "h1")])
    _journal(model, "going.example.org", ["checks", "create", "block"])
    _journal(model, "due.example.org", list(STEPS), "2026-01-01T00:00:00+00:00")
    _journal(model, "kept.example.org", list(STEPS), "2999-01-01T00:00:00+00:00")
    _journal(model, "gone.example.org", list(STEPS), "2026-01-01T00:00:00+00:00")
    on_h1 = {d: seen(d, blocked=True) for d in ("due.example.org", "kept.example.org", "going.example.org")}
    plan = FleetPlan(model.name, views={"h1": ServerView("h1", instances=on_h1), "h2": ServerView("h2")})
    Orchestrator(model)._plan_moves(plan)
    assert [(c.action, c.key, c.before["present"]) for c in plan.of("moved")] == [
        ("delete", ("due.example.org", "h1"), True), ("delete", ("gone.example.org", "h1"), False)]
    by_domain = {m["domain"]: m for m in plan.moves}
    assert by_domain["going.example.org"]["status"] == "started" and by_domain["going.example.org"]["next"] == "export"
    assert by_domain["kept.example.org"]["removal_due"] is False
    assert plan.counts()["moved"]["delete"] == 2
    assert plan.unsafe(Safety(1, 1)) is None  # asked for by the moves: not held back by the thresholds
    # an unreachable source: nothing planned for it
    plan = FleetPlan(model.name, views={"h1": ServerView("h1", error="server h1: no answer"), "h2": ServerView("h2")})
    Orchestrator(model)._plan_moves(plan)
    assert plan.of("moved") == [] and len(plan.moves) == 4
