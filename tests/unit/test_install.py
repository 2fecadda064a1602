"""`cozyops install` without servers: options against a fleet (tables), the fleet directory's
edits (ruamel round trip, idempotent, comments kept, read back by inventory.load), the renewal
forms (the crontab is a scratch file named by COZYOPS_CRONTAB), the journal's resume."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cozyops import inventory
from cozyops.errors import ConfigError
from cozyops.install import fleetdir, renewal
from cozyops.install.run import Installer, register_token_hex
from cozyops.install.settings import Options, app_host, default_zone, edits


def _tsig(tmp_path: Path) -> str:
    key = tmp_path / "tsig.key"
    key.write_text('key "cozyops" {\n  algorithm hmac-sha256;\n  secret "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0";\n};\n')
    key.chmod(0o600)
    return str(key)


def _new(tmp_path: Path, **extra) -> Options:
    values = {"domain": "cozy.example.org", "email": "me@example.org", "host": "192.0.2.10", "dns": "rfc2136",
              "dns_server": "192.0.2.53", "tsig_key_file": _tsig(tmp_path)}
    values.update(extra)
    return Options(**values)


def _written(tmp_path: Path, options: Options):
    root = tmp_path / "fleet"
    fleetdir.write(root, edits(options, None))
    return root, inventory.load(root)


@pytest.mark.parametrize(("domain", "zone"), [
    ("cozy.example.org", "example.org"), ("example.org", "example.org"), ("alice.example.co.uk", "example.co.uk"),
    ("alice.cozy.test", "cozy.test"),
])
def test_the_default_zone_is_the_registered_domain(domain, zone):
    assert default_zone(domain) == zone


@pytest.mark.parametrize(("domain", "mode", "host"), [
    ("alice.example.org", "nested", "drive.alice.example.org"),
    ("alice.example.org", "flat", "alice-drive.example.org"),
])
def test_app_hosts(domain, mode, host):
    assert app_host(domain, "drive", mode) == host


def test_a_new_fleet_gets_every_setting_the_options_give(tmp_path):
    root, fleet = _written(tmp_path, _new(tmp_path, subdomains="flat", zone="example.org"))
    assert (fleet.zone, fleet.subdomains.value, fleet.dns.provider.value) == ("example.org", "flat", "rfc2136")
    assert fleet.dns.update.server == "192.0.2.53" and fleet.acme.email == "me@example.org"
    assert fleet.acme.directory == "https://acme-v02.api.letsencrypt.org/directory"
    [name] = fleet.servers
    server = fleet.servers[name]
    assert (name, server.address, server.ipv4) == ("server-192-0-2-10", "192.0.2.10", "192.0.2.10")
    [instance] = fleet.instances
    assert (instance.domain, instance.server, instance.email) == ("cozy.example.org", name, "me@example.org")
    assert (root / ".gitignore").read_text() == ".cozyops/\n"


def test_writing_the_same_edits_again_changes_nothing(tmp_path):
    root, fleet = _written(tmp_path, _new(tmp_path))
    before = {path.name: path.read_bytes() for path in root.rglob("*.yml")}
    again = edits(_new(tmp_path), fleet)
    assert again.empty and again.server == "server-192-0-2-10"
    assert fleetdir.write(root, again) == []
    assert {path.name: path.read_bytes() for path in root.rglob("*.yml")} == before


def test_an_existing_fleet_keeps_its_comments_and_gets_the_host_and_instance(tmp_path):
    root, _ = _written(tmp_path, _new(tmp_path))
    hosts = root / "hosts.yml"
    hosts.write_text("# my servers\n" + hosts.read_text().replace("server-192-0-2-10:", "server-192-0-2-10:  # first"))
    fleet = inventory.load(root)
    second = edits(_new(tmp_path, domain="bob.example.org", host="192.0.2.11", dns=None, dns_server=None,
                        tsig_key_file=None), fleet)
    assert second.settings == {} and second.server == "server-192-0-2-11"
    assert fleetdir.write(root, second) == ["hosts.yml", "instances.yml"]
    text = hosts.read_text()
    assert "# my servers" in text and "# first" in text
    fleet = inventory.load(root)
    assert sorted(fleet.servers) == ["server-192-0-2-10", "server-192-0-2-11"]
    assert [i.domain for i in fleet.instances] == ["cozy.example.org", "bob.example.org"]


def test_a_host_of_the_inventory_is_used_by_name_or_by_address(tmp_path):
    root, fleet = _written(tmp_path, _new(tmp_path))
    for host in ("server-192-0-2-10", "192.0.2.10"):
        found = edits(Options("bob.example.org", "b@example.org", host=host), fleet)
        assert found.server == "server-192-0-2-10" and found.server_vars is None


@pytest.mark.parametrize(("change", "message"), [
    ({"zone": "example.net"}, "--zone: example.net differs from the fleet's cozy_zone (example.org)"),
    ({"subdomains": "flat"}, "--subdomains: flat differs from the fleet's cozy_subdomains (nested)"),
    ({"dns": "manual", "dns_server": None, "tsig_key_file": None},
     "--dns: manual differs from the fleet's cozy_dns.provider (rfc2136)"),
    ({"dns_server": "192.0.2.99"}, "--dns-server: 192.0.2.99 differs from the fleet's cozy_dns.server (192.0.2.53)"),
    ({"acme_directory": "letsencrypt-staging"}, "--acme-directory: letsencrypt-staging differs from the fleet's"),
    ({"domain": "cozy.example.net"}, "cozy.example.net: is not in the zone example.org"),
])
def test_an_option_the_fleet_contradicts_is_refused_with_both_values(tmp_path, change, message):
    _, fleet = _written(tmp_path, _new(tmp_path))
    with pytest.raises(ConfigError) as caught:
        edits(_new(tmp_path, **change), fleet)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(("change", "message"), [
    ({"host": None}, "install: name the server: --host HOST (over SSH) or --local"),
    ({"local": True}, "install: name the server"),
    ({"dns": None, "dns_server": None, "tsig_key_file": None}, "--dns: missing"),
    ({"dns_server": None}, "--dns rfc2136: needs --dns-server and --tsig-key-file"),
    ({"dns": "manual", "dns_server": None, "tsig_key_file": None}, "--dns manual: leaves no way to answer"),
    ({"email": "nobody"}, "--email: 'nobody' is not an e-mail address"),
    ({"domain": "not a domain"}, "DOMAIN: 'not a domain' is not a domain name"),
    ({"subdomains": "deep"}, "--subdomains: must be nested or flat"),
    ({"host": "cozy.example.org"}, "--host: cozy.example.org is a name"),
    ({"subdomains": "flat", "domain": "example.org"}, "example.org: in flat mode an instance cannot be the zone"),
])
def test_bad_options_are_one_line_naming_the_option(tmp_path, change, message):
    with pytest.raises(ConfigError) as caught:
        edits(_new(tmp_path, **change), None)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_local_uses_this_machine_with_ansible_local_connection(tmp_path):
    root = tmp_path / "fleet"
    found = edits(_new(tmp_path, host=None, local=True), None, hostname="box", detected_ipv4="192.0.2.7")
    fleetdir.write(root, found)
    server = inventory.load(root).servers["box"]
    assert (server.connection.value, server.ipv4) == ("local", "192.0.2.7")
    with pytest.raises(ConfigError, match="--local: cannot tell this machine's public IPv4"):
        edits(_new(tmp_path, host=None, local=True), None, hostname="box")


def test_an_instance_already_on_another_server_is_refused(tmp_path):
    root, fleet = _written(tmp_path, _new(tmp_path))
    with pytest.raises(ConfigError, match="already an instance of the fleet, on server-192-0-2-10"):
        edits(_new(tmp_path, host="192.0.2.11"), fleet)


def test_the_crontab_line_goes_in_once_after_its_marker(tmp_path, monkeypatch):
    scratch = tmp_path / "crontab"
    scratch.write_text("MAILTO=me\n0 0 * * * true\n")
    monkeypatch.setenv(renewal.CRONTAB_ENV, str(scratch))
    first = renewal.schedule_crontab(tmp_path / "fleet", "/opt/py")
    second = renewal.schedule_crontab(tmp_path / "fleet", "/opt/py")
    lines = scratch.read_text().splitlines()
    assert first.changed and not second.changed and first.how == "crontab"
    assert lines[:2] == ["MAILTO=me", "0 0 * * * true"] and lines[2] == renewal.marker(tmp_path / "fleet")
    assert lines[3].endswith(f"/opt/py -m cozyops cert renew --deploy --fleet {tmp_path / 'fleet'}")
    assert len(lines) == 4 and stat.S_IMODE(os.stat(scratch).st_mode) == 0o600
    minute, hour, *rest = lines[3].split()
    assert 0 <= int(minute) < 60 and 1 <= int(hour) <= 5 and rest[:3] == ["*", "*", "*"]


def test_a_changed_command_replaces_the_old_line():
    first = renewal.crontab_with("", Path("/f"), "/old/python")
    second = renewal.crontab_with(first, Path("/f"), "/new/python")
    assert "/old/python" not in second and second.count("/new/python") == 1


def test_systemd_units_run_the_renewal_daily():
    units = renewal.systemd_units(Path("/srv/fleet"), "/usr/bin/python3")
    service = units["cozyops-renew.service"]
    assert "ExecStart=/usr/bin/python3 -m cozyops cert renew --deploy --fleet /srv/fleet" in service
    assert "OnCalendar=daily" in units["cozyops-renew.timer"] and "Persistent=true" in units["cozyops-renew.timer"]


def test_the_register_token_is_the_hex_of_the_api_base64():
    assert register_token_hex({"register_token": "ASNFZ4mrze8BI0VniavN7w=="}) == "0123456789abcdef0123456789abcdef"
    assert register_token_hex({}) is None


def test_a_killed_run_goes_on_after_its_last_step_and_a_second_run_has_nothing_to_do(tmp_path):
    """The journal's side of resuming: the steps are stand-ins that count their calls."""
    root, _ = _written(tmp_path, _new(tmp_path))
    fleet = inventory.load(root)
    calls: list[str] = []

    class Flaky(Installer):
        fail_at: str | None = None

    def make(fail_at: str | None) -> Installer:
        installer = Flaky(root, edits(_new(tmp_path), fleet), lambda: inventory.load(root))
        for step in ("_provision", "_dns", "_certificate", "_deploy", "_create_instance", "_renewal", "_check"):
            def work(step=step):
                calls.append(step)
                if step == fail_at:
                    raise ConfigError(step, "stops here")
                return (step not in seen), step, {}
            setattr(installer, step, work)
        installer._onboarding = lambda: None
        return installer

    seen: set[str] = set()
    with pytest.raises(ConfigError):
        make("_certificate").run()
    assert calls == ["_provision", "_dns", "_certificate"]
    seen.update(calls)
    calls.clear()
    resumed = make(None).run()
    assert calls == ["_certificate", "_deploy", "_create_instance", "_renewal", "_check"] and resumed.resumed
    assert [status for _, status, _ in resumed.steps[:3]] == ["skipped", "skipped", "skipped"]
    seen.update(calls)
    calls.clear()
    again = make(None).run()
    assert calls == ["_dns", "_certificate", "_deploy", "_create_instance", "_renewal", "_check"]
    assert again.nothing_to_do and not again.resumed
    assert dict((step, status) for step, status, _ in again.steps)["provision"] == "unchanged"


@pytest.mark.parametrize("dns", ["manual", "rfc2136"])
def test_http_01_writes_the_challenge_and_needs_no_delegation(tmp_path, dns):
    extra = {"dns": "manual", "dns_server": None, "tsig_key_file": None} if dns == "manual" else {}
    root, fleet = _written(tmp_path, _new(tmp_path, http_01=True, **extra))
    assert fleet.acme is not None and fleet.acme.challenge == "http-01"
    assert fleet.dns.provider.value == dns and fleet.dns.acme_challenge is None
    assert "challenge: http-01" in (root / "group_vars" / "all.yml").read_text()
    # a second install into that fleet: --http-01 agrees, and manual DNS still needs no delegation
    edits(_new(tmp_path, domain="bob.example.org", **extra), fleet)
    edits(_new(tmp_path, domain="carol.example.org", http_01=True, **extra), fleet)


def test_http_01_into_a_dns_01_fleet_is_refused_with_both_values(tmp_path):
    _, fleet = _written(tmp_path, _new(tmp_path))
    with pytest.raises(ConfigError) as caught:
        edits(_new(tmp_path, domain="bob.example.org", http_01=True), fleet)
    assert str(caught.value).startswith("--http-01: http-01 differs from the fleet's cozy_acme.challenge (dns-01)")


def test_an_interface_address_is_read_from_the_kernel():
    # --local's fallback when the machine has no default route (a lab host): the one address on
    # its interfaces that is not loopback. Here: loopback's own address, and none for a name no
    # interface has.
    import socket

    from cozyops.cli.install import _detected_ipv4, _interface_ipv4

    loopback = next(entry for entry in socket.if_nameindex() if entry[1] == "lo")
    assert _interface_ipv4(loopback) == "127.0.0.1"
    assert _interface_ipv4((0, "cozyops-none0")) is None
    detected = _detected_ipv4()
    assert detected is None or not detected.startswith("127.")
