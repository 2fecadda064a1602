"""The fleet directory -> the model.

A fleet directory follows Ansible's conventions (``hosts.yml``, ``group_vars/``, ``host_vars/``)
plus ``instances.yml``. Settings are read the way Ansible would see them (simplified): ``all``'s
``vars`` in ``hosts.yml``, then ``group_vars/all.yml`` (or ``group_vars/all/*.yml``); per host,
the vars of its groups (outer first, each overridden by ``group_vars/<group>.yml``), then its own
vars in ``hosts.yml``, then ``host_vars/<host>.yml``.

Every problem is one :class:`ConfigError` naming the file and the key (``instances.yml:
instances[3].server: ...``); nothing is read half-way.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cozyops import files
from cozyops.errors import ConfigError
from cozyops.model import (
    ACME_DIRECTORIES,
    CAA_IDENTITIES,
    DEFAULT_APPS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_PROPAGATION_TIMEOUT,
    DEFAULT_TIMEOUT,
    DEFAULT_TTL,
    DEFAULT_UNSAFE_CHANGES,
    DEFAULT_UNSAFE_PERCENT,
    AcmeSettings,
    ChallengeDelegation,
    DnsProviderKind,
    DnsSettings,
    Fleet,
    Instance,
    LexiconApi,
    PowerDnsApi,
    Rfc2136Server,
    Server,
    SubdomainMode,
)

FLEET_ENV = "COZYOPS_FLEET"
MAX_BATCH_SIZE = 5000

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_APP = re.compile(r"^[a-z0-9][a-z0-9_]{0,62}$")
_FLEET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")

try:  # libyaml when PyYAML has it (it does in its wheels): ten times faster on big instances.yml
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader


def fleet_dir(option: Path | None) -> Path:
    """The fleet directory from ``--fleet``, else ``$COZYOPS_FLEET``."""
    value = option or (Path(os.environ[FLEET_ENV]) if os.environ.get(FLEET_ENV) else None)
    if value is None:
        raise ConfigError("fleet", "no fleet directory", f"pass --fleet DIR or set {FLEET_ENV}")
    if not value.is_dir():
        raise ConfigError(f"fleet {value}", "is not a directory")
    return value.resolve()


# -- reading files -----------------------------------------------------------------------------


def _read_yaml(path: Path, label: str, required: bool = True) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        if required:
            raise ConfigError(label, "missing") from None
        return None
    except OSError as error:
        raise ConfigError(label, f"cannot read: {error.strerror}") from None
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(label, f"{where}not valid YAML ({problem})") from None


def _mapping(value: Any, label: str, key: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(label, f"{key}: must be a mapping, not {type(value).__name__}")
    return value


def _read_yaml_cached(path: Path, label: str, cache_dir: Path) -> Any:
    """``_read_yaml`` for a big file (instances.yml), through a cache keyed by the file's content.

    PyYAML builds about 10,000 nodes a second here: 100,000 instances take 15 s to parse, their
    JSON form 0.2 s. The parsed data is kept as ``<fleet>/.cozyops/cache/<name>-<sha256>.json``;
    a file that changed has another digest, so the cache is never stale. Data JSON cannot hold
    (dates) is simply not cached; a cache that cannot be written or read is ignored.
    """
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ConfigError(label, f"cannot read: {error.strerror}") from None
    cache = cache_dir / f"{path.stem}-{hashlib.sha256(content).hexdigest()[:32]}.json"
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        pass
    data = _read_yaml(path, label)
    try:
        text = json.dumps(data)
    except (TypeError, ValueError):
        return data
    try:
        for old in cache_dir.glob(f"{path.stem}-*.json"):
            old.unlink()
        files.write_atomic(cache, text)
    except OSError:
        pass
    return data


@dataclass
class _Setting:
    value: Any
    source: str  # the file it came from, relative to the fleet


class _Vars:
    """Variables with the file each came from, later sources overriding earlier ones."""

    def __init__(self) -> None:
        self.items: dict[str, _Setting] = {}

    def merge(self, values: dict, source: str) -> None:
        for key, value in values.items():
            self.items[str(key)] = _Setting(value, source)

    def copy(self) -> _Vars:
        other = _Vars()
        other.items = dict(self.items)
        return other

    def get(self, key: str) -> _Setting | None:
        return self.items.get(key)


def _group_vars_files(root: Path, group: str) -> list[tuple[Path, str]]:
    """``group_vars/<group>.yml`` (or .yaml), then ``group_vars/<group>/*.yml`` sorted."""
    found = []
    for suffix in (".yml", ".yaml"):
        path = root / "group_vars" / f"{group}{suffix}"
        if path.is_file():
            found.append((path, f"group_vars/{group}{suffix}"))
    directory = root / "group_vars" / group
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            if path.suffix in (".yml", ".yaml") and path.is_file():
                found.append((path, f"group_vars/{group}/{path.name}"))
    return found


def _load_group_vars(root: Path, group: str, into: _Vars) -> None:
    for path, label in _group_vars_files(root, group):
        into.merge(_mapping(_read_yaml(path, label), label, "the file"), label)


@dataclass
class _Host:
    name: str
    vars: _Vars


def _hosts(root: Path, all_vars: _Vars) -> dict[str, _Host]:
    label = "hosts.yml"
    path = root / label
    if not path.exists() and (root / "hosts.yaml").exists():
        path, label = root / "hosts.yaml", "hosts.yaml"
    data = _read_yaml(path, label, required=False)
    if data is None:
        return {}
    data = _mapping(data, label, "the file")
    hosts: dict[str, _Host] = {}

    def walk(group: str, body: Any, inherited: _Vars, where: str) -> None:
        body = _mapping(body, label, where)
        group_vars = inherited.copy()
        if group != "all":  # all's vars were merged (with group_vars/all.yml) by the caller
            group_vars.merge(_mapping(body.get("vars"), label, f"{where}.vars"), label)
            _load_group_vars(root, group, group_vars)
        for host, host_body in _mapping(body.get("hosts"), label, f"{where}.hosts").items():
            host = str(host)
            entry = hosts.setdefault(host, _Host(host, group_vars.copy()))
            if entry.vars is not group_vars:
                for key, setting in group_vars.items.items():
                    entry.vars.items.setdefault(key, setting)
            entry.vars.merge(_mapping(host_body, label, f"{where}.hosts.{host}"), label)
        for child, child_body in _mapping(body.get("children"), label, f"{where}.children").items():
            walk(str(child), child_body, group_vars, f"{where}.children.{child}")

    walk("all", data.get("all", data), all_vars, "all")
    for host in hosts.values():
        for suffix in (".yml", ".yaml"):
            host_file = root / "host_vars" / f"{host.name}{suffix}"
            if host_file.is_file():
                file_label = f"host_vars/{host.name}{suffix}"
                host.vars.merge(_mapping(_read_yaml(host_file, file_label), file_label, "the file"), file_label)
    return hosts


# -- checking values ---------------------------------------------------------------------------


def check_domain(value: Any, label: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(label, f"{key}: must be a domain name")
    name = value.strip().lower().rstrip(".")
    if not name.isascii():
        raise ConfigError(label, f"{key}: {value!r} is not ASCII", "write internationalized names in their xn-- form")
    labels = name.split(".")
    if len(name) > 253 or not all(_HOST_LABEL.match(part) for part in labels):
        raise ConfigError(label, f"{key}: {value!r} is not a valid domain name")
    return name


def _ipv4(value: Any, label: str, key: str) -> str:
    try:
        return str(ipaddress.IPv4Address(str(value).strip()))
    except ValueError:
        raise ConfigError(label, f"{key}: {value!r} is not an IPv4 address") from None


def _ipv6(value: Any, label: str, key: str) -> str:
    try:
        return str(ipaddress.IPv6Address(str(value).strip()))
    except ValueError:
        raise ConfigError(label, f"{key}: {value!r} is not an IPv6 address") from None


def _number(value: Any, label: str, key: str, kind: type, low: float, high: float | None = None):
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(label, f"{key}: must be a number, not {value!r}")
    if kind is int and not float(value).is_integer():
        raise ConfigError(label, f"{key}: must be a whole number, not {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(label, f"{key}: must be {bound}, not {value!r}")
    return kind(value)


def _string(value: Any, label: str, key: str) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
        raise ConfigError(label, f"{key}: must be a non-empty string")
    return str(value).strip()


def _strings(value: Any, label: str, key: str, what: str, check=_string) -> tuple[str, ...]:
    """A list of strings, a single string standing for a one-item list, or nothing (None, false)."""
    if value is None or value is False:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise ConfigError(label, f"{key}: must be a list of {what}")
    return tuple(check(item, label, f"{key}[{i}]") for i, item in enumerate(value))


def _secret_file(root: Path, value: Any, label: str, key: str) -> Path:
    path = Path(_string(value, label, key))
    path = path if path.is_absolute() else root / path
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(label, f"{key}: {path} does not exist") from None
    except OSError as error:
        raise ConfigError(label, f"{key}: {path}: {error.strerror}") from None
    if mode & 0o077:
        raise ConfigError(
            label, f"{key}: {path} is readable by others (mode {mode & 0o777:o})", f"chmod 600 {path}"
        )
    return path


# -- the settings ------------------------------------------------------------------------------


def _required(vars_: _Vars, key: str, default_label: str) -> _Setting:
    setting = vars_.get(key)
    if setting is None or setting.value is None:
        raise ConfigError(default_label, f"{key}: missing (the fleet's {key.removeprefix('cozy_')})")
    return setting


def _secret_reference(root: Path, body: dict, label: str, key: str, name: str) -> Path | None:
    """``<name>_file`` (a private file) or ``<name>_env`` (``Path("env:VARIABLE")``), else None."""
    if body.get(f"{name}_file") is not None:
        return _secret_file(root, body[f"{name}_file"], label, f"{key}.{name}_file")
    if body.get(f"{name}_env") is not None:
        variable = _string(body[f"{name}_env"], label, f"{key}.{name}_env")
        if not os.environ.get(variable):
            raise ConfigError(label, f"{key}.{name}_env: the environment variable {variable} is not set")
        return Path(f"env:{variable}")
    return None


def _rfc2136(root: Path, body: dict, label: str, key: str) -> Rfc2136Server:
    if "server" not in body or body["server"] is None:
        raise ConfigError(label, f"{key}.server: missing (the address of the DNS server that takes updates)")
    server = _string(body["server"], label, f"{key}.server")
    port = _number(body.get("port", 53), label, f"{key}.port", int, 1, 65535)
    key_file = _secret_reference(root, body, label, key, "tsig_key")
    algorithm = None
    if body.get("algorithm") is not None:
        from cozyops.dns import tsig

        algorithm = _string(body["algorithm"], label, f"{key}.algorithm").lower()
        if algorithm not in tsig.ALGORITHMS:
            raise ConfigError(
                label, f"{key}.algorithm: {algorithm!r} is not one of {', '.join(tsig.ALGORITHMS)}"
            )
    timeout = _number(body.get("timeout", DEFAULT_TIMEOUT), label, f"{key}.timeout", float, 0.1, 600)
    return Rfc2136Server(server, port, key_file, algorithm, timeout)


def _powerdns(root: Path, body: dict, label: str, key: str) -> PowerDnsApi:
    """cozy_dns for the powerdns provider: api_url, server_id, api_key_file (or api_key_env)."""
    url = _string(body.get("api_url") or "", label, f"{key}.api_url") if body.get("api_url") else None
    if url is None:
        raise ConfigError(label, f"{key}.api_url: missing (PowerDNS's API, e.g. http://ns1.example.org:8081)")
    if not re.match(r"^https?://[^/\s]+", url):
        raise ConfigError(label, f"{key}.api_url: must be an http:// or https:// URL, not {url!r}")
    key_file = _secret_reference(root, body, label, key, "api_key")
    if key_file is None:
        raise ConfigError(label, f"{key}.api_key_file: missing", "PowerDNS's api-key in a file of mode 0600")
    ca_bundle = None
    if body.get("ca_bundle") is not None:
        ca_bundle = root / _string(body["ca_bundle"], label, f"{key}.ca_bundle")
        if not ca_bundle.is_file():
            raise ConfigError(label, f"{key}.ca_bundle: {ca_bundle} does not exist")
    return PowerDnsApi(
        url.rstrip("/").removesuffix("/api/v1"), key_file,
        _string(body.get("server_id", "localhost"), label, f"{key}.server_id"),
        _number(body.get("timeout", DEFAULT_TIMEOUT), label, f"{key}.timeout", float, 0.1, 600), ca_bundle,
    )


def _lexicon(root: Path, body: dict, label: str, key: str) -> LexiconApi:
    """cozy_dns for the lexicon provider: lexicon_provider, lexicon_options (not secret) and
    credentials_file (the secret options; else lexicon's own LEXICON_<PROVIDER>_<OPTION> variables)."""
    if not body.get("lexicon_provider"):
        raise ConfigError(label, f"{key}.lexicon_provider: missing (a provider name of dns-lexicon, e.g. ovh)")
    name = _string(body["lexicon_provider"], label, f"{key}.lexicon_provider").lower()
    if not re.match(r"^[a-z0-9_]+$", name):
        raise ConfigError(label, f"{key}.lexicon_provider: {name!r} is not a lexicon provider name")
    options = _mapping(body.get("lexicon_options"), label, f"{key}.lexicon_options")
    pairs = tuple(sorted((str(option), _string(value, label, f"{key}.lexicon_options.{option}"))
                         for option, value in options.items()))
    credentials = None
    if body.get("credentials_file") is not None:
        credentials = _secret_file(root, body["credentials_file"], label, f"{key}.credentials_file")
    return LexiconApi(name, pairs, credentials)


def _dns(root: Path, setting: _Setting, zone: str) -> DnsSettings:
    label, key = setting.source, "cozy_dns"
    body = _mapping(setting.value, label, key)
    provider_text = str(body.get("provider", "rfc2136")).strip().lower()
    try:
        provider = DnsProviderKind(provider_text)
    except ValueError:
        choices = ", ".join(kind.value for kind in DnsProviderKind)
        raise ConfigError(label, f"{key}.provider: must be one of {choices}, not {provider_text!r}") from None
    update: Rfc2136Server | PowerDnsApi | LexiconApi | None = None
    if provider is DnsProviderKind.RFC2136:
        update = _rfc2136(root, body, label, key)
    elif provider is DnsProviderKind.POWERDNS:
        update = _powerdns(root, body, label, key)
    elif provider is DnsProviderKind.LEXICON:
        update = _lexicon(root, body, label, key)
    if isinstance(update, Rfc2136Server) and update.tsig_key_file is None:
        raise ConfigError(
            label, f"{key}.tsig_key_file: missing", "updates must be signed: a tsig-keygen file, mode 0600"
        )
    nameservers = _strings(body.get("nameservers") or (), label, f"{key}.nameservers", "addresses")
    delegation = None
    if body.get("acme_challenge") is not None:
        sub = _mapping(body["acme_challenge"], label, f"{key}.acme_challenge")
        challenge_zone = check_domain(sub.get("zone"), label, f"{key}.acme_challenge.zone")
        if challenge_zone == zone or challenge_zone.endswith("." + zone):
            raise ConfigError(label, f"{key}.acme_challenge.zone: must be another zone than {zone}")
        target = _rfc2136(root, sub, label, f"{key}.acme_challenge")
        if target.tsig_key_file is None:
            raise ConfigError(label, f"{key}.acme_challenge.tsig_key_file: missing")
        delegation = ChallengeDelegation(challenge_zone, target)
    return DnsSettings(
        provider=provider,
        update=update,
        ttl=_number(body.get("ttl", DEFAULT_TTL), label, f"{key}.ttl", int, 1, 2**31 - 1),
        batch_size=_number(body.get("batch_size", DEFAULT_BATCH_SIZE), label, f"{key}.batch_size", int, 1,
                           MAX_BATCH_SIZE),
        nameservers=nameservers,
        propagation_timeout=_number(
            body.get("propagation_timeout", DEFAULT_PROPAGATION_TIMEOUT), label, f"{key}.propagation_timeout",
            float, 0, 86400,
        ),
        unsafe_changes=_number(body.get("unsafe_changes", DEFAULT_UNSAFE_CHANGES), label,
                               f"{key}.unsafe_changes", int, 0),
        unsafe_percent=_number(body.get("unsafe_percent", DEFAULT_UNSAFE_PERCENT), label,
                               f"{key}.unsafe_percent", float, 0, 100),
        acme_challenge=delegation,
    )


def _acme(root: Path, setting: _Setting | None) -> AcmeSettings | None:
    if setting is None or setting.value is None:
        return None
    label, key = setting.source, "cozy_acme"
    body = _mapping(setting.value, label, key)
    directory_name = _string(body.get("directory", "letsencrypt"), label, f"{key}.directory")
    directory = ACME_DIRECTORIES.get(directory_name, directory_name)
    if directory_name not in ACME_DIRECTORIES and not directory.startswith("https://"):
        raise ConfigError(
            label, f"{key}.directory: {directory_name!r} is neither "
            f"{' nor '.join(ACME_DIRECTORIES)} nor an https:// URL"
        )
    caa = _strings(body.get("caa", CAA_IDENTITIES.get(directory_name, ())), label, f"{key}.caa",
                   "CA domains (e.g. letsencrypt.org) or false", check_domain)
    ca_bundle = None
    if body.get("ca_bundle") is not None:
        ca_bundle = Path(_string(body["ca_bundle"], label, f"{key}.ca_bundle"))
        ca_bundle = ca_bundle if ca_bundle.is_absolute() else root / ca_bundle
    email = str(body["email"]) if body.get("email") is not None else None
    key_type = _string(body.get("key_type", "ecdsa"), label, f"{key}.key_type").lower()
    if key_type not in ("ecdsa", "rsa"):
        raise ConfigError(label, f"{key}.key_type: must be ecdsa or rsa, not {key_type!r}")
    eab_kid = _string(body["eab_kid"], label, f"{key}.eab_kid") if body.get("eab_kid") is not None else None
    eab_file = None
    if body.get("eab_hmac_key_file") is not None:
        eab_file = _secret_file(root, body["eab_hmac_key_file"], label, f"{key}.eab_hmac_key_file")
    if (eab_kid is None) != (eab_file is None):
        raise ConfigError(label, f"{key}: eab_kid and eab_hmac_key_file go together")
    budget = None
    if body.get("budget") is not None:
        budget = _number(body["budget"], label, f"{key}.budget", int, 0)
    concurrency = _number(body.get("concurrency", 16), label, f"{key}.concurrency", int, 1, 256)
    reload = _string(body.get("nginx_reload", "service nginx reload"), label, f"{key}.nginx_reload")
    deploy_dir = _string(body.get("deploy_dir", "/etc/ssl/cozyops"), label, f"{key}.deploy_dir")
    if not deploy_dir.startswith("/") or "\n" in deploy_dir:
        raise ConfigError(label, f"{key}.deploy_dir: must be an absolute path on the servers, not {deploy_dir!r}")
    return AcmeSettings(directory, email, ca_bundle, caa, key_type, eab_kid, eab_file, budget, concurrency, reload,
                        deploy_dir)


def _server(host: _Host) -> Server:
    def value(key: str) -> tuple[Any, str] | None:
        setting = host.vars.get(key)
        return (setting.value, setting.source) if setting and setting.value not in (None, "") else None

    ipv4 = ipv6 = None
    if found := value("cozy_public_ipv4"):
        ipv4 = _ipv4(found[0], found[1], f"host {host.name}: cozy_public_ipv4")
    elif found := value("ansible_host"):
        try:
            ipv4 = str(ipaddress.IPv4Address(str(found[0]).strip()))
        except ValueError:
            ipv4 = None
    if found := value("cozy_public_ipv6"):
        ipv6 = _ipv6(found[0], found[1], f"host {host.name}: cozy_public_ipv6")
    return Server(host.name, ipv4, ipv6)


def _instances(root: Path, zone: str, mode: SubdomainMode, servers: dict[str, Server]) -> tuple[Instance, ...]:
    label = "instances.yml"
    data = _mapping(_read_yaml_cached(root / label, label, root / ".cozyops" / "cache"), label, "the file")
    items = data.get("instances") or []
    if not isinstance(items, list):
        raise ConfigError(label, "instances: must be a list")
    suffix = "." + zone
    seen: dict[str, int] = {}
    instances = []
    used_servers: set[str] = set()
    for index, item in enumerate(items):
        key = f"instances[{index}]"
        if not isinstance(item, dict):
            raise ConfigError(label, f"{key}: must be a mapping with domain, server, apps")
        domain = check_domain(item.get("domain"), label, f"{key}.domain")
        if domain != zone and not domain.endswith(suffix):
            raise ConfigError(label, f"{key}.domain: {domain} is not in the fleet's zone {zone}")
        if domain in seen:
            raise ConfigError(label, f"{key}.domain: {domain} is already instances[{seen[domain]}]")
        seen[domain] = index
        if mode is SubdomainMode.FLAT:
            if domain == zone:
                raise ConfigError(
                    label, f"{key}.domain: in flat mode an instance cannot be the zone itself",
                    "its apps would live outside the zone",
                )
            if "-" in domain.split(".", 1)[0]:
                raise ConfigError(
                    label, f"{key}.domain: {domain}: no '-' in the first label in flat mode",
                    "cozy-stack splits <instance>-<app> on the first '-'",
                )
        server = item.get("server")
        if server is None or str(server) not in servers:
            known = ", ".join(sorted(servers)) or "none"
            raise ConfigError(label, f"{key}.server: {server!r} is not a host of hosts.yml (hosts: {known})")
        server = str(server)
        used_servers.add(server)
        apps_value = item.get("apps", DEFAULT_APPS)
        if not isinstance(apps_value, list | tuple) or not all(isinstance(app, str) for app in apps_value):
            raise ConfigError(label, f"{key}.apps: must be a list of app slugs")
        for app in apps_value:
            if not _APP.match(app.strip().lower()):
                raise ConfigError(label, f"{key}.apps: {app!r} is not an app slug")
        apps = tuple(dict.fromkeys(app.strip().lower() for app in apps_value))
        instances.append(Instance(domain, server, apps, item.get("email"), item.get("locale")))
    for name in sorted(used_servers):
        if servers[name].ipv4 is None and servers[name].ipv6 is None:
            raise ConfigError(
                "hosts.yml", f"host {name}: no public address",
                "set cozy_public_ipv4 (or an IPv4 ansible_host) and/or cozy_public_ipv6",
            )
    return tuple(instances)


def load(root: Path) -> Fleet:
    """Read the fleet directory ``root`` into a :class:`Fleet`."""
    root = root.resolve()
    all_vars = _Vars()
    hosts_data = _read_yaml(root / "hosts.yml", "hosts.yml", required=False)
    if isinstance(hosts_data, dict):
        all_group = hosts_data.get("all", hosts_data)
        if isinstance(all_group, dict):
            all_vars.merge(_mapping(all_group.get("vars"), "hosts.yml", "all.vars"), "hosts.yml")
    _load_group_vars(root, "all", all_vars)
    default_label = "group_vars/all.yml"

    zone_setting = _required(all_vars, "cozy_zone", default_label)
    zone = check_domain(zone_setting.value, zone_setting.source, "cozy_zone")
    if "." not in zone:
        raise ConfigError(zone_setting.source, f"cozy_zone: {zone!r} is not a zone of at least two labels")

    mode_setting = all_vars.get("cozy_subdomains") or _Setting("nested", default_label)
    try:
        mode = SubdomainMode(str(mode_setting.value).strip().lower())
    except ValueError:
        raise ConfigError(
            mode_setting.source, f"cozy_subdomains: must be nested or flat, not {mode_setting.value!r}"
        ) from None

    name_setting = all_vars.get("cozy_fleet_name")
    name = str(name_setting.value) if name_setting and name_setting.value else root.name
    if not _FLEET_NAME.match(name):
        source = name_setting.source if name_setting else str(root)
        raise ConfigError(source, f"cozy_fleet_name: {name!r} must be 1-63 of A-Z a-z 0-9 . _ - (set it)")

    dns = _dns(root, _required(all_vars, "cozy_dns", default_label), zone)
    acme = _acme(root, all_vars.get("cozy_acme"))
    servers = {host.name: _server(host) for host in _hosts(root, all_vars).values()}
    instances = _instances(root, zone, mode, servers)
    return Fleet(name, root, zone, mode, dns, acme, servers, instances)
