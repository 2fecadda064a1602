"""cozy.yml: where it is looked up, what the double reads in it, COZY_* overrides (cozy-stack.md §3, §1.1)."""

from __future__ import annotations

import ipaddress
import json
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


_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
_TOKEN = re.compile(r"""\s*(?:(?P<comment>/\*.*?\*/)|(?P<paren>[()|])|(?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)"""
                    r"""|(?P<number>-?[0-9]+)|(?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)|(?P<name>[A-Za-z_][A-Za-z0-9_]*))""",
                    re.S)


def _to_int(value) -> int:
    """``toInt64`` of ``funcs_map.go``: a string that is not an integer is 0, a bool 0 or 1."""
    if isinstance(value, str):
        try:
            return int(value, 10)
        except ValueError:
            return 0
    if isinstance(value, bool):
        return int(value)
    return int(value) if isinstance(value, (int, float)) else 0


def _div(a, b) -> int:
    a, b = _to_int(a), _to_int(b)
    if b == 0:
        raise ZeroDivisionError("runtime error: integer divide by zero")
    return int(a / b)  # Go truncates toward zero


def _mod(a, b) -> int:
    a, b = _to_int(a), _to_int(b)
    if b == 0:
        raise ZeroDivisionError("runtime error: integer divide by zero")
    return a - b * int(a / b)


def _mul(a, *rest) -> int:
    value = _to_int(a)
    for b in rest:
        value *= _to_int(b)
    return value


# pkg/config/config/funcs_map.go numericFuncsMap
TEMPLATE_FUNCS = {"add": lambda *a: sum(_to_int(v) for v in a), "sub": lambda a, b: _to_int(a) - _to_int(b),
                  "div": _div, "mod": _mod, "mul": _mul}


class TemplateError(Exception):
    """An error of the template; ``parse`` when Go's parser would refuse it, else at execution."""

    def __init__(self, message: str, parse: bool = True) -> None:
        super().__init__(message)
        self.parse = parse


def _tokens(text: str) -> list[tuple[str, str]]:
    found, at = [], 0
    while at < len(text):
        if text[at:].strip() == "":
            break
        match = _TOKEN.match(text, at)
        if not match:
            raise TemplateError(f"unexpected {text[at:].strip()[:1]!r} in command")
        at = match.end()
        kind = match.lastgroup
        if kind != "comment":
            found.append((kind, match.group(kind)))
    return found


def _value(token: tuple[str, str], tokens: list, context: dict):
    kind, text = token
    if kind == "number":
        return int(text)
    if kind == "string":
        return text[1:-1] if text.startswith("`") else json.loads(text)
    if kind == "field":
        if text == ".":
            return context
        node = context
        for part in text[1:].split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, dict) and node is context["Env"]:
                node = ""  # missingkey=zero on the environment map
            else:
                raise TemplateError(f"can't evaluate field {part}", parse=False)
        return node
    if kind == "paren" and text == "(":
        value = _pipeline(tokens, context, closing=True)
        return value
    raise TemplateError(f"unexpected {text!r} in operand")


def _command(tokens: list, context: dict, piped: list):
    kind, text = tokens.pop(0)
    if kind == "name":
        if text not in TEMPLATE_FUNCS:
            if text in ("if", "else", "end", "range", "with", "define", "template", "block", "len", "print",
                        "printf", "index", "and", "or", "not", "eq", "ne", "lt", "le", "gt", "ge"):
                raise TemplateError(f"{text!r} is not supported by the cozy-stack double's configuration templates")
            raise TemplateError(f'function "{text}" not defined')
        args = []
        while tokens and tokens[0] not in (("paren", ")"), ("paren", "|")):
            args.append(_value(tokens.pop(0), tokens, context))
        try:
            return TEMPLATE_FUNCS[text](*args, *piped)
        except TypeError:
            raise TemplateError(f"wrong number of args for {text}", parse=False) from None
        except ZeroDivisionError as error:
            raise TemplateError(f"error calling {text}: {error}", parse=False) from None
    if piped:
        raise TemplateError(f"can't give argument to non-function {text}")
    return _value((kind, text), tokens, context)


def _pipeline(tokens: list, context: dict, closing: bool = False):
    value, piped = None, []
    while True:
        if not tokens:
            if closing:
                raise TemplateError("unclosed left paren")
            raise TemplateError("missing value for command")
        value = _command(tokens, context, piped)
        if tokens and tokens[0] == ("paren", "|"):
            tokens.pop(0)
            piped = [value]
            continue
        if closing:
            if not tokens or tokens.pop(0) != ("paren", ")"):
                raise TemplateError("unclosed left paren")
        elif tokens:
            raise TemplateError(f"unexpected {tokens[0][1]!r} in operand")
        return value


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_template(text: str, name: str = "cozy.yml", env: dict | None = None) -> str:
    """The file as a Go ``text/template`` (``config.Setup``): ``.Env``, ``.NumCPU``, the functions add, sub,
    div, mod, mul, pipelines, parentheses, ``{{-``/``-}}`` trimming and comments; a missing variable of
    ``.Env`` is empty (``missingkey=zero``). if/range/with and the other built-ins are refused by name."""
    context = {"Env": dict(os.environ if env is None else env), "NumCPU": os.cpu_count() or 1}
    out, at = [], 0
    for match in _ACTION.finditer(text):
        before = text[at:match.start()]
        inner = match.group(1)
        if inner.startswith("- ") or inner.startswith("-\n") or inner.startswith("-\t"):
            before, inner = before.rstrip(" \t\r\n"), inner[1:]
        trim_after = inner.endswith(" -") or inner.endswith("\n-") or inner.endswith("\t-")
        if trim_after:
            inner = inner[:-1]
        out.append(before)
        line = text.count("\n", 0, match.start()) + 1
        try:
            tokens = _tokens(inner)
            if tokens:
                out.append(_text(_pipeline(tokens, context)))
        except (TemplateError, ValueError) as error:
            where = "Unable to open and parse configuration file template" if getattr(error, "parse", True) \
                else "Template error for config files"
            raise ConfigError(f"{where} {{path}}: template: {name}:{line}: {error}") from None
        at = match.end()
        if trim_after:
            while at < len(text) and text[at] in " \t\r\n":
                at += 1
    out.append(text[at:])
    return "".join(out)


def _load(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read the configuration file {path}: {error.strerror}") from None
    try:
        rendered = render_template(text, path.name)
    except ConfigError as error:
        raise ConfigError(str(error).replace("{path}", str(path), 1)) from None
    try:
        data = yaml.safe_load(rendered)
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
