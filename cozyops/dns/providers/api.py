"""What the providers that reach a zone through an HTTP API share (PowerDNS, dns-lexicon).

Neither API takes RFC 2136's prerequisites, so each apply reads the zone afresh and checks, batch
by batch, that every record set a change touches is still what the plan saw (absent for a
creation); a batch that fails the check is skipped, like an UPDATE whose prerequisites fail, and
re-planning converges. What remains is the window between that read and the write.

An ownership mark is one TXT value among other fleets' values at its name: these APIs replace a
record set whole, so the new set is computed from the current one (:func:`merge_txt`).
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from cozyops.dns import records
from cozyops.dns.plan import CREATE, DELETE, Change
from cozyops.dns.providers import ApplyResult, BatchOutcome
from cozyops.dns.records import RRset
from cozyops.errors import ConfigError


def load_secret(path: Path, what: str) -> str:
    """The secret in ``path`` (its first line), or in the environment for ``env:VARIABLE``."""
    text = str(path)
    if text.startswith("env:"):
        value = os.environ.get(text[4:], "")
        if not value:
            raise ConfigError(what, f"the environment variable {text[4:]} is not set")
        return value.strip()
    try:
        value = path.read_text().strip()
    except OSError as error:
        raise ConfigError(what, f"{path}: {error.strerror}") from None
    if not value:
        raise ConfigError(what, f"{path} is empty")
    return value.splitlines()[0].strip()


def group_batches(changes: list[Change], batch_size: int) -> list[list[Change]]:
    """Whole ownership groups, at most ``batch_size`` changes each (a larger group alone)."""
    groups: dict[str, list[Change]] = {}
    for change in changes:
        groups.setdefault(change.group, []).append(change)
    batches: list[list[Change]] = []
    current: list[Change] = []
    for group in groups.values():
        if current and len(current) + len(group) > batch_size:
            batches.append(current)
            current = []
        current.extend(group)
    if current:
        batches.append(current)
    return batches


def apply_batches(
    changes: list[Change], batch_size: int, zone: dict[tuple[str, str], RRset],
    write: Callable[[list[Change]], None], on_batch: Callable[[BatchOutcome], None] | None,
    partial: bool = False,
) -> ApplyResult:
    """Each batch checked against ``zone`` (read afresh by the caller), then ``write``-n; a stale
    batch is skipped and reported, the others go on; a failure of ``write`` (a DnsError) is
    reported with its batch (``partial``: the batch may be half applied) and raised."""
    result = ApplyResult()

    def report(outcome: BatchOutcome) -> None:
        result.batches.append(outcome)
        if on_batch:
            on_batch(outcome)

    for index, batch in enumerate(group_batches(changes, batch_size)):
        started = time.monotonic()
        changed = stale(batch, zone)
        if changed:
            report(BatchOutcome(index, batch, False,
                                f"the zone changed since it was read ({', '.join(changed[:3])}); nothing of "
                                "this batch was applied (plan and apply again)", time.monotonic() - started))
            continue
        try:
            write(batch)
        except Exception as error:
            why = f"{error} (part of this batch may be applied: plan again)" if partial else str(error)
            report(BatchOutcome(index, batch, False, why, time.monotonic() - started, True))
            raise
        report(BatchOutcome(index, batch, True, None, time.monotonic() - started))
    return result


def stale(batch: list[Change], zone: dict[tuple[str, str], RRset]) -> list[str]:
    """The record sets of ``batch`` that are no longer what the plan saw (``name TYPE`` each)."""
    found = []
    for change in batch:
        if change.mark:
            continue
        have = zone.get((change.name, change.rtype))
        if change.action == CREATE:
            if have is not None:
                found.append(f"{change.name} {change.rtype}")
        elif have is None or tuple(sorted(have.values)) != tuple(sorted(change.old_values)):
            found.append(f"{change.name} {change.rtype}")
    return found


def merge_txt(current: tuple[str, ...], change: Change) -> tuple[str, ...]:
    """The TXT values at a mark's name after one mark change: its old value out, its new one in,
    every other fleet's value kept."""
    values = [value for value in current if change.action == CREATE or value != change.old_values[0]]
    if change.action != DELETE and change.values[0] not in values:
        values.append(change.values[0])
    return tuple(sorted(values))


def after(batch: list[Change], zone: dict[tuple[str, str], RRset], ttl: int) -> dict[tuple[str, str], RRset | None]:
    """Each record set the batch changes, as it must be afterwards (None: deleted)."""
    result: dict[tuple[str, str], RRset | None] = {}
    for change in batch:
        key = (change.name, change.rtype)
        if change.mark:
            before = result.get(key, zone.get(key))
            values = merge_txt(before.values if before else (), change)
            result[key] = RRset(change.name, "TXT", change.ttl or (before.ttl if before else ttl), values) \
                if values else None
        elif change.action == DELETE:
            result[key] = None
        else:
            result[key] = RRset(change.name, change.rtype, change.ttl or ttl, tuple(change.values))
    return result


def txt_after(adds: list[tuple[str, str, int]], deletes: list[tuple[str, str]], zone_name: str,
              zone: dict[tuple[str, str], RRset]) -> dict[tuple[str, str], RRset | None]:
    """ACME challenge TXT record sets after adding and removing values, the others kept."""
    result: dict[tuple[str, str], RRset | None] = {}

    def current(name: str) -> RRset | None:
        key = (name, "TXT")
        return result[key] if key in result else zone.get(key)

    for fqdn, value, ttl in adds:
        name = relative(fqdn, zone_name)
        have = current(name)
        text = quote_txt(value)
        values = tuple(sorted({*(have.values if have else ()), text}))
        result[(name, "TXT")] = RRset(name, "TXT", have.ttl if have else ttl, values)
    for fqdn, value in deletes:
        name = relative(fqdn, zone_name)
        have = current(name)
        values = tuple(v for v in (have.values if have else ()) if v != quote_txt(value))
        result[(name, "TXT")] = RRset(name, "TXT", have.ttl, values) if values and have else None
    return result


def quote_txt(value: str) -> str:
    """One TXT string in presentation form (as dnspython prints it)."""
    return records.canonical("TXT", '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')


def relative(fqdn: str, zone: str) -> str:
    name = fqdn.rstrip(".").lower()
    if name != zone and not name.endswith("." + zone):
        raise ValueError(f"{fqdn} is not in the zone {zone}")
    return records.relative(name, zone)


# TXT values made of plain quoted strings (printable ASCII, no quote or backslash inside): already
# in the form dnspython prints, as PowerDNS and cozyops write them (marks, challenge values).
_PLAIN_TXT = re.compile(r'"[ !#-\[\]-~]*"(?: "[ !#-\[\]-~]*")*')


@functools.lru_cache(maxsize=4096)
def _parsed(rtype: str, text: str) -> str:
    try:
        return records.canonical(rtype, text)
    except Exception:  # noqa: BLE001 - a type or form dnspython does not know: compared as text
        return text


def canonical(rtype: str, text: str) -> str:
    """A value as read from an API, in the form records compare in (unparsable ones as they are).

    Parsing by dnspython costs about 20 us a value: plain TXT values are taken as they are, and the
    others (addresses, CAA: few distinct values in a fleet's zone) are parsed once each."""
    if rtype == "TXT" and _PLAIN_TXT.fullmatch(text):
        return text
    return _parsed(rtype, text)
