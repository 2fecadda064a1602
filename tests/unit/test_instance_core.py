"""The instances core, pure parts: instances.yml edited with its comments kept, placement, the
instance fields read from instances.yml, the differences a plan acts on, the nginx site's text."""

from __future__ import annotations

from pathlib import Path

import pytest

from cozyops import inventory
from cozyops.errors import ConfigError
from cozyops.instances import fleetfile, lifecycle, placement, site
from cozyops.model import AcmeSettings, DnsProviderKind, DnsSettings, Fleet, Instance, Server, SubdomainMode

COMMENTED = """\
# The fleet's instances (keep this header)
instances:
  # alice: the first customer
  - domain: alice.example.org
    server: h1   # the big one
    apps: [home, drive]
  # bob, who pays yearly
  - domain: bob.example.org
    server: h2
    locale: fr

  # carol
  - domain: carol.example.org
    server: h1
# trailing note
"""


def test_add_then_remove_leaves_the_file_byte_for_byte(tmp_path):
    (tmp_path / "instances.yml").write_text(COMMENTED)
    fleetfile.add(tmp_path, {"domain": "Dave.Example.org", "server": "h2", "apps": ["home", "drive"],
                             "quota": "5GB", "tz": "Europe/Paris"})
    text = (tmp_path / "instances.yml").read_text()
    assert text.startswith(COMMENTED.removesuffix("# trailing note\n"))
    assert "  - domain: dave.example.org\n    server: h2\n    apps: [home, drive]\n    tz: Europe/Paris\n" \
           "    quota: 5GB\n# trailing note\n" in text
    assert fleetfile.remove(tmp_path, "dave.example.org")
    assert (tmp_path / "instances.yml").read_text() == COMMENTED


def test_remove_takes_the_comment_above_the_entry_and_keeps_the_others(tmp_path):
    (tmp_path / "instances.yml").write_text(COMMENTED)
    assert fleetfile.remove(tmp_path, "bob.example.org")
    text = (tmp_path / "instances.yml").read_text()
    assert "bob" not in text and "pays yearly" not in text
    assert "# alice: the first customer" in text and "# the big one" in text and "  # carol\n" in text
    assert "# trailing note" in text and "(keep this header)" in text
    assert not fleetfile.remove(tmp_path, "bob.example.org")
    assert fleetfile.entries(tmp_path) == ["alice.example.org", "carol.example.org"]


def test_update_sets_and_drops_fields_keeping_comments(tmp_path):
    (tmp_path / "instances.yml").write_text(COMMENTED)
    fleetfile.update(tmp_path, "bob.example.org", {"locale": None, "quota": "1GiB"})
    text = (tmp_path / "instances.yml").read_text()
    assert "locale: fr" not in text and "quota: 1GiB" in text and "# bob, who pays yearly" in text
    with pytest.raises(ConfigError, match="nobody.example.org is not an instance"):
        fleetfile.update(tmp_path, "nobody.example.org", {"locale": "en"})


def test_the_last_removal_leaves_an_empty_list_and_an_add_after_it_works(tmp_path):
    (tmp_path / "instances.yml").write_text("# mine\ninstances:\n- domain: a.example.org\n  server: h1\n")
    fleetfile.remove(tmp_path, "a.example.org")
    assert (tmp_path / "instances.yml").read_text() == "# mine\ninstances: []\n"
    fleetfile.add(tmp_path, {"domain": "b.example.org", "server": "h1"})
    assert fleetfile.entries(tmp_path) == ["b.example.org"]
    assert (tmp_path / "instances.yml").read_text().startswith("# mine\n")
    with pytest.raises(ConfigError, match="already an instance"):
        fleetfile.add(tmp_path, {"domain": "B.example.org", "server": "h1"})


def test_zero_indented_lists_stay_zero_indented(tmp_path):
    (tmp_path / "instances.yml").write_text("instances:\n- domain: a.example.org\n  server: h1\n")
    fleetfile.add(tmp_path, {"domain": "b.example.org", "server": "h2"})
    assert (tmp_path / "instances.yml").read_text() == (
        "instances:\n- domain: a.example.org\n  server: h1\n- domain: b.example.org\n  server: h2\n")


def fleet(servers: dict[str, int | None], instances: list[tuple[str, str]], mode=SubdomainMode.NESTED) -> Fleet:
    return Fleet("f", Path("/nowhere"), "example.org", mode, DnsSettings(DnsProviderKind.MANUAL),
                 AcmeSettings("https://ca/dir"),
                 {name: Server(name, "192.0.2.1", capacity=cap) for name, cap in servers.items()},
                 tuple(Instance(domain, server) for domain, server in instances))


@pytest.mark.parametrize(("servers", "instances", "extra", "chosen"), [
    ({"h1": 10, "h2": 10}, [("a.example.org", "h1")], {}, "h2"),
    ({"h1": 10, "h2": 3}, [], {}, "h1"),
    ({"h1": 10, "h2": 10}, [], {"h1": 9}, "h2"),  # others' instances count too
    ({"h1": 2, "h2": None}, [("a.example.org", "h2")], {}, "h2"),  # no capacity: unbounded room
    ({"h1": None, "h2": None}, [("a.example.org", "h1")], {}, "h2"),  # unbounded: the least loaded
    ({"h2": 5, "h1": 5}, [], {}, "h1"),  # ties: the first name
])
def test_placement_picks_the_server_with_the_most_room(servers, instances, extra, chosen):
    assert placement.place(fleet(servers, instances), extra) == chosen


def test_placement_refuses_when_every_server_is_full_naming_them():
    full = fleet({"h1": 1, "h2": 0}, [("a.example.org", "h1")])
    with pytest.raises(placement.NoRoomError, match=r"every server is full: h1 \(1/1\), h2 \(0/0\)"):
        placement.place(full)


@pytest.mark.parametrize(("value", "size"), [
    (0, 0), (1234, 1234), ("5GB", 5_000_000_000), ("500MiB", 500 * 1024**2), ("1.5 GiB", int(1.5 * 1024**3)),
    ("10kB", 10_000), ("2TB", 2 * 10**12), ("7", 7),
])
def test_sizes(value, size):
    assert inventory.parse_size(value, "instances.yml", "quota") == size


@pytest.mark.parametrize("value", ["five", "-1", -3, True, "5XB", ""])
def test_bad_sizes_name_the_key(value):
    with pytest.raises(ConfigError, match="quota: .* is not a size"):
        inventory.parse_size(value, "instances.yml", "instances[0].quota")


def test_differences_compare_shown_fields_with_the_server_and_the_others_with_what_was_applied():
    instance = Instance("a.example.org", "h1", locale="fr", quota=10, email="a@example.org", tz="Europe/Paris")
    observed = lifecycle.Observed("a.example.org", "en", 10, None, False, None, True)
    assert lifecycle.differences(instance, observed, {"email": "a@example.org"}) == {
        "locale": ("en", "fr"), "tz": (None, "Europe/Paris")}
    assert lifecycle.differences(Instance("a.example.org", "h1"), observed, {}) == {}  # nothing set: nothing held
    blocked = Instance("a.example.org", "h1", blocked=True, blocking_reason="unpaid")
    assert lifecycle.differences(blocked, observed, {}) == {"blocked": (False, True),
                                                            "blocking_reason": (None, "unpaid")}


def test_params_send_no_quota_as_minus_one():
    assert lifecycle.params({"quota": 0, "locale": "fr", "blocked": True, "tz": "UTC"}) == {
        "DiskQuota": -1, "Locale": "fr", "Blocked": True, "Timezone": "UTC"}


def test_onboarding_link_is_the_register_token_in_hex():
    assert lifecycle.onboarding_link("a.example.org", {"register_token": "AAEC"}) == \
        "https://a.example.org/?registerToken=000102"
    assert lifecycle.onboarding_link("a.example.org", {}) is None


@pytest.mark.parametrize(("mode", "domain", "name"), [
    (SubdomainMode.NESTED, "alice.example.org", "alice.example.org"),
    (SubdomainMode.FLAT, "alice.example.org", "example.org"),
])
def test_the_site_is_the_roles_template_with_the_fleet_named(mode, domain, name):
    model = fleet({"h1": None}, [(domain, "h1")], mode)
    text = site.render(model, model.servers["h1"], site.site_name(model, domain))
    assert f"server_name {name} *.{name};" in text and "# cozyops fleet: f\n" in text
    assert f"ssl_certificate /etc/ssl/cozyops/{name}/fullchain.pem;" in text
    assert site.desired_names(model) == {"h1": {name}}
