"""The edits of `cozyops install` written into the fleet directory (ruamel.yaml's round trip:
what the operator wrote, comments and key order included, stays as it is).

- ``group_vars/all.yml``: the settings the fleet does not have yet, added at its end;
- ``hosts.yml``: a new server, in group ``cozy_servers``;
- ``instances.yml``: the first instance, at the end of ``instances`` (``cozyops.instances.fleetfile``);
- ``.gitignore`` with ``.cozyops/`` (the fleet's state) when the directory is new.

Every file is replaced atomically, and only when something changes: writing the same edits twice
changes nothing (a run killed between two files finds the first one done).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from cozyops import files
from cozyops.errors import ConfigError
from cozyops.install.settings import Edits

HEADER = "# Written by `cozyops install`; yours to edit (docs/fleet.md, inventories/example/).\n"
SERVERS_GROUP = "cozy_servers"


def _yaml() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _load(path: Path, label: str) -> tuple[Any, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return CommentedMap(), ""
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(label, f"cannot read: {error}") from None
    try:
        data = _yaml().load(text)
    except Exception as error:  # noqa: BLE001 - ruamel's parser errors share no useful base
        raise ConfigError(label, f"not valid YAML ({str(error).splitlines()[0]})") from None
    if data is None:
        data = CommentedMap()
    if not isinstance(data, dict):
        raise ConfigError(label, "must be a mapping")
    return data, text


def _dump(data: Any, text: str) -> str:
    out = io.StringIO()
    _yaml().dump(data, out)
    body = out.getvalue()
    return body if text else HEADER + body


def _save(path: Path, data: Any, text: str) -> bool:
    new = _dump(data, text)
    if new == text:
        return False
    files.write_atomic(path, new)
    return True


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        mapping = CommentedMap()
        for key, item in value.items():
            mapping[key] = _plain(item)
        return mapping
    if isinstance(value, list | tuple):
        seq = CommentedSeq(_plain(item) for item in value)
        if all(isinstance(item, str | int) for item in value):
            seq.fa.set_flow_style()
        return seq
    return value


def write_settings(root: Path, settings: dict[str, Any]) -> bool:
    path = root / "group_vars" / "all.yml"
    data, text = _load(path, "group_vars/all.yml")
    for key, value in settings.items():
        if key not in data:
            data[key] = _plain(value)
    return _save(path, data, text)


def write_server(root: Path, name: str, variables: dict[str, Any]) -> bool:
    path = root / "hosts.yml"
    data, text = _load(path, "hosts.yml")
    top = data.setdefault("all", CommentedMap())
    if top is None:
        top = data["all"] = CommentedMap()
    children = top.setdefault("children", CommentedMap())
    if children is None:
        children = top["children"] = CommentedMap()
    group = children.setdefault(SERVERS_GROUP, CommentedMap())
    if group is None:
        group = children[SERVERS_GROUP] = CommentedMap()
    hosts = group.setdefault("hosts", CommentedMap())
    if hosts is None:
        hosts = group["hosts"] = CommentedMap()
    if not isinstance(hosts, dict):
        raise ConfigError("hosts.yml", f"all.children.{SERVERS_GROUP}.hosts: must be a mapping")
    if name not in hosts:
        hosts[name] = _plain(variables)
    return _save(path, data, text)


def write_instance(root: Path, entry: dict[str, Any]) -> bool:
    """The instance at the end of instances.yml, through the instances package's editor
    (``cozyops.instances.fleetfile``: what `cozyops instance add` writes); False when it is there."""
    from cozyops.instances import fleetfile

    if str(entry["domain"]).strip().lower().rstrip(".") in fleetfile.entries(root):
        return False
    fleetfile.add(root, entry)
    return True


def write(root: Path, edits: Edits) -> list[str]:
    """Apply ``edits`` to the fleet at ``root`` (created if new); the files changed."""
    root.mkdir(parents=True, exist_ok=True)
    changed = []
    gitignore = root / ".gitignore"
    if not gitignore.exists():
        files.write_atomic(gitignore, ".cozyops/\n")
        changed.append(".gitignore")
    if edits.settings and write_settings(root, edits.settings):
        changed.append("group_vars/all.yml")
    if edits.server_vars is not None and write_server(root, edits.server, edits.server_vars):
        changed.append("hosts.yml")
    if edits.instance is not None and write_instance(root, edits.instance):
        changed.append("instances.yml")
    return changed
