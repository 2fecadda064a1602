"""DNS-01 on the fleet's DNS provider: publish many challenges at once, wait, clean up.

The TXT values of every order in a run travel together: grouped by the zone that takes them
(the fleet's zone, or the delegated challenge zone when ``_acme-challenge`` names are CNAMEs), one
UPDATE message per zone (more only past ~48 KB, about 250 certificates), each value added beside
the others at its name (the apex and the wildcard of one certificate share a name). Then every
authoritative server of each zone must serve the zone's new serial (a server serves a zone
version whole, so that covers every value). Cleanup removes exactly the values published.

Every value is journaled in the fleet's state (``journal``) before the message that adds it is
sent, and forgotten once removed: a run killed in between leaves its values journaled, and the next
run removes them first (:meth:`Dns01Solver.sweep`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cozyops import state
from cozyops.dns import propagation
from cozyops.dns.challenge import CHALLENGE_TTL, ChallengeWriter
from cozyops.dns.providers import Provider
from cozyops.errors import DnsError


@dataclass
class Published:
    """What a publish wrote, per provider: (fqdn, value)."""

    values: dict[int, tuple[Provider, list[tuple[str, str]]]] = field(default_factory=dict)
    messages: int = 0

    def add(self, provider: Provider, fqdn: str, value: str) -> None:
        self.values.setdefault(id(provider), (provider, []))[1].append((fqdn, value))


class Dns01Solver:
    def __init__(self, writer: ChallengeWriter, servers_for: Callable[[Provider], list[tuple[str, str]]],
                 timeout: float = 120.0, journal: state.Challenges | None = None) -> None:
        self.writer = writer
        self.journal = journal
        self.servers_for = servers_for
        self.timeout = timeout
        self._targets: dict[str, tuple[str, Provider]] = {}

    def target(self, domain: str) -> tuple[str, Provider]:
        """Where ``domain``'s TXT goes; a DnsError naming the name when nowhere the fleet may write."""
        key = domain.removeprefix("*.")
        if key not in self._targets:
            self._targets[key] = self.writer.target(domain)
        return self._targets[key]

    def publish(self, items: list[tuple[str, str]]) -> Published:
        """Add every (domain, value); one UPDATE per zone. On failure, nothing of the call stays."""
        published = Published()
        for domain, value in items:
            fqdn, provider = self.target(domain)
            published.add(provider, fqdn, value)
        done = Published()
        try:
            for provider, values in published.values.values():
                if self.journal is not None:
                    self.journal.add(provider.zone, values)
                done.values[id(provider)] = (provider, values)
                done.messages += provider.change_txts(adds=[(fqdn, value, CHALLENGE_TTL) for fqdn, value in values])
        except BaseException:
            self.cleanup(done)
            raise
        return done

    def wait(self, published: Published, deadline: float | None = None) -> None:
        """Until every authoritative server of each zone serves the zone's serial after the publish."""
        timeout = self.timeout if deadline is None else deadline
        for provider, _ in published.values.values():
            serial = provider.soa_serial()
            servers = self.servers_for(provider)
            reports = propagation.wait(servers, provider.zone, serial, [], timeout)
            late = [report for report in reports if not report.ok]
            if late:
                raise DnsError(
                    f"zone {provider.zone}", "challenge records not served by every authoritative server: "
                    + "; ".join(f"{report.name} ({report.address}): {report.summary()}" for report in late))

    def cleanup(self, published: Published) -> list[str]:
        """Remove every value published (each provider tried); the errors, if any."""
        problems = []
        for provider, values in published.values.values():
            for attempt in range(3):
                try:
                    provider.change_txts(deletes=values)
                    if self.journal is not None:
                        self.journal.remove(provider.zone, values)
                    break
                except DnsError as error:
                    if attempt == 2:
                        problems.append(str(error))
                    else:
                        time.sleep(0.2)
        return problems

    def sweep(self) -> list[str]:
        """Remove the values an interrupted run left (journaled, never cleaned up); the problems."""
        if self.journal is None:
            return []
        return self.writer.sweep(self.journal.db)
