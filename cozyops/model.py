"""The fleet as cozyops sees it: frozen dataclasses, no I/O.

``inventory.py`` builds these from a fleet directory; everything downstream (desired DNS records,
plans) is a pure function of them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

# The apps cozy-stack installs on a new instance unless told otherwise (what cozy-coclyco and the
# self-hosting guide install), used when an instance lists none.
DEFAULT_APPS = ("home", "drive", "photos", "settings", "store")

DEFAULT_TTL = 300
DEFAULT_BATCH_SIZE = 1000
DEFAULT_TIMEOUT = 10.0
DEFAULT_PROPAGATION_TIMEOUT = 120.0
# The safety rule: a plan whose deletions plus updates exceed BOTH numbers is refused without --force.
DEFAULT_UNSAFE_CHANGES = 10
DEFAULT_UNSAFE_PERCENT = 30.0

# Well-known ACME directories and the CAA identity of their CA.
ACME_DIRECTORIES = {
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}
CAA_IDENTITIES = {
    "letsencrypt": ("letsencrypt.org",),
    "letsencrypt-staging": ("letsencrypt.org",),
}


class SubdomainMode(enum.StrEnum):
    NESTED = "nested"  # drive.alice.example.org
    FLAT = "flat"  # alice-drive.example.org


class DnsProviderKind(enum.StrEnum):
    RFC2136 = "rfc2136"
    MANUAL = "manual"
    POWERDNS = "powerdns"  # PowerDNS's HTTP API
    LEXICON = "lexicon"  # a registrar's API through dns-lexicon


class Connection(enum.StrEnum):
    SSH = "ssh"  # paramiko (Ansible's ssh and paramiko connections both land here)
    LOCAL = "local"  # cozyops runs on the server itself


DEBIAN_PASSPHRASE_FILE = "/etc/cozy/.cozy-admin-passphrase"  # Debian's clear copy of the admin passphrase


@dataclass(frozen=True)
class Server:
    """A fleet server: its public addresses (DNS) and how cozyops reaches it (the settings Ansible
    would use, read with Ansible's precedence by ``inventory.py``; see docs/fleet.md)."""

    name: str
    ipv4: str | None
    ipv6: str | None = None
    connection: Connection = Connection.SSH  # ansible_connection
    host: str | None = None  # ansible_host (None: the name)
    port: int = 22  # ansible_port
    user: str = "root"  # ansible_user
    key_file: Path | None = None  # ansible_ssh_private_key_file (else the ssh_config's IdentityFile)
    ssh_config: Path | None = None  # the -F file of ansible_ssh_common_args
    known_hosts: Path | None = None  # cozy_known_hosts, else the ssh_config's, else ~/.ssh/known_hosts
    become: bool = False  # ansible_become
    admin_passphrase_file: Path | None = None  # cozy_admin_passphrase_file (here); None: Debian's, on the server
    key_file_source: str = "hosts.yml"  # the file and key that name key_file (for messages)
    capacity: int | None = None  # cozy_capacity: how many instances placement may put there (None: no bound)
    # The host's variables its nginx sites are rendered with (role nginx: cozy_nginx_*, cozy_acme_webroot,
    # cozy_tls_deploy_dir, cozy_stack_address, cozy_stack_port), as (name, value) pairs; the role's defaults else.
    site_vars: tuple[tuple[str, object], ...] = ()

    @property
    def address(self) -> str:
        """What SSH connects to: ansible_host, else the inventory name."""
        return self.host or self.name


@dataclass(frozen=True)
class Instance:
    """An instance of instances.yml. ``None`` for a field means "not set in the fleet":
    cozy-stack's default at creation, and never changed afterwards by a plan."""

    domain: str
    server: str
    apps: tuple[str, ...] = DEFAULT_APPS
    email: str | None = None
    locale: str | None = None
    quota: int | None = None  # disk quota in bytes (instances.yml: 5GB, 500MiB, or bytes); 0: none
    context: str | None = None  # cozy-stack's context (ContextName)
    tz: str | None = None  # Timezone, e.g. Europe/Paris
    public_name: str | None = None  # PublicName
    blocked: bool | None = None  # blocked by cozy-stack (Blocked=true) with its reason; None: not set
    blocking_reason: str | None = None

    # The fields a plan compares with the instance on its server (the settable ones).
    SETTINGS = ("email", "locale", "quota", "context", "tz", "public_name", "blocked", "blocking_reason")

    def settings(self) -> dict:
        """The fields set in the fleet (what a plan holds the server to)."""
        return {name: getattr(self, name) for name in self.SETTINGS if getattr(self, name) is not None}


@dataclass(frozen=True)
class Rfc2136Server:
    """Where RFC 2136 updates (and zone transfers) go, and the TSIG key that signs them."""

    server: str
    port: int = 53
    tsig_key_file: Path | None = None
    algorithm: str | None = None  # overrides the key file's
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True)
class PowerDnsApi:
    """PowerDNS's HTTP API: where it is, which server, and the file holding the API key."""

    api_url: str  # http(s)://host:port, without /api/v1
    api_key_file: Path  # or Path("env:VARIABLE")
    server_id: str = "localhost"
    timeout: float = DEFAULT_TIMEOUT
    ca_bundle: Path | None = None  # to verify an https API's certificate


@dataclass(frozen=True)
class LexiconApi:
    """A DNS provider's API through dns-lexicon: its name (as lexicon spells it), its options
    (not secret), and its secret ones from a file (else lexicon's LEXICON_<PROVIDER>_<OPTION>
    environment variables)."""

    provider: str
    options: tuple[tuple[str, str], ...] = ()
    credentials_file: Path | None = None  # YAML mapping of option: value, mode 0600


@dataclass(frozen=True)
class ChallengeDelegation:
    """``_acme-challenge.<name>`` is a CNAME into ``zone``, which cozyops updates instead."""

    zone: str
    target: Rfc2136Server


@dataclass(frozen=True)
class DnsSettings:
    provider: DnsProviderKind
    update: Rfc2136Server | PowerDnsApi | LexiconApi | None = None  # the provider's settings (none: manual)
    ttl: int = DEFAULT_TTL
    batch_size: int = DEFAULT_BATCH_SIZE
    nameservers: tuple[str, ...] = ()  # authoritative servers to check; default: the zone's NS
    propagation_timeout: float = DEFAULT_PROPAGATION_TIMEOUT
    unsafe_changes: int = DEFAULT_UNSAFE_CHANGES
    unsafe_percent: float = DEFAULT_UNSAFE_PERCENT
    acme_challenge: ChallengeDelegation | None = None


@dataclass(frozen=True)
class AcmeSettings:
    directory: str
    email: str | None = None
    ca_bundle: Path | None = None
    caa: tuple[str, ...] = ()  # CAA issuer domains; empty: no CAA records
    key_type: str = "ecdsa"  # of every certificate's own key: ecdsa (P-256) or rsa (2048)
    eab_kid: str | None = None  # external account binding, when the CA asks for it
    eab_hmac_key_file: Path | None = None
    budget: int | None = None  # new certificates per registered domain per week; None: the CA's known limit
    concurrency: int = 16  # orders in flight at once
    nginx_reload: str = "service nginx reload"
    deploy_dir: str = "/etc/ssl/cozyops"  # on each server: <deploy_dir>/<name>/fullchain.pem, privkey.pem
    # dns-01 (wildcards, through the fleet's DNS provider) or http-01 (one certificate per instance
    # naming the instance and its app hosts, answered by the instance's server's nginx on port 80)
    challenge: str = "dns-01"


@dataclass(frozen=True)
class Fleet:
    name: str
    root: Path
    zone: str
    subdomains: SubdomainMode
    dns: DnsSettings
    acme: AcmeSettings | None
    servers: dict[str, Server] = field(default_factory=dict)
    instances: tuple[Instance, ...] = ()

    @property
    def state_dir(self) -> Path:
        return self.root / ".cozyops"
