"""instances.yml written back with its comments, order and layout kept (ruamel.yaml's round trip).

``inventory.py`` reads the fleet; this module only edits instances.yml's ``instances`` list: it
adds an entry (at the end), removes one, or sets fields of one, and writes the file atomically.
What the operator wrote around the entries (comments, blank lines, key order, quoting) stays.
The edited file is checked again by the caller's ``inventory.load``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from cozyops import files
from cozyops.errors import ConfigError

FILE = "instances.yml"
# Key order of a new entry (what the example fleet and the docs show).
ORDER = ("domain", "server", "apps", "email", "locale", "tz", "quota", "context", "public_name", "blocked",
         "blocking_reason")


def _yaml() -> YAML:
    yaml = YAML()  # round trip
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _load(root: Path) -> tuple[YAML, Any, Path]:
    path = root / FILE
    yaml = _yaml()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        text = "instances: []\n"
    except OSError as error:
        raise ConfigError(FILE, f"cannot read: {error.strerror}") from None
    if _sequence_indent(text) is not None:
        offset = _sequence_indent(text)
        yaml.indent(mapping=2, sequence=offset + 2, offset=offset)
    try:
        data = yaml.load(text)
    except Exception as error:  # ruamel's parser errors have no common base worth naming
        raise ConfigError(FILE, f"not valid YAML ({str(error).splitlines()[0]})") from None
    if data is None:
        data = CommentedMap()
    if not isinstance(data, dict):
        raise ConfigError(FILE, "must be a mapping with an instances list")
    items = data.get("instances")
    if items is None or (isinstance(items, list) and not items):
        data["instances"] = CommentedSeq()
    elif not isinstance(items, list):
        raise ConfigError(FILE, "instances: must be a list")
    return yaml, data, path


def _sequence_indent(text: str) -> int | None:
    """How the file indents its list items under ``instances:`` (0 or 2 spaces before '-')."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("instances:"):
            for following in lines[index + 1:]:
                stripped = following.lstrip()
                if stripped.startswith("- "):
                    return len(following) - len(stripped)
                if stripped and not stripped.startswith("#"):
                    return None
    return None


def _write(yaml: YAML, data: Any, path: Path) -> None:
    out = io.StringIO()
    yaml.dump(data, out)
    files.write_atomic(path, out.getvalue())


def _index(data: Any, domain: str) -> int | None:
    for index, item in enumerate(data["instances"]):
        if isinstance(item, dict) and str(item.get("domain", "")).strip().lower().rstrip(".") == domain:
            return index
    return None


def _value(value: Any) -> Any:
    if isinstance(value, list | tuple):
        seq = CommentedSeq(value)
        seq.fa.set_flow_style()  # apps: [home, drive]
        return seq
    return value


def entries(root: Path) -> list[str]:
    """The domains of instances.yml, in order (as written)."""
    _, data, _ = _load(root)
    return [str(item.get("domain", "")).strip().lower() for item in data["instances"] if isinstance(item, dict)]


def _lines(text: str, data: Any) -> tuple[list[str], list[tuple[int, int, int]]]:
    """The file's lines and, per entry of ``instances``, (first line with the comments just above
    it, line of its '-', end line exclusive): an entry's own lines are those below its '-' that are
    blank or indented deeper than the '-'; comments at the '-''s column or left of it belong to
    what follows them (the next entry, or the end of the file)."""
    lines = text.splitlines(keepends=True)
    items = data["instances"]
    spans = []
    for index in range(len(items)):
        line = items.lc.item(index)[0]
        while line > 0 and not lines[line].lstrip().startswith("-"):
            line -= 1  # lc.item gives the entry's first key; its '-' may be a line above
        dash = len(lines[line]) - len(lines[line].lstrip())
        end = line + 1
        while end < len(lines):
            body = lines[end].strip()
            indent = len(lines[end]) - len(lines[end].lstrip())
            if body and indent <= dash:
                break
            end += 1
        while end > line + 1 and not lines[end - 1].strip():
            end -= 1  # blank lines after an entry separate it from what follows: left in place
        first = line
        while first > 0 and lines[first - 1].lstrip().startswith("#") \
                and len(lines[first - 1]) - len(lines[first - 1].lstrip()) <= dash:
            first -= 1
        spans.append((first, line, end))
    return lines, spans


def add(root: Path, entry: Mapping[str, Any]) -> None:
    """Append an instance (``domain`` and ``server`` at least) after the last entry; refused when
    the domain is there. The text around the entries is left as it was, byte for byte."""
    domain = str(entry["domain"]).strip().lower().rstrip(".")
    yaml, data, path = _load(root)
    if _index(data, domain) is not None:
        raise ConfigError(FILE, f"{domain} is already an instance of the fleet")
    item = CommentedMap()
    for key in ORDER:
        if entry.get(key) is not None:
            item[key] = _value(entry[key])
    for key, value in entry.items():
        if key not in item and value is not None:
            item[key] = _value(value)
    item["domain"] = domain
    if not data["instances"]:  # an empty (or absent) list: written by ruamel, the rest kept
        data["instances"] = CommentedSeq([item])
        _write(yaml, data, path)
        return
    lines, spans = _lines(path.read_text(encoding="utf-8-sig"), data)
    _, last_dash, last_end = spans[-1]
    dash = len(lines[last_dash]) - len(lines[last_dash].lstrip())
    out = io.StringIO()
    entry_yaml = _yaml()
    entry_yaml.indent(mapping=2, sequence=4, offset=2)
    entry_yaml.dump(CommentedSeq([item]), out)
    block = [" " * (dash - 2) + line + "\n" if line.strip() else "\n"
             for line in out.getvalue().splitlines()] if dash >= 2 else \
        [line[2:] + "\n" if line.strip() else "\n" for line in out.getvalue().splitlines()]
    if last_end and not lines[last_end - 1].endswith("\n"):
        lines[last_end - 1] += "\n"
    lines[last_end:last_end] = block
    files.write_atomic(path, "".join(lines))


def remove(root: Path, domain: str) -> bool:
    """Remove the instance's entry with the comment lines just above it; False when absent. The
    rest of the file is left as it was, byte for byte."""
    domain = domain.strip().lower().rstrip(".")
    _, data, path = _load(root)
    index = _index(data, domain)
    if index is None:
        return False
    lines, spans = _lines(path.read_text(encoding="utf-8-sig"), data)
    first, _, end = spans[index]
    del lines[first:end]
    if len(spans) == 1:  # the last one: an empty list, not a null
        key = next(i for i, line in enumerate(lines) if line.startswith("instances:"))
        lines[key] = "instances: []\n"
    files.write_atomic(path, "".join(lines))
    return True


def update(root: Path, domain: str, changes: Mapping[str, Any]) -> None:
    """Set (or, with None, drop) fields of the instance's entry; its other keys and comments stay."""
    domain = domain.strip().lower().rstrip(".")
    yaml, data, path = _load(root)
    index = _index(data, domain)
    if index is None:
        raise ConfigError(FILE, f"{domain} is not an instance of the fleet")
    item = data["instances"][index]
    for key, value in changes.items():
        if value is None:
            item.pop(key, None)
        else:
            item[key] = _value(value)
    _write(yaml, data, path)
