"""HTTP-01's pure parts: the setting, the names per mode, re-issue on changed names, the sites. Tables."""

import dataclasses
import datetime
from pathlib import Path

import pytest
import yaml

from cozyops import inventory
from cozyops.instances import site
from cozyops.model import AcmeSettings, DnsProviderKind, DnsSettings, Fleet, Instance, Server, SubdomainMode
from cozyops.tls import http01, policy

ACME = AcmeSettings("https://pebble.test/dir", challenge="http-01")


def fleet(mode: str, *instances: Instance, challenge: str = "http-01") -> Fleet:
    return Fleet("f", Path("/nonexistent"), "example.org", SubdomainMode(mode), DnsSettings(DnsProviderKind.MANUAL),
                 dataclasses.replace(ACME, challenge=challenge), {"h1": Server("h1", "10.0.0.1"),
                                                                  "h2": Server("h2", "10.0.0.2")}, instances)


ALICE = Instance("alice.example.org", "h1", ("drive", "photos"))
BOB = Instance("bob.users.example.org", "h2", ("settings",))


@pytest.mark.parametrize("mode, expected", [
    ("nested", [("alice.example.org", ("alice.example.org", "drive.alice.example.org", "photos.alice.example.org")),
                ("bob.users.example.org", ("bob.users.example.org", "settings.bob.users.example.org"))]),
    ("flat", [("alice.example.org", ("alice.example.org", "alice-drive.example.org", "alice-photos.example.org")),
              ("bob.users.example.org", ("bob.users.example.org", "bob-settings.users.example.org"))]),
])
def test_one_certificate_per_instance_naming_its_app_hosts_no_wildcard(mode, expected):
    specs = policy.cert_specs(fleet(mode, BOB, ALICE))
    assert [(spec.name, spec.domains) for spec in specs] == expected
    assert [spec.instances for spec in specs] == [(name,) for name, _ in expected]
    assert not any(name.startswith("*") for spec in specs for name in spec.domains)


def test_dns01_fleets_keep_their_wildcards():
    specs = policy.cert_specs(fleet("flat", ALICE, challenge="dns-01"))
    assert [(spec.name, spec.domains) for spec in specs] == [("example.org", ("example.org", "*.example.org"))]


def test_names_are_lowercase_deduplicated_and_start_with_the_instance():
    assert policy.http01_names(SubdomainMode.NESTED, "Alice.example.org.", ["Drive", "drive", "home"]) == (
        "alice.example.org", "drive.alice.example.org", "home.alice.example.org")


@pytest.mark.parametrize("status, renew_only, force, expected", [
    ("missing", False, False, (True, False)),
    ("missing", True, False, None),  # cert renew issues no new certificate
    ("names changed", True, False, (True, False)),  # ...but one whose instance's apps changed, yes
    ("names changed", False, False, (True, False)),
    ("due", True, False, (True, True)),
    ("expired", False, False, (True, True)),
    ("valid", True, False, None),
    ("valid", True, True, (True, True)),
])
def test_what_a_run_issues(status, renew_only, force, expected):
    assert policy.to_do(status, renew_only, force) == expected


def test_an_added_app_changes_the_names_so_the_budget_counts_it_new():
    before = policy.cert_specs(fleet("nested", ALICE))[0]
    after = policy.cert_specs(fleet("nested", dataclasses.replace(ALICE, apps=("drive", "photos", "notes"))))[0]
    assert "notes.alice.example.org" in after.domains
    t0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    verdict = policy.budget([after], [policy.Issued(t0, before.domains)], 1, t0 + datetime.timedelta(days=1))
    assert verdict.refused == [after]  # a new name set: counted (1 a week, used by the first)


def test_solver_targets_the_instance_server_and_refuses_other_names():
    solver = http01.Http01Solver(fleet("flat", ALICE, BOB), transport_for=lambda server: None)
    assert solver.target("alice-drive.example.org") == ("h1", "/var/www/html/.well-known/acme-challenge")
    assert solver.target("BOB.users.example.org.") == ("h2", "/var/www/html/.well-known/acme-challenge")
    with pytest.raises(http01.Http01Error, match=r"\*\.example\.org: is no name of an instance"):
        solver.target("*.example.org")
    assert http01.token_of("tok-en_1.thumb") == "tok-en_1"


def test_the_webroot_is_the_server_s_cozy_acme_webroot():
    server = Server("h1", "10.0.0.1", site_vars=(("cozy_acme_webroot", "/srv/acme/"),))
    assert http01.webroot(server) == "/srv/acme"


@pytest.mark.parametrize("mode, challenge, site_name, server_name", [
    ("nested", "http-01", "alice.example.org", "alice.example.org *.alice.example.org"),
    ("nested", "dns-01", "alice.example.org", "alice.example.org *.alice.example.org"),
    ("flat", "http-01", "alice.example.org", r"alice.example.org ~^alice-[a-z0-9]+\.example\.org$"),
    ("flat", "dns-01", "example.org", "example.org *.example.org"),
])
def test_sites_follow_the_certificates(mode, challenge, site_name, server_name):
    model = fleet(mode, ALICE, challenge=challenge)
    assert site.site_name(model, ALICE.domain) == site_name
    assert {spec.name for spec in policy.cert_specs(model)} == {site_name}
    text = site.render(model, model.servers["h1"], site_name)
    assert text.count(f"    server_name {server_name};\n") == 2
    assert f"ssl_certificate /etc/ssl/cozyops/{site_name}/fullchain.pem;" in text


def test_the_setting_is_read_from_group_vars(tmp_path):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars/all.yml").write_text(yaml.safe_dump({
        "cozy_zone": "example.org", "cozy_dns": {"provider": "manual"},
        "cozy_acme": {"directory": "letsencrypt-staging", "challenge": "HTTP-01"}}))
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {"h1": {"cozy_public_ipv4": "192.0.2.1"}}}}))
    (tmp_path / "instances.yml").write_text(yaml.safe_dump({"instances": []}))
    assert inventory.load(tmp_path).acme.challenge == "http-01"
    (tmp_path / "group_vars/all.yml").write_text(yaml.safe_dump({
        "cozy_zone": "example.org", "cozy_dns": {"provider": "manual"}, "cozy_acme": {"directory": "letsencrypt"}}))
    assert inventory.load(tmp_path).acme.challenge == "dns-01"


def test_files_written_journaled_removed_and_an_interrupted_run_swept(tmp_path):
    """Through the local transport (the server is this machine), into a webroot under tmp_path."""
    from cozyops import state
    from cozyops.model import Connection
    from cozyops.transport.fleet import transport

    web = tmp_path / "www"
    server = Server("h1", "127.0.0.1", connection=Connection.LOCAL, site_vars=(("cozy_acme_webroot", str(web)),))
    model = dataclasses.replace(fleet("nested", ALICE), servers={"h1": server})
    db = state.connect(tmp_path / "state")
    folder = web / ".well-known" / "acme-challenge"

    solver = http01.Http01Solver(model, transport, state.Challenges(db, run="one"))
    published = solver.publish([("alice.example.org", "tokA.thumb"), ("drive.alice.example.org", "tokB.thumb")])
    assert sorted(p.name for p in folder.iterdir()) == ["tokA", "tokB"]
    assert (folder / "tokA").read_text() == "tokA.thumb"
    assert state.Challenges(db).left(other_runs_only=False) == {
        "http-01:h1": [(f"{folder}/tokA", "tokA.thumb"), (f"{folder}/tokB", "tokB.thumb")]}
    assert solver.cleanup(published) == []
    assert list(folder.iterdir()) == [] and state.Challenges(db).left(other_runs_only=False) == {}

    solver.publish([("alice.example.org", "tokC.thumb")])  # killed before its cleanup
    later = http01.Http01Solver(model, transport, state.Challenges(db, run="two"))
    assert later.sweep() == []
    assert list(folder.iterdir()) == [] and state.Challenges(db).left(other_runs_only=False) == {}
    solver.close()
    later.close()
    db.close()
