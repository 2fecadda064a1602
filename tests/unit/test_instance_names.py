"""instances.yml: names that would take over another instance's hosts, and names whose derived
names (wildcard, mark, challenge, app hosts) are not valid DNS names, are refused at load, in one
line naming the file and the instances (issue 12, item 5)."""

import pytest

from cozyops import inventory
from cozyops.errors import ConfigError
from tests.unit.test_inventory import GROUP_VARS, make

ZONE = "example.org"


def load(tmp_path, instances, mode="nested"):
    group_vars = {**GROUP_VARS, "cozy_subdomains": mode}
    items = [{"domain": domain, "server": "h1", "apps": list(apps)} for domain, apps in instances]
    return inventory.load(make(tmp_path / "fleet", group_vars=group_vars, instances={"instances": items}))


def refused(tmp_path, instances, mode="nested") -> str:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, instances, mode)
    message = str(raised.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("instances", "expected"), [
    ([("alice.example.org", ["drive"]), ("drive.alice.example.org", [])],
     "instances.yml: instances[1].domain: drive.alice.example.org is below the instance alice.example.org "
     "(instances[0]): in nested mode it would take over alice.example.org's app host drive.alice.example.org"),
    ([("drive.alice.example.org", []), ("alice.example.org", ["drive"])],  # the order does not matter
     "instances.yml: instances[0].domain: drive.alice.example.org is below the instance alice.example.org "
     "(instances[1])"),
    ([("alice.example.org", ["drive"]), ("x.team.alice.example.org", [])],  # deeper: shadows the wildcard
     "instances.yml: instances[1].domain: x.team.alice.example.org is below the instance alice.example.org "
     "(instances[0])"),
    ([("example.org", ["drive"]), ("bob.example.org", [])],  # an instance at the apex: nothing below it
     "instances.yml: instances[1].domain: bob.example.org is below the instance example.org (instances[0])"),
])
def test_nested_instance_below_another_is_refused(tmp_path, instances, expected):
    assert refused(tmp_path, instances).startswith(expected)


def test_nested_siblings_and_flat_children_are_fine(tmp_path):
    assert len(load(tmp_path / "a", [("alice.example.org", ["drive"]), ("bob.example.org", []),
                                     ("alice-drive.example.org", [])]).instances) == 3
    # flat mode: drive.alice's apps are drive-<app>.alice, alice's are alice-<app>: no collision
    assert len(load(tmp_path / "b", [("alice.example.org", ["drive"]), ("drive.alice.example.org", ["notes"])],
                    "flat").instances) == 2


def test_flat_instance_on_another_instances_app_host_names_both(tmp_path):
    message = refused(tmp_path, [("alice-drive.example.org", []), ("alice.example.org", ["drive", "notes"])], "flat")
    assert message.startswith(
        "instances.yml: instances[0].domain: alice-drive.example.org is the app host of drive of the instance "
        "alice.example.org (instances[1]): in flat mode it would take it over")
    other = refused(tmp_path / "x", [("alice.example.org", ["notes"]), ("alice-drive.example.org", [])], "flat")
    assert other.startswith("instances.yml: instances[1].domain: alice-drive.example.org: no '-' in the first label")


def domain_of_length(length: int, zone: str = ZONE) -> str:
    """A valid domain of exactly ``length`` characters in ``zone`` (labels of at most 63)."""
    room = length - len(zone) - 1
    labels = []
    while room > 0:
        size = min(63, room - 1 if room > 63 else room)
        if room - size == 1:  # never leave room for a lone dot
            size -= 1
        labels.append("a" * size)
        room -= size + 1
    domain = ".".join(labels + [zone])
    assert len(domain) == length, (len(domain), length)
    return domain


@pytest.mark.parametrize("mode", ["nested", "flat"])
@pytest.mark.parametrize(("length", "derived"), [
    (253, "*."), (245, "_cozyops."), (238, "_acme-challenge."),
])
def test_a_domain_whose_derived_names_are_too_long_is_refused(tmp_path, mode, length, derived):
    domain = domain_of_length(length)
    message = refused(tmp_path, [(domain, [])], mode)
    assert message.startswith(f"instances.yml: instances[0].domain: {domain}: the name {derived}{domain} derived "
                              f"from it is {length + len(derived)} characters, more than 253")


@pytest.mark.parametrize("mode", ["nested", "flat"])
def test_the_longest_domain_every_derived_name_fits_loads(tmp_path, mode):
    domain = domain_of_length(237)  # _acme-challenge.<domain>: 253
    assert load(tmp_path, [(domain, [])], mode).instances[0].domain == domain


def test_app_hosts_are_checked_too(tmp_path):
    domain = domain_of_length(235)  # its wildcard, mark and challenge names fit
    app = "a" * 20
    nested = refused(tmp_path / "n", [(domain, ["drive", app])])
    assert nested.startswith(f"instances.yml: instances[0].domain: {domain}: the name {app}.{domain} derived from "
                             "it is 256 characters, more than 253")
    flat_domain = "a" * 60 + "." + ZONE
    flat = refused(tmp_path / "f", [(flat_domain, ["photos"])], "flat")
    assert flat.startswith(f"instances.yml: instances[0].domain: {flat_domain}: the name {'a' * 60}-photos.{ZONE} "
                           "derived from it has a label of 67 characters, more than 63")


def test_dns_plan_refuses_a_253_character_domain_in_one_line(tmp_path):
    import subprocess
    import sys

    domain = domain_of_length(253)
    fleet = make(tmp_path / "fleet", instances={"instances": [
        {"domain": "ok.example.org", "server": "h1"}, {"domain": domain, "server": "h1"}]})
    result = subprocess.run([sys.executable, "-m", "cozyops", "dns", "plan", "--fleet", str(fleet)],
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.strip() == (f"cozyops: error: instances.yml: instances[1].domain: {domain}: the name "
                                     f"*.{domain} derived from it is 255 characters, more than 253")
