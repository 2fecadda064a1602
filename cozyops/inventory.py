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

import contextvars
import getpass
import hashlib
import ipaddress
import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cozyops import files, fleetyaml
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
    Connection,
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
# a host name: labels of 1 to 63 letters, digits and '-', none at either end of a label
_HOST_NAME = re.compile(r"(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)*(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_APP = re.compile(r"^[a-z0-9][a-z0-9_]{0,62}$")
_FLEET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")

# Cache files load() will write once the whole fleet is accepted (never for input it refuses).
_pending_cache: contextvars.ContextVar[list | None] = contextvars.ContextVar("pending_cache", default=None)


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
        content = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise ConfigError(label, "missing") from None
        return None
    except OSError as error:
        raise ConfigError(label, f"cannot read: {error.strerror}") from None
    return _parse_yaml(content, label)


def _parse_yaml(content: bytes, label: str) -> Any:
    """A fleet file's data (cozyops.fleetyaml: no anchors or aliases, bounded nesting)."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(label, f"not UTF-8 text (byte {error.start} of the file)",
                          "save it as UTF-8") from None
    try:
        return fleetyaml.load(text)
    except fleetyaml.FleetYamlError as error:
        raise ConfigError(label, str(error)) from None
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
    (dates) is simply not cached; a cache that cannot be written or read is ignored. Within
    ``load`` the cache is written only once the whole fleet is accepted.
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
    data = _parse_yaml(content, label)
    try:
        text = json.dumps(data)
    except (TypeError, ValueError):
        return data

    def write() -> None:
        try:
            for old in cache_dir.glob(f"{path.stem}-*.json"):
                old.unlink()
            files.write_atomic(cache, text)
        except OSError:
            pass

    pending = _pending_cache.get()
    if pending is None:
        write()
    else:
        pending.append(write)
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


def _vars_files(root: Path, folder: str, name: str) -> list[tuple[Path, str]]:
    """The variable files Ansible's host_group_vars plugin reads for ``name``: the first of
    ``<folder>/<name>`` (a file, or a directory read recursively in sorted order), ``<name>.yml``,
    ``<name>.yaml``, ``<name>.json``."""
    base = root / folder
    for suffix in ("", ".yml", ".yaml", ".json"):
        path = base / f"{name}{suffix}"
        if path.is_dir():
            return _dir_vars_files(root, path)
        if path.exists():
            return [(path, str(path.relative_to(root)))]
    return []


def _dir_vars_files(root: Path, directory: Path) -> list[tuple[Path, str]]:
    found = []
    for path in sorted(directory.iterdir(), key=lambda p: p.name):
        if path.name.startswith(".") or path.name.endswith("~"):
            continue
        if path.is_dir() and not path.suffix:
            found += _dir_vars_files(root, path)
        elif path.is_file() and path.suffix in ("", ".yml", ".yaml", ".json"):
            found.append((path, str(path.relative_to(root))))
    return found


def _load_vars_files(root: Path, folder: str, name: str, into: _Vars) -> None:
    for path, label in _vars_files(root, folder, name):
        into.merge(_mapping(_read_yaml(path, label), label, "the file"), label)


def _load_group_vars(root: Path, group: str, into: _Vars) -> None:
    _load_vars_files(root, "group_vars", group, into)


@dataclass
class _Host:
    name: str
    vars: _Vars


@dataclass
class _Group:
    name: str
    vars: _Vars
    parents: set[str]
    depth: int = 0
    priority: int = 1  # ansible_group_priority (a setting of the group, not a variable)


def _host_pattern(pattern: str, label: str, where: str) -> tuple[str, int | None]:
    """A host entry of the YAML inventory: ``name`` or ``name:port`` (ranges are refused)."""
    if "[" in pattern:
        raise ConfigError(label, f"{where}: host ranges like {pattern!r} are not supported; list the hosts")
    if pattern.count(":") == 1:
        name, port = pattern.split(":")
        if port.isdigit():
            return name, int(port)
    return pattern, None


def _hosts(root: Path, label: str, data: Any, all_files: _Vars) -> dict[str, _Host]:
    """Every host of hosts.yml with its variables, merged in the order Ansible applies them
    (``ansible-inventory --host``, Ansible's default precedence): all's vars in hosts.yml, the
    vars of the host's groups in hosts.yml (parents before children: by depth, then
    ansible_group_priority, then name), group_vars/all, group_vars/<group> in that same order, the
    host's own vars in hosts.yml, host_vars/<host>. ``all_files``: group_vars/all's variables."""
    if data is None:
        return {}
    groups: dict[str, _Group] = {"all": _Group("all", _Vars(), set())}
    own: dict[str, _Vars] = {}  # each host's own vars in hosts.yml, in document order
    member: dict[str, set[str]] = {}  # each host's groups (direct)

    def walk(group: str, body: Any, parent: str | None, where: str) -> None:
        entry = groups.setdefault(group, _Group(group, _Vars(), set()))
        if parent is not None:
            entry.parents.add(parent)
        body = _mapping(body, label, where)
        values = dict(_mapping(body.get("vars"), label, f"{where}.vars"))
        if "ansible_group_priority" in values:
            priority = values.pop("ansible_group_priority")
            try:
                entry.priority = int(priority)
            except (TypeError, ValueError):
                raise ConfigError(label, f"{where}.vars.ansible_group_priority: {priority!r} is not a number") from None
        entry.vars.merge(values, label)
        for key, value in body.items():
            if key == "children":
                for child, child_body in _mapping(value, label, f"{where}.children").items():
                    walk(str(child), child_body, group, f"{where}.children.{child}")
            elif key == "hosts":
                for pattern, host_body in _mapping(value, label, f"{where}.hosts").items():
                    host, port = _host_pattern(str(pattern), label, f"{where}.hosts")
                    host_vars = own.setdefault(host, _Vars())
                    member.setdefault(host, set()).add(group)
                    if port is not None:
                        host_vars.merge({"ansible_port": port}, label)
                    host_vars.merge(_mapping(host_body, label, f"{where}.hosts.{pattern}"), label)

    for group, body in data.items():
        walk(str(group), body, None, str(group))
    groups.setdefault("ungrouped", _Group("ungrouped", _Vars(), {"all"}))
    for group in groups.values():
        if group.name != "all" and not group.parents:
            group.parents.add("all")
    for direct in member.values():
        if direct <= {"all"}:
            direct.add("ungrouped")

    def depth(name: str, seen: tuple[str, ...]) -> int:
        if name in seen:
            raise ConfigError(label, f"group {name}: is its own ancestor ({' > '.join((*seen, name))})")
        group = groups[name]
        if name == "all":
            return 0
        group.depth = max(depth(parent, (*seen, name)) + 1 for parent in group.parents)
        return group.depth

    for name in groups:
        depth(name, ())

    def ancestors(name: str) -> set[str]:
        found = {name}
        for parent in groups[name].parents:
            found |= ancestors(parent)
        return found

    group_files: dict[str, _Vars] = {}
    hosts: dict[str, _Host] = {}
    for name in member:
        chain = sorted((groups[g] for g in set().union(*(ancestors(g) for g in member[name])) if g != "all"),
                       key=lambda g: (g.depth, g.priority, g.name))
        merged = groups["all"].vars.copy()
        for group in chain:
            merged.items.update(group.vars.items)
        merged.items.update(all_files.items)
        for group in chain:
            if group.name not in group_files:
                group_files[group.name] = _Vars()
                _load_group_vars(root, group.name, group_files[group.name])
            merged.items.update(group_files[group.name].items)
        merged.items.update(own[name].items)
        _load_vars_files(root, "host_vars", name, merged)
        hosts[name] = _Host(name, merged)
    return hosts


# -- checking values ---------------------------------------------------------------------------


def check_domain(value: Any, label: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(label, f"{key}: must be a domain name")
    name = value.strip().lower().rstrip(".")
    if not name.isascii():
        raise ConfigError(label, f"{key}: {value!r} is not ASCII", "write internationalized names in their xn-- form")
    if len(name) > 253 or not _HOST_NAME.match(name):
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
        if not ca_bundle.is_file():
            reason = "is not a file" if ca_bundle.exists() else "does not exist"
            raise ConfigError(label, f"{key}.ca_bundle: {ca_bundle} {reason}")
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
    challenge = _string(body.get("challenge", "dns-01"), label, f"{key}.challenge").lower()
    if challenge not in ACME_CHALLENGES:
        raise ConfigError(label, f"{key}.challenge: must be {' or '.join(ACME_CHALLENGES)}, not {challenge!r}")
    return AcmeSettings(directory, email, ca_bundle, caa, key_type, eab_kid, eab_file, budget, concurrency, reload,
                        deploy_dir, challenge)


ACME_CHALLENGES = ("dns-01", "http-01")


_TRUE = {"y", "yes", "on", "1", "true", "t"}
_FALSE = {"n", "no", "off", "0", "false", "f"}


def _boolean(value: Any, label: str, key: str) -> bool:
    """A boolean as Ansible reads one (its ``boolean()`` filter)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if isinstance(value, int | float | str) and (text in _TRUE or text in _FALSE or text in ("1.0", "0.0")):
        return text in _TRUE or text == "1.0"
    raise ConfigError(label, f"{key}: {value!r} is not a boolean (yes/no, true/false)")


def _local_path(root: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def _ssh_config(root: Path, args: str, label: str, key: str) -> Path | None:
    """The ``-F`` file of ``ansible_ssh_common_args`` (``-F FILE`` or ``-FFILE``)."""
    try:
        words = shlex.split(args)
    except ValueError as error:
        raise ConfigError(label, f"{key}: cannot be split into arguments ({error})") from None
    for index, word in enumerate(words):
        if word == "-F":
            if index + 1 == len(words):
                raise ConfigError(label, f"{key}: -F without a file")
            return _local_path(root, words[index + 1])
        if word.startswith("-F"):
            return _local_path(root, word[2:])
    return None


def _ssh_config_lookup(path: Path, host: str, label: str, key: str) -> dict:
    """What OpenSSH's ``ssh -F path host`` would take from that file (paramiko's reader)."""
    import paramiko

    try:
        config = paramiko.SSHConfig.from_path(str(path))
    except FileNotFoundError:
        raise ConfigError(label, f"{key}: the ssh_config {path} does not exist") from None
    except OSError as error:
        raise ConfigError(label, f"{key}: the ssh_config {path}: {error.strerror}") from None
    except Exception as error:  # paramiko's parser raises plain exceptions on bad lines
        raise ConfigError(label, f"{key}: the ssh_config {path} cannot be read ({error})") from None
    try:
        return dict(config.lookup(host))
    except Exception as error:
        raise ConfigError(label, f"{key}: the ssh_config {path}: {error}") from None


_CONNECTIONS = {"ssh": Connection.SSH, "paramiko": Connection.SSH, "paramiko_ssh": Connection.SSH,
                "smart": Connection.SSH, "local": Connection.LOCAL}


def _server(root: Path, host: _Host) -> Server:
    def value(*keys: str) -> tuple[Any, str, str] | None:
        """The first of ``keys`` the host has: Ansible's ssh plugin takes the last of its names that
        is set (ansible_ssh_port over ansible_port...), so callers list them in reverse."""
        for key in keys:
            setting = host.vars.get(key)
            if setting and setting.value not in (None, ""):
                if isinstance(setting.value, str) and "{{" in setting.value:
                    raise ConfigError(setting.source, f"host {host.name}: {key}: templates ({{{{ }}}}) are not "
                                      "supported in connection settings; write the value")
                return setting.value, setting.source, f"host {host.name}: {key}"
        return None

    ipv4 = ipv6 = None
    if found := value("cozy_public_ipv4"):
        ipv4 = _ipv4(found[0], found[1], found[2])
    elif found := value("ansible_host"):
        try:
            ipv4 = str(ipaddress.IPv4Address(str(found[0]).strip()))
        except ValueError:
            ipv4 = None
    if found := value("cozy_public_ipv6"):
        ipv6 = _ipv6(found[0], found[1], found[2])

    connection = Connection.SSH
    if found := value("ansible_connection"):
        text = str(found[0]).strip().lower()
        if text not in _CONNECTIONS:
            raise ConfigError(found[1], f"{found[2]}: {found[0]!r} is not supported (ssh, paramiko or local)")
        connection = _CONNECTIONS[text]
    address = _string(found[0], found[1], found[2]) if (found := value("ansible_ssh_host", "ansible_host")) else None
    ssh_config = None
    config: dict = {}
    if found := value("ansible_ssh_common_args"):
        ssh_config = _ssh_config(root, str(found[0]), found[1], found[2])
        if ssh_config is not None and connection is Connection.SSH:
            config = _ssh_config_lookup(ssh_config, address or host.name, found[1], found[2])
    if found := value("ansible_ssh_port", "ansible_port"):
        port = _number(int(found[0]) if str(found[0]).isdigit() else found[0], found[1], found[2], int, 1, 65535)
    else:
        port = int(config["port"]) if str(config.get("port", "")).isdigit() else 22
    if found := value("ansible_ssh_user", "ansible_user"):
        user = _string(found[0], found[1], found[2])
    else:
        user = str(config.get("user") or getpass.getuser())
    key_file = None
    key_source = "hosts.yml"
    if found := value("ansible_ssh_private_key_file", "ansible_private_key_file"):
        key_file, key_source = _local_path(root, _string(found[0], found[1], found[2])), f"{found[1]}: {found[2]}"
    elif config.get("identityfile"):
        key_file, key_source = Path(config["identityfile"][0]).expanduser(), f"{ssh_config}: IdentityFile"
    known_hosts = None
    if connection is Connection.SSH:
        if found := value("cozy_known_hosts"):
            known_hosts = _local_path(root, _string(found[0], found[1], found[2]))
        elif (config.get("userknownhostsfile") or "").split():
            known_hosts = Path(config["userknownhostsfile"].split()[0]).expanduser()
        else:  # OpenSSH's default when the ssh_config (or its absence) says nothing
            known_hosts = Path("~/.ssh/known_hosts").expanduser()
    become = _boolean(found[0], found[1], found[2]) if (found := value("ansible_become")) else False
    passphrase = None
    if found := value("cozy_admin_passphrase_file"):
        passphrase = _secret_file(root, found[0], found[1], found[2])
    capacity = None
    if found := value("cozy_capacity"):
        raw = int(found[0]) if isinstance(found[0], str) and found[0].strip().isdigit() else found[0]
        capacity = _number(raw, found[1], found[2], int, 0)
    return Server(host.name, ipv4, ipv6, connection=connection, host=address, port=port, user=user,
                  key_file=key_file, ssh_config=ssh_config, known_hosts=known_hosts, become=become,
                  admin_passphrase_file=passphrase, key_file_source=key_source, capacity=capacity,
                  site_vars=_site_vars(host))


SITE_VARS = ("cozy_acme_webroot", "cozy_tls_deploy_dir", "cozy_stack_address", "cozy_stack_port")


def _site_vars(host: _Host) -> tuple[tuple[str, object], ...]:
    """The host's variables that shape its nginx sites (see model.Server.site_vars)."""
    return tuple(sorted((key, setting.value) for key, setting in host.vars.items.items()
                        if (key in SITE_VARS or key.startswith("cozy_nginx_"))
                        and isinstance(setting.value, str | int)))


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
    app_lists: dict[tuple, tuple[str, ...]] = {}  # a fleet has few distinct app lists: each checked once
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
                _refuse_flat_app_host(items, index, domain, label)
        server = item.get("server")
        if server is None or str(server) not in servers:
            known = ", ".join(sorted(servers)) or "none"
            raise ConfigError(label, f"{key}.server: {server!r} is not a host of hosts.yml (hosts: {known})")
        server = str(server)
        used_servers.add(server)
        apps = _apps(item.get("apps", DEFAULT_APPS), app_lists, label, key)
        _check_derived_lengths(domain, apps, mode, label, key)
        instances.append(Instance(domain, server, apps, **_instance_settings(item, label, key)))
    if mode is SubdomainMode.NESTED:
        _refuse_nested_below(seen, zone, label)
    for name in sorted(used_servers):
        if servers[name].ipv4 is None and servers[name].ipv6 is None:
            raise ConfigError(
                "hosts.yml", f"host {name}: no public address",
                "set cozy_public_ipv4 (or an IPv4 ansible_host) and/or cozy_public_ipv6",
            )
    return tuple(instances)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?)b?\s*$", re.I)
_LOCALE = re.compile(r"^[a-z]{2,3}(?:[_-][A-Za-z0-9]{2,8})*$")
_CONTEXT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_TZ = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*$")


def parse_size(value: Any, label: str, key: str) -> int:
    """A size in bytes: a whole number (bytes), or with a unit: kB, MB, GB, TB (powers of 1000) or
    KiB, MiB, GiB, TiB (powers of 1024), as cozy-stack's own CLI reads --disk-quota. 0: none."""
    if isinstance(value, bool):
        raise ConfigError(label, f"{key}: {value!r} is not a size (bytes, or 5GB, 500MiB...)")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(label, f"{key}: {value!r} is not a size (bytes, or 5GB, 500MiB...)")
        return value
    found = _SIZE.match(str(value)) if isinstance(value, str | float) else None
    if not found:
        raise ConfigError(label, f"{key}: {value!r} is not a size (bytes, or 5GB, 500MiB...)")
    number, unit, binary = found.groups()
    power = "kmgtp".find(unit.lower()) + 1 if unit else 0
    return int(float(number) * (1024 if binary else 1000) ** power)


def _instance_settings(item: dict, label: str, key: str) -> dict:
    """The optional fields of an instance in instances.yml, checked (model.Instance's names)."""
    found: dict[str, Any] = {}
    if item.get("email") is not None:
        email = _string(item["email"], label, f"{key}.email")
        if "@" not in email or any(c.isspace() for c in email):
            raise ConfigError(label, f"{key}.email: {email!r} is not an e-mail address")
        found["email"] = email
    if item.get("locale") is not None:
        locale = _string(item["locale"], label, f"{key}.locale")
        if not _LOCALE.match(locale):
            raise ConfigError(label, f"{key}.locale: {locale!r} is not a locale (en, fr, pt_BR...)")
        found["locale"] = locale
    if item.get("quota") is not None:
        found["quota"] = parse_size(item["quota"], label, f"{key}.quota")
    for name, pattern, what in (("context", _CONTEXT, "a context name"), ("tz", _TZ, "a time zone (Europe/Paris)")):
        if item.get(name) is not None:
            text = _string(item[name], label, f"{key}.{name}")
            if not pattern.match(text):
                raise ConfigError(label, f"{key}.{name}: {text!r} is not {what}")
            found[name] = text
    if item.get("public_name") is not None:
        found["public_name"] = _string(item["public_name"], label, f"{key}.public_name")
    if item.get("blocked") is not None:
        found["blocked"] = _boolean(item["blocked"], label, f"{key}.blocked")
    if item.get("blocking_reason") is not None:
        found["blocking_reason"] = _string(item["blocking_reason"], label, f"{key}.blocking_reason")
    return found


def _apps(value: Any, checked: dict[tuple, tuple[str, ...]], label: str, key: str) -> tuple[str, ...]:
    """An instance's app slugs (lower case, without repeats); ``checked`` keeps the lists already
    accepted, so that 100,000 instances with the same apps check one list."""
    if isinstance(value, list | tuple):
        try:
            return checked[tuple(value)]
        except (KeyError, TypeError):  # new, or holding unhashable items (refused below)
            pass
    if not isinstance(value, list | tuple) or not all(isinstance(app, str) for app in value):
        raise ConfigError(label, f"{key}.apps: must be a list of app slugs")
    for app in value:
        if not _APP.match(app.strip().lower()):
            raise ConfigError(label, f"{key}.apps: {app!r} is not an app slug")
    apps = tuple(dict.fromkeys(app.strip().lower() for app in value))
    checked[tuple(value)] = apps
    return apps


MAX_NAME = 253  # characters of a domain name in text form, without the final dot (255 octets on the wire)
MAX_LABEL = 63
# Names cozyops writes or a CA asks for in front of an instance's domain (and of a flat parent, shorter).
DERIVED_PREFIXES = ("*.", "_cozyops.", "_acme-challenge.")
_LONGEST_PREFIX = max(map(len, DERIVED_PREFIXES))


def _check_derived_lengths(domain: str, apps: tuple[str, ...], mode: SubdomainMode, label: str, key: str) -> None:
    """Every name derived from ``domain`` must be a valid DNS name: checked here, not by the server
    in the middle of an UPDATE (a name too long fails the whole message, other instances' records too)."""
    longest_app = max(map(len, apps), default=0)
    first_length = domain.find(".")
    if (len(domain) + _LONGEST_PREFIX <= MAX_NAME and len(domain) + 1 + longest_app <= MAX_NAME
            and (mode is SubdomainMode.NESTED or first_length + 1 + longest_app <= MAX_LABEL)):
        return  # the common case, without building the names
    derived = [prefix + domain for prefix in DERIVED_PREFIXES]
    if mode is SubdomainMode.FLAT:
        first, _, rest = domain.partition(".")
        derived += [f"{first}-{app}.{rest}" for app in apps]
    else:
        derived += [f"{app}.{domain}" for app in apps]
    for name in derived:
        if len(name) > MAX_NAME:
            raise ConfigError(label, f"{key}.domain: {domain}: the name {name} derived from it is {len(name)} "
                              f"characters, more than {MAX_NAME}")
        first_label = name.split(".", 1)[0]
        if len(first_label) > MAX_LABEL:
            raise ConfigError(label, f"{key}.domain: {domain}: the name {name} derived from it has a label of "
                              f"{len(first_label)} characters, more than {MAX_LABEL}")


def _refuse_nested_below(seen: dict[str, int], zone: str, label: str) -> None:
    """Nested mode: an instance below another one takes over one of its app hosts (``drive.alice``
    beside ``alice``: alice's Drive would point at the other's server), or shadows its wildcard."""
    for domain, index in seen.items():
        parent = domain
        while parent != zone:
            parent = parent.partition(".")[2]
            above = seen.get(parent)
            if above is not None:
                raise ConfigError(
                    label, f"instances[{index}].domain: {domain} is below the instance {parent} "
                    f"(instances[{above}]): in nested mode it would take over {parent}'s app host {domain}",
                    "choose a name that is not below another instance",
                )


def _refuse_flat_app_host(items: list, index: int, domain: str, label: str) -> None:
    """Flat mode: a '-' in an instance's first label is refused; when the name is another instance's
    app host (``alice-drive`` beside ``alice`` with Drive), the line names both."""
    key = f"instances[{index}].domain"
    first, _, rest = domain.partition(".")
    owner_first, _, app = first.partition("-")
    owner = f"{owner_first}.{rest}"
    for other_index, other in enumerate(items):
        if not isinstance(other, dict) or str(other.get("domain", "")).strip().lower().rstrip(".") != owner:
            continue
        apps = other.get("apps", DEFAULT_APPS)
        if isinstance(apps, list | tuple) and app in (str(name).strip().lower() for name in apps):
            raise ConfigError(
                label, f"{key}: {domain} is the app host of {app} of the instance {owner} (instances[{other_index}]): "
                "in flat mode it would take it over", "no '-' in the first label in flat mode",
            )
    raise ConfigError(label, f"{key}: {domain}: no '-' in the first label in flat mode",
                      "cozy-stack splits <instance>-<app> on the first '-'")


def _read_inventory(root: Path) -> tuple[str, dict, _Vars]:
    """hosts.yml (or hosts.yaml): its label and content; group_vars/all's variables."""
    label = "hosts.yml"
    if not (root / label).exists() and (root / "hosts.yaml").exists():
        label = "hosts.yaml"
    data = _mapping(_read_yaml(root / label, label, required=False), label, "the file")
    all_files = _Vars()
    _load_group_vars(root, "all", all_files)
    return label, data, all_files


def host_vars(root: Path) -> dict[str, dict[str, Any]]:
    """Every host's variables as ``ansible-inventory -i <root>/hosts.yml --host H`` shows them."""
    root = root.resolve()
    hosts = _hosts(root, *_read_inventory(root))
    return {name: {key: setting.value for key, setting in host.vars.items.items()} for name, host in hosts.items()}


def load(root: Path) -> Fleet:
    """Read the fleet directory ``root`` into a :class:`Fleet`."""
    pending: list = []
    token = _pending_cache.set(pending)
    try:
        fleet = _load(root)
    finally:
        _pending_cache.reset(token)
    for write in pending:  # the fleet was accepted: its parsed files may be cached
        write()
    return fleet


def _load(root: Path) -> Fleet:
    root = root.resolve()
    hosts_label, hosts_data, all_files = _read_inventory(root)
    all_vars = _Vars()
    all_vars.merge(_mapping(_mapping(hosts_data.get("all"), hosts_label, "all").get("vars"), hosts_label, "all.vars"),
                   hosts_label)
    all_vars.items.update(all_files.items)
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
    servers = {host.name: _server(root, host) for host in _hosts(root, hosts_label, hosts_data, all_files).values()}
    instances = _instances(root, zone, mode, servers)
    return Fleet(name, root, zone, mode, dns, acme, servers, instances)
