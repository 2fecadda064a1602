"""cozy.yml: where it is looked up, what the double reads in it, COZY_* overrides (cozy-stack.md §3, §1.1)."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

EXTENSIONS = (".yaml", ".yml", ".json")
DEFAULT_SECRET_FILENAME = "cozy-admin-passphrase"


class ConfigError(Exception):
    """A configuration that cozy-stack would refuse at start-up."""


def search_dirs() -> list[Path]:
    """§3 / §2.1: ``.``, ``.cozy``, ``$HOME/.cozy``, ``$HOME/.config/cozy``, ``$XDG_CONFIG_HOME/cozy``,
    ``/etc/cozy``."""
    home = os.environ.get("HOME", "")
    dirs = [Path("."), Path(".cozy")]
    if home:
        dirs += [Path(home) / ".cozy", Path(home) / ".config" / "cozy"]
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg:
        dirs.append(Path(xdg) / "cozy")
    dirs.append(Path("/etc/cozy"))
    return dirs


def find_config_file(explicit: str | None) -> Path | None:
    """``-c/--config`` forces one file; else the first ``cozy.<ext>`` of the search path wins."""
    if explicit:
        return Path(explicit)
    for directory in search_dirs():
        for ext in EXTENSIONS:
            candidate = directory / f"cozy{ext}"
            if candidate.is_file():
                return candidate
    return None


_TEMPLATE = re.compile(r"\{\{\s*\.(Env\.([A-Za-z_][A-Za-z0-9_]*)|NumCPU)\s*\}\}")


def render_template(text: str) -> str:
    """The file is a Go text/template with ``.Env`` and ``.NumCPU`` (§3); the double knows those two."""

    def value(match: re.Match) -> str:
        if match.group(1) == "NumCPU":
            return str(os.cpu_count() or 1)
        return os.environ.get(match.group(2), "")

    return _TEMPLATE.sub(value, text)


def _load(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read the configuration file {path}: {error.strerror}") from None
    try:
        data = yaml.safe_load(render_template(text))
    except yaml.YAMLError as error:
        raise ConfigError(f"the configuration file {path} is not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"the configuration file {path} is not a mapping")
    return data


def _merge(base: dict, top: dict) -> dict:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _get(data: dict, dotted: str):
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


@dataclass
class Config:
    file: Path | None
    host: str = "localhost"
    port: int = 8080
    admin_host: str = "localhost"
    admin_port: int = 6060
    secret_filename: str = DEFAULT_SECRET_FILENAME
    couchdb_url: str = "http://localhost:5984/"
    fs_url: str = ""
    subdomains: str = "nested"
    trusted_private_networks: list = field(default_factory=list)
    raw: dict = field(default_factory=dict)

    @property
    def fs_root(self) -> Path:
        return fs_root(self.fs_url)

    def secret_file(self) -> Path | None:
        """§2.1: ``admin.secret_filename`` searched in the configuration directories, first found wins.

        The double also looks next to the configuration file last (the reference is silent on a
        ``--config`` file outside those directories).
        """
        name = self.secret_filename
        dirs = search_dirs()
        if self.file is not None and str(self.file) != os.devnull:
            dirs.append(self.file.parent)
        for directory in dirs:
            candidate = directory / name
            if candidate.is_file():
                return candidate
        return None


def fs_root(url: str) -> Path:
    """``fs.url``: ``file:///dir`` or a plain absolute path, absolute and not ``/`` (§3)."""
    if url.startswith(("swift://", "swift+https://", "swift+http://")):
        raise ConfigError(f"fs.url {url}: Swift is not supported by the cozy-stack double (file:// only)")
    path = unquote(urlsplit(url).path) if url.startswith("file://") else url
    if not path or not os.path.isabs(path) or os.path.normpath(path) == "/":
        raise ConfigError(f"fs.url {url!r}: must be an absolute directory other than /")
    return Path(os.path.normpath(path))


def load(explicit: str | None, overrides: dict | None = None, env: dict | None = None) -> Config:
    """Defaults < cozy.yml (+ ``<file>.local``) < ``COZY_*`` environment < command-line flags."""
    env = os.environ if env is None else env
    path = find_config_file(explicit)
    data: dict = {}
    if path is not None:
        data = _load(path)
        local = Path(str(path) + ".local")
        if local.is_file():
            data = _merge(data, _load(local))
    cfg = Config(file=path, raw=data)
    keys = {
        "host": "host",
        "port": "port",
        "admin.host": "admin_host",
        "admin.port": "admin_port",
        "admin.secret_filename": "secret_filename",
        "couchdb.url": "couchdb_url",
        "fs.url": "fs_url",
        "subdomains": "subdomains",
    }
    for dotted, attr in keys.items():
        value = _get(data, dotted)
        env_value = env.get("COZY_" + dotted.upper().replace(".", "_"))
        if env_value:
            value = env_value
        if overrides and overrides.get(attr) is not None:
            value = overrides[attr]
        if value is not None and value != "":
            setattr(cfg, attr, value)
    for attr in ("port", "admin_port"):
        try:
            setattr(cfg, attr, int(getattr(cfg, attr)))
        except (TypeError, ValueError):
            raise ConfigError(f"{attr.replace('_', '.')}: not a port number: {getattr(cfg, attr)!r}") from None
    if cfg.subdomains not in ("nested", "flat"):
        raise ConfigError(f'subdomains: must be "nested" or "flat", not {cfg.subdomains!r}')
    if not cfg.fs_url:
        # §3: with no configuration, serve uses file://<dir of the binary>/storage.
        cfg.fs_url = "file://" + str(Path(__file__).resolve().parent.parent / "storage")
    networks = _get(data, "safe_http.trusted_private_networks") or []
    try:
        cfg.trusted_private_networks = [ipaddress.ip_network(str(n), strict=False) for n in networks]
    except ValueError as error:
        raise ConfigError(f"safe_http.trusted_private_networks: {error}") from None
    return cfg


def listen_addresses(host: str) -> list[str]:
    """§3: ``localhost`` means 127.0.0.1 and [::1]; ``0.0.0.0``/``[::]`` all addresses."""
    host = host.strip("[]")
    if host == "localhost":
        return ["127.0.0.1", "::1"]
    return [host]


def scheme_host(value: str, port: int) -> tuple[str, str, int]:
    """``--admin-host`` may be a URL like ``https://host:6060`` (§1.1)."""
    if "://" in value:
        parts = urlsplit(value)
        return parts.scheme, parts.hostname or "localhost", parts.port or port
    return "http", value, port
