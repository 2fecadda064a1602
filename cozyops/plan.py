"""Plans: the changes to make, their safety and their checksum. Pure.

A :class:`Change` creates, updates or deletes one DNS record set (a name and a type) or one
ownership mark. The checksum identifies a plan's changes (values before and after included), so
that ``apply --checksum C`` applies only the plan that was reviewed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import NamedTuple

CREATE, UPDATE, DELETE = "create", "update", "delete"


class Change(NamedTuple):
    action: str
    name: str  # relative to the zone
    rtype: str
    ttl: int | None  # after (None for a deletion)
    values: tuple[str, ...]  # after
    old_ttl: int | None  # before (None for a creation)
    old_values: tuple[str, ...]  # before
    group: str  # the ownership mark this change goes with: applied in the same message
    mark: bool = False  # a change of the fleet's own mark (one TXT value), not of a record

    def to_json(self, zone: str) -> dict:
        from cozyops.dns.records import fqdn

        data: dict = {"action": self.action, "name": fqdn(self.name, zone), "type": self.rtype}
        if self.action != DELETE:
            data["ttl"], data["values"] = self.ttl, list(self.values)
        if self.action != CREATE:
            data["old"] = {"ttl": self.old_ttl, "values": list(self.old_values)}
        if self.mark:
            data["mark"] = True
        return data


class Conflict(NamedTuple):
    """A record the fleet wants but may not write: it belongs to another owner."""

    name: str
    rtype: str
    owner: str | None  # another fleet, or None: not marked (written by hand or another tool)
    values: tuple[str, ...]

    def reason(self) -> str:
        if self.owner:
            return f"belongs to fleet {self.owner}"
        return "exists without a cozyops mark (written by hand or by another tool)"

    def to_json(self, zone: str) -> dict:
        from cozyops.dns.records import fqdn

        return {"name": fqdn(self.name, zone), "type": self.rtype, "owner": self.owner,
                "values": list(self.values), "reason": self.reason()}


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
    fleet: str
    zone: str
    provider: str
    changes: list[Change] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    owned: int = 0  # record sets the fleet owns in the zone now (marks not counted)
    serial: int | None = None  # the zone's SOA serial when it was read
    malformed: list = field(default_factory=list)  # ownership marks ignored (records.Mark, problem set)
    _checksum: str | None = field(default=None, repr=False)

    @property
    def record_changes(self) -> list[Change]:
        return [change for change in self.changes if not change.mark]

    def counts(self) -> dict[str, int]:
        counts = {CREATE: 0, UPDATE: 0, DELETE: 0}
        for change in self.changes:
            if not change.mark:
                counts[change.action] += 1
        return counts

    @property
    def risky(self) -> int:
        counts = self.counts()
        return counts[UPDATE] + counts[DELETE]

    def unsafe(self, safety: Safety) -> str | None:
        return safety.verdict(self.risky, self.owned)

    @property
    def checksum(self) -> str:
        """sha256 (first 16 hex digits) of the fleet, the zone and every change, before and after."""
        if self._checksum is None:
            digest = hashlib.sha256(f"cozyops-dns-plan 1\n{self.fleet}\n{self.zone}\n".encode())
            for change in sorted(self.changes):
                digest.update(repr(tuple(change)).encode())
                digest.update(b"\n")
            self._checksum = digest.hexdigest()[:16]
        return self._checksum

    def to_json(self) -> dict:
        return {
            "fleet": self.fleet,
            "zone": self.zone,
            "provider": self.provider,
            "serial": self.serial,
            "checksum": self.checksum,
            "summary": {**self.counts(), "conflicts": len(self.conflicts), "owned": self.owned},
            "changes": [change.to_json(self.zone) for change in self.changes],
            "conflicts": [conflict.to_json(self.zone) for conflict in self.conflicts],
            "malformed": [mark.to_json(self.zone) for mark in self.malformed],
        }
