"""Plans for any resource: a change's kind, key, before and after; safety; checksums. Pure.

A :class:`Change` names the kind of resource it changes (``dns``; later ``certificate``,
``instance``, ``server``), which one (its ``key``, a tuple), and the resource before and after
(``None`` before a creation and after a deletion), so that one list can hold the changes of every
kind and one checksum identify them all. Each kind keeps its own, richer change type (the DNS
planner's record changes: ``cozyops.dns.plan``) that gives this neutral form.

The checksum identifies a plan's changes (values before and after included), so that
``apply --checksum C`` applies only the plan that was reviewed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

CREATE, UPDATE, DELETE = "create", "update", "delete"
ACTIONS = (CREATE, UPDATE, DELETE)


class Change(NamedTuple):
    """One change of one resource."""

    kind: str  # dns, certificate, instance, server, ...
    action: str  # create, update or delete
    key: tuple  # which resource of that kind (for DNS: the name relative to the zone and the type)
    before: Any  # None for a creation
    after: Any  # None for a deletion


def checksum(header: Iterable[str], lines: Iterable[str]) -> str:
    """sha256 (first 16 hex digits) of the header lines, then each line, each ended by a newline.

    The caller gives the lines in a fixed order (sorted): the checksum of the same changes is the
    same whatever order they were planned in.
    """
    digest = hashlib.sha256("".join(f"{line}\n" for line in header).encode())
    batch: list[str] = []
    for line in lines:  # hashed in batches of lines: one update per line costs more than the hash
        batch.append(line)
        if len(batch) == 4096:
            batch.append("")
            digest.update("\n".join(batch).encode())
            batch.clear()
    if batch:
        batch.append("")
        digest.update("\n".join(batch).encode())
    return digest.hexdigest()[:16]


def counts(actions: Iterable[str]) -> dict[str, int]:
    found = dict.fromkeys(ACTIONS, 0)
    for action in actions:
        found[action] += 1
    return found


@dataclass(frozen=True)
class Safety:
    """Deletions plus updates above BOTH thresholds make a plan unsafe (``--force`` to apply)."""

    max_changes: int
    max_percent: float

    def verdict(self, risky: int, owned: int) -> str | None:
        """None when safe, else why not."""
        if risky > self.max_changes and risky > owned * self.max_percent / 100:
            percent = 100 * risky / owned if owned else 100.0
            return (
                f"deletes or updates {risky} of the {owned} records it owns ({percent:.0f} %), "
                f"more than {self.max_changes} and more than {self.max_percent:g} %"
            )
        return None


@dataclass
class Plan:
    """Changes of any kinds in one list, with one checksum (the fleet-wide plan)."""

    changes: list[Change] = field(default_factory=list)

    def counts(self, kind: str | None = None) -> dict[str, int]:
        return counts(change.action for change in self.changes if kind is None or change.kind == kind)

    @property
    def checksum(self) -> str:
        return checksum(["cozyops-plan 1"], sorted(repr(tuple(change)) for change in self.changes))
