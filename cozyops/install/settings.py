"""The options of `cozyops install` against the fleet as it stands: the edits it needs. Pure.

Every setting of a fleet directory can be given as an option or taken from an existing fleet
(``--fleet``). An option that says something else than the fleet already says is refused with
one line naming both (install adds to a fleet, it never rewrites what the operator wrote); an
option the fleet does not have yet is added; what neither gives takes its default.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from cozyops.errors import ConfigError
from cozyops.model import DEFAULT_APPS, Connection, DnsProviderKind, Fleet, SubdomainMode

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})+$")
_SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
DEFAULT_DIRECTORY = "letsencrypt"
TSIG_KEY = "secrets/tsig.key"


@dataclass(frozen=True)
class Options:
    """What the command line says (None: not given)."""

    domain: str
    email: str
    host: str | None = None  # an address, or a host of the fleet's inventory
    local: bool = False  # the server is this machine (Ansible's local connection)
    subdomains: str | None = None
    zone: str | None = None
    dns: str | None = None  # rfc2136 | manual
    dns_server: str | None = None
    tsig_key_file: str | None = None  # as given (an absolute path once resolved by the caller)
    nameservers: tuple[str, ...] = ()
    http_01: bool = False
    acme_directory: str | None = None
    ca_bundle: str | None = None
    public_ipv4: str | None = None
    ssh_user: str | None = None
    ssh_key: str | None = None
    server_name: str | None = None
    apps: tuple[str, ...] = ()
    locale: str | None = None


@dataclass
class Edits:
    """What the fleet directory needs; empty parts are already there."""

    zone: str
    subdomains: str
    server: str  # the inventory name of the install's server
    instance_domain: str
    settings: dict[str, Any] = field(default_factory=dict)  # group_vars/all.yml keys to add
    server_vars: dict[str, Any] | None = None  # a new host of hosts.yml (group cozy_servers)
    instance: dict[str, Any] | None = None  # a new entry of instances.yml
    local: bool = False

    @property
    def empty(self) -> bool:
        return not self.settings and self.server_vars is None and self.instance is None

    def to_json(self) -> dict:
        return {"zone": self.zone, "subdomains": self.subdomains, "server": self.server,
                "instance": self.instance_domain, "settings": sorted(self.settings),
                "new_server": self.server_vars is not None, "new_instance": self.instance is not None}


def domain_name(value: str, option: str) -> str:
    name = value.strip().lower().rstrip(".")
    if not name.isascii():
        raise ConfigError(option, f"{value!r} is not ASCII", "write internationalized names in their xn-- form")
    if len(name) > 253 or not _DOMAIN.match(name):
        raise ConfigError(option, f"{value!r} is not a domain name (like cozy.example.org)")
    return name


def default_zone(domain: str) -> str:
    """The zone a self-hoster's instance lives in when nothing says: its registered domain
    (the public suffix list: cozy.example.org -> example.org, alice.example.co.uk -> example.co.uk)."""
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList().privatesuffix(domain) or domain.split(".", 1)[1]


def _conflict(option: str, given: object, where: str, have: object) -> ConfigError:
    return ConfigError(option, f"{given} differs from the fleet's {where} ({have})",
                       "the fleet directory decides: drop the option, or edit the fleet")


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _ipv4(value: str, option: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ConfigError(option, f"{value!r} is not an IPv4 address") from None


def _zone(options: Options, fleet: Fleet | None, domain: str) -> str:
    zone = domain_name(options.zone, "--zone") if options.zone else None
    if fleet is not None:
        if zone and zone != fleet.zone:
            raise _conflict("--zone", zone, "cozy_zone", fleet.zone)
        zone = fleet.zone
    zone = zone or default_zone(domain)
    if domain != zone and not domain.endswith("." + zone):
        raise ConfigError(options.domain, f"is not in the zone {zone}",
                          "an instance lives in the fleet's zone (cozy_zone, --zone)")
    return zone


def _subdomains(options: Options, fleet: Fleet | None) -> str:
    mode = options.subdomains
    if mode is not None and mode not in ("nested", "flat"):
        raise ConfigError("--subdomains", f"must be nested or flat, not {mode!r}")
    if fleet is not None:
        if mode and mode != fleet.subdomains.value:
            raise _conflict("--subdomains", mode, "cozy_subdomains", fleet.subdomains.value)
        return fleet.subdomains.value
    return mode or SubdomainMode.NESTED.value


def _dns_settings(options: Options, fleet: Fleet | None) -> dict[str, Any]:
    """cozy_dns for a new fleet (empty: the fleet has it)."""
    kind = options.dns
    if kind is not None and kind not in ("rfc2136", "manual"):
        raise ConfigError("--dns", f"must be rfc2136 or manual, not {kind!r}")
    if kind == "rfc2136" and not (options.dns_server and options.tsig_key_file):
        raise ConfigError("--dns rfc2136", "needs --dns-server and --tsig-key-file")
    if kind != "rfc2136" and (options.dns_server or options.tsig_key_file):
        raise ConfigError("--dns-server/--tsig-key-file", "go with --dns rfc2136")
    if fleet is not None:
        have = fleet.dns.provider.value
        if kind and kind != have:
            raise _conflict("--dns", kind, "cozy_dns.provider", have)
        if kind == "rfc2136":
            update = fleet.dns.update
            server = getattr(update, "server", None)
            if options.dns_server != server:
                raise _conflict("--dns-server", options.dns_server, "cozy_dns.server", server)
        return {}
    if kind is None:
        kind = "manual" if options.http_01 else None
    if kind is None:
        raise ConfigError("--dns", "missing: how the zone's records are written",
                          "--dns rfc2136 --dns-server S --tsig-key-file F (RFC 2136 updates), or --dns manual "
                          "(you create the records at your DNS host; cozyops waits for them)")
    body: dict[str, Any] = {"provider": kind}
    if kind == "rfc2136":
        body["server"] = options.dns_server
        body["tsig_key_file"] = options.tsig_key_file
    if options.nameservers:
        body["nameservers"] = list(options.nameservers)
    return body


def _acme_settings(options: Options, fleet: Fleet | None) -> dict[str, Any]:
    if fleet is not None and fleet.acme is not None:
        if options.acme_directory and options.acme_directory not in (fleet.acme.directory,):
            from cozyops.model import ACME_DIRECTORIES

            if ACME_DIRECTORIES.get(options.acme_directory) != fleet.acme.directory:
                raise _conflict("--acme-directory", options.acme_directory, "cozy_acme.directory",
                                fleet.acme.directory)
        return {}
    body: dict[str, Any] = {"directory": options.acme_directory or DEFAULT_DIRECTORY, "email": options.email}
    if options.ca_bundle:
        body["ca_bundle"] = options.ca_bundle
    if options.http_01:
        body["challenge"] = "http-01"
    return body


def _challenges(options: Options, fleet: Fleet | None, dns_kind: str) -> None:
    """Wildcard certificates need DNS-01 challenges cozyops can write; HTTP-01 (through the
    provisioned nginx, one certificate per instance naming its app hosts) needs nothing in DNS
    beyond the instance's own records."""
    have = fleet.acme.challenge if fleet is not None and fleet.acme is not None else None
    if options.http_01 and have not in (None, "http-01"):
        raise _conflict("--http-01", "http-01", "cozy_acme.challenge", have)
    if options.http_01 or have == "http-01":
        return
    delegated = fleet is not None and fleet.dns.acme_challenge is not None
    if dns_kind == "manual" and not delegated:
        raise ConfigError("--dns manual", "leaves no way to answer the wildcard certificates' DNS-01 challenges",
                          "delegate _acme-challenge to a zone cozyops can update (cozy_dns.acme_challenge in "
                          "the fleet's group_vars/all.yml, docs/install.md), or use --dns rfc2136")


def _server(options: Options, fleet: Fleet | None, hostname: str, detected_ipv4: str | None
            ) -> tuple[str, dict[str, Any] | None]:
    """The install's server: (inventory name, the new host's variables or None when it exists)."""
    if options.local == (options.host is not None):
        raise ConfigError("install", "name the server: --host HOST (over SSH) or --local (this machine)")
    servers = fleet.servers if fleet is not None else {}
    if options.local:
        for name, server in servers.items():
            if server.connection is Connection.LOCAL:
                return name, None
        name = options.server_name or hostname
        ipv4 = _ipv4(options.public_ipv4, "--public-ipv4") if options.public_ipv4 else detected_ipv4
        if not ipv4:
            raise ConfigError("--local", "cannot tell this machine's public IPv4 address", "pass --public-ipv4")
        return _checked_name(name, servers), {"ansible_connection": "local", "ansible_host": "127.0.0.1",
                                              "cozy_public_ipv4": ipv4}
    host = options.host or ""
    if host in servers:
        return host, None
    for name, server in servers.items():
        if server.address == host and server.connection is Connection.SSH:
            return name, None
    name = options.server_name or (f"server-{host.replace('.', '-').replace(':', '-')}" if _is_ip(host) else
                                   host.split(".")[0])
    ipv4 = options.public_ipv4 or (host if _is_ip(host) and ":" not in host else None)
    if not ipv4:
        raise ConfigError("--host", f"{host} is a name: cozyops needs its public IPv4 address for the DNS records",
                          "pass --public-ipv4")
    variables: dict[str, Any] = {"ansible_host": host, "cozy_public_ipv4": _ipv4(ipv4, "--public-ipv4")}
    if options.ssh_user:
        variables["ansible_user"] = options.ssh_user
    if options.ssh_key:
        variables["ansible_ssh_private_key_file"] = options.ssh_key
    return _checked_name(name, servers), variables


def _checked_name(name: str, servers: dict) -> str:
    if not _SERVER_NAME.match(name):
        raise ConfigError("--server-name", f"{name!r} is not a usable inventory name (letters, digits, . _ -)")
    if name in servers:
        raise ConfigError("--server-name", f"{name} is already a server of the fleet, at another address",
                          "pick another name with --server-name")
    return name


def _instance(options: Options, fleet: Fleet | None, domain: str, server: str) -> dict[str, Any] | None:
    for instance in fleet.instances if fleet is not None else ():
        if instance.domain == domain:
            if instance.server != server:
                raise ConfigError(domain, f"is already an instance of the fleet, on {instance.server}, not {server}")
            return None
    entry: dict[str, Any] = {"domain": domain, "server": server}
    entry["apps"] = list(options.apps or DEFAULT_APPS)
    entry["email"] = options.email
    if options.locale:
        entry["locale"] = options.locale
    return entry


def edits(options: Options, fleet: Fleet | None, hostname: str = "cozy", detected_ipv4: str | None = None) -> Edits:
    """The fleet edits ``options`` need, or a ``ConfigError`` naming the option at fault.
    ``fleet``: the fleet directory as loaded (None when it has no fleet yet)."""
    domain = domain_name(options.domain, "DOMAIN")
    if "@" not in options.email or options.email.startswith("@") or options.email.endswith("@"):
        raise ConfigError("--email", f"{options.email!r} is not an e-mail address")
    zone = _zone(options, fleet, domain)
    mode = _subdomains(options, fleet)
    if mode == "flat" and domain == zone:
        raise ConfigError(options.domain, "in flat mode an instance cannot be the zone itself",
                          "its apps would live outside the zone (alice-drive.ZONE): pick a name below it")
    settings: dict[str, Any] = {}
    if fleet is None:
        settings["cozy_zone"] = zone
        settings["cozy_subdomains"] = mode
    dns = _dns_settings(options, fleet)
    if dns:
        settings["cozy_dns"] = dns
    _challenges(options, fleet, dns.get("provider") if dns else (fleet.dns.provider.value if fleet else "manual"))
    acme = _acme_settings(options, fleet)
    if acme:
        settings["cozy_acme"] = acme
    server, server_vars = _server(options, fleet, hostname, detected_ipv4)
    instance = _instance(options, fleet, domain, server)
    return Edits(zone, mode, server, domain, settings, server_vars, instance, options.local)


def app_host(domain: str, app: str, mode: str) -> str:
    """drive.alice.example.org (nested) or alice-drive.example.org (flat)."""
    if mode == SubdomainMode.FLAT.value:
        first, rest = domain.split(".", 1)
        return f"{first}-{app}.{rest}"
    return f"{app}.{domain}"


__all__ = ["DnsProviderKind", "Edits", "Options", "app_host", "default_zone", "edits"]
