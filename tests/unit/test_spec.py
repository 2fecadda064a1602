import ipaddress

import pytest

from cozyops.errors import ConfigError
from cozyops.lab.spec import LabSpec, check_id, check_zone, subnet_for


@pytest.mark.parametrize(
    "lab_id, valid",
    [
        ("lab", True),
        ("t1", True),
        ("ci-42", True),
        ("0", True),
        ("a" * 24, True),
        ("a" * 25, False),  # namespace names stay short and readable
        ("", False),
        ("-lab", False),
        ("Lab", False),
        ("lab_1", False),
        ("lab/../x", False),
        ("la b", False),
    ],
)
def test_lab_ids(lab_id, valid):
    if valid:
        assert check_id(lab_id) == lab_id
    else:
        with pytest.raises(ConfigError, match="lab id"):
            check_id(lab_id)


@pytest.mark.parametrize(
    "zone, expected",
    [
        ("cozy.test", "cozy.test"),
        ("Cozy.Test.", "cozy.test"),
        ("a.b.example.org", "a.b.example.org"),
        ("localhost", None),
        ("-a.test", None),
        ("a..test", None),
        ("a_b.test", None),
        ("x" * 64 + ".test", None),
    ],
)
def test_zones(zone, expected):
    if expected:
        assert check_zone(zone) == expected
    else:
        with pytest.raises(ConfigError, match="zone"):
            check_zone(zone)


def test_subnet_comes_from_the_id_and_is_stable():
    assert subnet_for("lab") == subnet_for("lab")
    subnets = {subnet_for(f"t{n}") for n in range(200)}
    assert len(subnets) > 190  # distinct ids nearly always get distinct subnets
    for subnet in subnets:
        assert subnet.prefixlen == 24
        assert subnet.subnet_of(ipaddress.IPv4Network("10.0.0.0/8"))


def test_addresses_and_names():
    spec = LabSpec("lab")
    net = spec.subnet
    assert [ipaddress.IPv4Address(a) in net for a in (spec.gateway, spec.bind_address, spec.knot_address)] == [True] * 3
    assert len({spec.gateway, spec.bind_address, spec.knot_address}) == 3
    assert spec.netns == "cozyops-lab-lab"
    assert spec.acme_directory == f"https://{spec.gateway}:14000/dir"
    assert spec.zones == ("cozy.test", "cozy2.test", "cozy3.test")
    assert spec.powerdns_api == f"http://{spec.powerdns_address}:8081"
    assert len({spec.gateway, spec.bind_address, spec.knot_address, spec.powerdns_address}) == 4


def test_each_zone_names_its_primary_first():
    spec = LabSpec("x", "one.test", "two.test")
    assert spec.primary_of("one.test") == "bind"
    assert spec.primary_of("two.test") == "knot"
    assert spec.nameservers("one.test") == [("ns1.one.test", spec.bind_address), ("ns2.one.test", spec.knot_address)]
    assert spec.nameservers("two.test") == [("ns1.two.test", spec.knot_address), ("ns2.two.test", spec.bind_address)]
    assert spec.primary_of("cozy3.test") == "powerdns"
    assert spec.nameservers("cozy3.test") == [
        ("ns1.cozy3.test", spec.powerdns_address), ("ns2.cozy3.test", spec.bind_address),
        ("ns3.cozy3.test", spec.knot_address),
    ]


def test_two_zones_must_differ():
    with pytest.raises(ConfigError, match="must differ"):
        LabSpec("x", "same.test", "Same.test.")
