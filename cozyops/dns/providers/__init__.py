"""DNS providers: the one interface between cozyops and whoever serves a fleet's zone.

In the manner of octoDNS's providers (read the zone, apply a plan's changes) and lego's DNS
challenge providers (present and clean up a TXT value), a provider:

- ``read()``: the zone as it is (record sets by relative name and type, the SOA serial, the
  ownership marks' values); a provider that cannot read its zone returns an empty one;
- ``apply(changes, on_batch)``: a plan's changes in batches (each one applied whole or not at
  all where the provider can; ``on_batch`` sees each outcome, which the orchestrator journals);
- ``change_txts(adds, deletes)``: ACME challenge TXT values added beside the others at their name
  and removed one by one (never by replacing the record set), as few requests as fit;
- ``soa_serial()``: the zone's serial as the provider serves it (propagation checks wait for it);
- ``describe()``, ``name``, ``zone``, ``where``: itself, for plans, journals and errors;
- ``writes``: whether cozyops writes the zone through it (``require_writes()`` raises the
  provider's own explanation when not).

A provider is one module of this package with a ``build(zone, settings, batch_size)`` function,
listed in ``MODULES`` under the name ``cozy_dns.provider`` gives it; the orchestrators (the DNS
manager, the challenge writer, the ACME DNS-01 solver) know providers only through this
interface. Each failure is one :class:`cozyops.errors.DnsError` line naming the zone and server
(never a secret).
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from cozyops.dns.plan import Change
from cozyops.dns.records import RRset
from cozyops.errors import CozyopsError

# cozy_dns.provider -> the module that builds it
MODULES = {
    "rfc2136": "cozyops.dns.providers.rfc2136",
    "manual": "cozyops.dns.providers.manual",
    "powerdns": "cozyops.dns.providers.powerdns",
    "lexicon": "cozyops.dns.providers.lexicon",
}


@dataclass
class ZoneData:
    """A zone as read: every record set, by (relative name, type)."""

    zone: str
    serial: int
    rrsets: dict[tuple[str, str], RRset]
    marks: dict[str, tuple[str, ...]] = field(default_factory=dict)  # TXT values at mark names

    def nameservers(self) -> list[str]:
        ns = self.rrsets.get(("@", "NS"))
        return sorted(ns.values) if ns else []

    def addresses(self, fqdn: str) -> list[str]:
        """The in-zone (glue) addresses of ``fqdn``, if it is in the zone."""
        suffix = "." + self.zone + "."
        if not fqdn.endswith(suffix) and fqdn != self.zone + ".":
            return []
        name = "@" if fqdn == self.zone + "." else fqdn[: -len(suffix)]
        found = []
        for rtype in ("A", "AAAA"):
            rrset = self.rrsets.get((name, rtype))
            found.extend(rrset.values if rrset else ())
        return found


@dataclass
class BatchOutcome:
    index: int
    changes: list[Change]
    ok: bool
    error: str | None = None
    seconds: float = 0.0
    fatal: bool = False  # the next batches would fail the same way: the apply stopped


@dataclass
class ApplyResult:
    batches: list[BatchOutcome] = field(default_factory=list)

    @property
    def applied(self) -> int:
        return sum(len(batch.changes) for batch in self.batches if batch.ok)

    @property
    def failed(self) -> list[BatchOutcome]:
        return [batch for batch in self.batches if not batch.ok]


class Provider(abc.ABC):
    """What every DNS provider offers (see the module's text)."""

    name: str = ""  # as cozy_dns.provider spells it
    zone: str = ""  # without the final dot, lowercase
    writes: bool = True  # cozyops writes the zone through it

    @property
    @abc.abstractmethod
    def where(self) -> str:
        """Where the zone is written (a server, an API), for messages."""

    def describe(self) -> str:
        return f"{self.name} provider of zone {self.zone} at {self.where}"

    def require_writes(self) -> None:
        """Raise, explaining why, when cozyops does not write this zone through the provider."""
        if not self.writes:
            raise CozyopsError(f"zone {self.zone}", f"cozyops does not write it through the {self.name} provider")

    @abc.abstractmethod
    def read(self) -> ZoneData:
        """The zone as it is now (empty for a provider that cannot read it)."""

    @abc.abstractmethod
    def soa_serial(self) -> int:
        """The zone's SOA serial, as the provider serves it."""

    @abc.abstractmethod
    def apply(self, changes: list[Change],
              on_batch: Callable[[BatchOutcome], None] | None = None) -> ApplyResult:
        """Apply a plan's changes in batches, ``on_batch`` called with each outcome."""

    @abc.abstractmethod
    def change_txts(self, adds: list[tuple[str, str, int]] = (), deletes: list[tuple[str, str]] = ()) -> int:
        """Add (fqdn, value, ttl) and delete (fqdn, value) TXT values, each beside the others at
        its name; returns the number of requests made."""

    def present_txt(self, fqdn: str, value: str, ttl: int = 60) -> None:
        """Add one TXT value at ``fqdn`` beside any others (lego's Present)."""
        self.change_txts(adds=[(fqdn, value, ttl)])

    def cleanup_txt(self, fqdn: str, value: str) -> None:
        """Remove this TXT value only; the other values at ``fqdn`` stay (lego's CleanUp)."""
        self.change_txts(deletes=[(fqdn, value)])


def build(kind: str, zone: str, settings: object, batch_size: int = 1000) -> Provider:
    """The provider ``kind`` (a ``cozy_dns.provider`` name) for ``zone`` with its settings."""
    module = importlib.import_module(MODULES[str(kind)])
    return module.build(zone, settings, batch_size)
