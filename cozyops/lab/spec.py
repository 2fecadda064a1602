"""What a lab is, derived from its id and zones: pure, no I/O.

The subnet, the namespace names and every address come from the lab's id, so that two labs (a
user's and the test suite's) run side by side without sharing anything.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass

from cozyops.errors import ConfigError

DEFAULT_ID = "lab"
DEFAULT_ZONE = "cozy.test"
DEFAULT_ZONE2 = "cozy2.test"
DEFAULT_ZONE3 = "cozy3.test"

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,23}$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

# Offsets inside the lab's /24.
GATEWAY, BIND, KNOT, POWERDNS, FIRST_HOST = 1, 2, 3, 4, 11
MAX_HOSTS = 50
DNS_PORT = 53
SSH_PORT = 22
APT_PROXY_PORT = 3142
ACME_PORT = 14000
ACME_MANAGEMENT_PORT = 15000
POWERDNS_API_PORT = 8081


def check_id(lab_id: str) -> str:
    if not _ID.match(lab_id):
        raise ConfigError(
            f"lab id {lab_id!r}",
            "must be 1-24 characters of a-z, 0-9 and '-', starting with a letter or digit",
        )
    return lab_id


def check_zone(zone: str) -> str:
    name = zone.lower().rstrip(".")
    labels = name.split(".")
    if len(labels) < 2 or len(name) > 200 or not all(_LABEL.match(label) for label in labels):
        raise ConfigError(f"zone {zone!r}", "is not a DNS name of at least two labels")
    return name


def subnet_for(lab_id: str) -> ipaddress.IPv4Network:
    """A /24 in 10.100.0.0-10.227.255.0 chosen by the id's hash (stable across runs)."""
    digest = hashlib.sha256(lab_id.encode()).digest()
    return ipaddress.IPv4Network(f"10.{100 + digest[0] % 128}.{digest[1]}.0/24")


@dataclass(frozen=True)
class HostSpec:
    """One of the lab's hosts: ``h1``, ``h2``... each in a network namespace of its own."""

    name: str
    index: int
    address: str
    fqdn: str
    netns: str


@dataclass(frozen=True)
class LabSpec:
    id: str = DEFAULT_ID
    zone: str = DEFAULT_ZONE
    zone2: str = DEFAULT_ZONE2
    zone3: str = DEFAULT_ZONE3  # PowerDNS's (written through its HTTP API)

    def __post_init__(self) -> None:
        check_id(self.id)
        object.__setattr__(self, "zone", check_zone(self.zone))
        object.__setattr__(self, "zone2", check_zone(self.zone2))
        object.__setattr__(self, "zone3", check_zone(self.zone3))
        if len(set(self.zones)) < 3:
            raise ConfigError(f"zones {', '.join(self.zones)}", "the lab's three zones must differ")

    @property
    def zones(self) -> tuple[str, str, str]:
        return (self.zone, self.zone2, self.zone3)

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return subnet_for(self.id)

    def address(self, offset: int) -> str:
        return str(self.subnet.network_address + offset)

    @property
    def gateway(self) -> str:
        return self.address(GATEWAY)

    @property
    def bind_address(self) -> str:
        return self.address(BIND)

    @property
    def knot_address(self) -> str:
        return self.address(KNOT)

    @property
    def powerdns_address(self) -> str:
        return self.address(POWERDNS)

    @property
    def powerdns_api(self) -> str:
        """PowerDNS's HTTP API (its webserver), inside the lab's namespace."""
        return f"http://{self.powerdns_address}:{POWERDNS_API_PORT}"

    @property
    def netns(self) -> str:
        """The lab's own network namespace: the controller side, DNS and ACME live there."""
        return f"cozyops-{self.id}-lab"

    @property
    def key_name(self) -> str:
        return f"cozyops-{self.id}"

    @property
    def acme_directory(self) -> str:
        return f"https://{self.gateway}:{ACME_PORT}/dir"

    @property
    def acme_management(self) -> str:
        return f"https://{self.gateway}:{ACME_MANAGEMENT_PORT}"

    @property
    def apt_proxy(self) -> str:
        """The hosts' only way out: a proxy to the machine's package mirrors, on the gateway."""
        return f"http://{self.gateway}:{APT_PROXY_PORT}/"

    def host(self, index: int) -> HostSpec:
        if not 1 <= index <= MAX_HOSTS:
            raise ConfigError(f"host number {index}", f"must be between 1 and {MAX_HOSTS}")
        name = f"h{index}"
        return HostSpec(name, index, self.address(FIRST_HOST + index - 1), f"{name}.{self.zone}",
                        f"cozyops-{self.id}-{name}")

    def hosts(self, count: int) -> list[HostSpec]:
        if not 0 <= count <= MAX_HOSTS:
            raise ConfigError(f"--hosts {count}", f"must be between 0 and {MAX_HOSTS}")
        return [self.host(index) for index in range(1, count + 1)]

    def primary_of(self, zone: str) -> str:
        """BIND is the primary of the first zone, Knot of the second, PowerDNS of the third."""
        return {self.zone: "bind", self.zone3: "powerdns"}.get(zone, "knot")

    def nameservers(self, zone: str) -> list[tuple[str, str]]:
        """(name, address) of the zone's NS records, its primary first (it is the SOA MNAME).

        PowerDNS serves only the third zone; BIND and Knot serve all three."""
        bind, knot = self.bind_address, self.knot_address
        if zone == self.zone3:
            addresses = [self.powerdns_address, bind, knot]
        else:
            addresses = [bind, knot] if self.primary_of(zone) == "bind" else [knot, bind]
        return [(f"ns{number}.{zone}", address) for number, address in enumerate(addresses, 1)]
