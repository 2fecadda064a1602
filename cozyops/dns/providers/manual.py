"""The manual provider: the operator's DNS host takes no updates from cozyops.

cozyops reads nothing and writes nothing: the plan is the whole set of records the fleet needs
(against an empty zone), which `cozyops dns plan` prints as a zone-file snippet to paste at the
DNS host; `cozyops dns check` then asks the zone's public authoritative servers. Writing through
it raises one line saying so. ACME challenges need ``cozy_dns.acme_challenge`` (a delegation by
CNAME to a zone some other provider writes).
"""

from __future__ import annotations

from collections.abc import Callable

from cozyops.dns.providers import ApplyResult, BatchOutcome, Provider, ZoneData
from cozyops.errors import CozyopsError
from cozyops.plan import Change


def build(zone: str, settings: object = None, batch_size: int = 1000) -> Manual:
    return Manual(zone)


class Manual(Provider):
    name = "manual"
    writes = False

    def __init__(self, zone: str) -> None:
        self.zone = zone.rstrip(".").lower()

    @property
    def where(self) -> str:
        return "the operator's DNS host"

    def describe(self) -> str:
        return f"manual provider of zone {self.zone}: records are pasted at the DNS host by the operator"

    def require_writes(self) -> None:
        raise self._refused()

    def _refused(self) -> CozyopsError:
        return CozyopsError(
            f"zone {self.zone}", "its DNS provider is manual: cozyops does not write its zone",
            "paste the records of `cozyops dns plan` at your DNS host, then run `cozyops dns check`",
        )

    def read(self) -> ZoneData:
        """Nothing can be read: the plan is made against an empty zone."""
        return ZoneData(self.zone, 0, {})

    def soa_serial(self) -> int:
        raise self._refused()

    def apply(self, changes: list[Change], on_batch: Callable[[BatchOutcome], None] | None = None) -> ApplyResult:
        if changes:
            self.require_writes()
        return ApplyResult()

    def change_txts(self, adds: list[tuple[str, str, int]] = (), deletes: list[tuple[str, str]] = ()) -> int:
        if adds or deletes:
            self.require_writes()
        return 0
