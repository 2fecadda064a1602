"""The DNS plan: record changes, conflicts, malformed marks; safety and checksum. Pure.

A :class:`Change` creates, updates or deletes one DNS record set (a name and a type) or one
ownership mark; it gives its resource-neutral form (:class:`cozyops.plan.Change`: kind ``dns``,
key, before, after) for plans that hold every kind of change. The DNS plan's checksum and its JSON
are what ``cozyops dns plan`` has always shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from cozyops import plan as generic
from cozyops.dns.records import fqdn
from cozyops.plan import CREATE, DELETE, UPDATE, Safety

__all__ = ["CREATE", "DELETE", "UPDATE", "Change", "Conflict", "Plan", "Safety"]
KIND = "dns"


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

    @property
    def kind(self) -> str:
        return KIND

    @property
    def key(self) -> tuple[str, ...]:
        """The record set (name, type); for a mark, ``(name, "TXT", "mark")``: the fleet's own value there."""
        return (self.name, self.rtype, "mark") if self.mark else (self.name, self.rtype)

    @property
    def before(self) -> tuple | None:
        return None if self.action == CREATE else (self.old_ttl, self.old_values)

    @property
    def after(self) -> tuple | None:
        return None if self.action == DELETE else (self.ttl, self.values)

    def neutral(self) -> generic.Change:
        return generic.Change(KIND, self.action, self.key, self.before, self.after)

    def to_json(self, zone: str) -> dict:
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
        return {"name": fqdn(self.name, zone), "type": self.rtype, "owner": self.owner,
                "values": list(self.values), "reason": self.reason()}


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
        """Record changes per action (marks not counted)."""
        return generic.counts(change.action for change in self.changes if not change.mark)

    def neutral(self) -> list[generic.Change]:
        """The changes in their resource-neutral form, for a plan of every kind."""
        return [change.neutral() for change in self.changes]

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
            self._checksum = generic.checksum(["cozyops-dns-plan 1", self.fleet, self.zone],
                                              (repr(tuple(change)) for change in sorted(self.changes)))
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
