"""The orchestrator of a fleet's DNS: plan and apply.

It ties the pure parts (desired records, planner, safety, checksum) to the seams with side
effects (the DNS provider, through :mod:`cozyops.dns.providers`' interface only; the
authoritative servers; the fleet's state). It never prints: long steps take callbacks, failures
are raised as :class:`CozyopsError`. An apply also removes the ACME challenge values an
interrupted certificate run left (journaled in the fleet's state).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cozyops import planner, state
from cozyops.dns import propagation, providers, records
from cozyops.dns.challenge import ChallengeWriter
from cozyops.dns.providers import ApplyResult, BatchOutcome, Provider, ZoneData
from cozyops.errors import CozyopsError, UnsafePlanError
from cozyops.model import DnsProviderKind, Fleet
from cozyops.plan import CREATE, UPDATE, Plan, Safety


@dataclass
class ApplyReport:
    plan: Plan
    result: ApplyResult = field(default_factory=ApplyResult)
    propagation: list[propagation.ServerReport] = field(default_factory=list)
    waited: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def propagated(self) -> bool:
        return all(report.ok for report in self.propagation)


class DnsManager:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.zone_data: ZoneData | None = None
        self._desired: list[records.RRset] | None = None
        self.cleanup_problems: list[str] = []  # challenge values left by an interrupted run, not removed
        self._provider: Provider | None = None

    @property
    def manual(self) -> bool:
        """The fleet's provider does not write its zone: the operator pastes the records."""
        return not self.provider().writes

    @property
    def safety(self) -> Safety:
        return Safety(self.fleet.dns.unsafe_changes, self.fleet.dns.unsafe_percent)

    def desired(self) -> list[records.RRset]:
        if self._desired is None:
            self._desired = records.desired(self.fleet)
        return self._desired

    def provider(self) -> Provider:
        """The fleet's DNS provider (``cozy_dns.provider``)."""
        if self._provider is None:
            dns = self.fleet.dns
            self._provider = providers.build(dns.provider, self.fleet.zone, dns.update, dns.batch_size)
        return self._provider

    def writer(self) -> Provider:
        """The provider, when cozyops writes the zone through it (else its one-line reason)."""
        provider = self.provider()
        try:
            provider.require_writes()
        except CozyopsError as error:
            raise CozyopsError(f"fleet {self.fleet.name}", error.reason, error.hint) from None
        return provider

    @contextlib.contextmanager
    def locked(self, command: str = "") -> Iterator[None]:
        with state.fleet_lock(self.fleet.state_dir, self.fleet.name, command):
            yield

    # -- plan ----------------------------------------------------------------------------------

    def plan(self, adopt: bool = False) -> Plan:
        """Desired records against the zone as the provider reads it (a provider that does not
        write the zone reads it empty, and the plan carries no ownership marks)."""
        provider = self.provider()
        self.zone_data = provider.read()
        if not provider.writes:
            return planner.plan_dns(self.fleet.name, self.fleet.zone, provider.name, self.desired(), {}, marks=False)
        return planner.plan_dns(
            self.fleet.name, self.fleet.zone, provider.name, self.desired(), self.zone_data.rrsets,
            serial=self.zone_data.serial, adopt=adopt, mark_ttl=self.fleet.dns.ttl, marks_index=self.zone_data.marks,
        )

    def snippet(self) -> str:
        header = (f"DNS records of fleet {self.fleet.name} for zone {self.fleet.zone} "
                  f"({self.fleet.subdomains} subdomains), written by cozyops.\n"
                  "Paste them into the zone at your DNS host, then run `cozyops dns check`.")
        return records.zone_snippet(self.fleet.zone, self.desired(), header)

    def approve(self, plan: Plan, checksum: str | None, force: bool) -> None:
        """Refuse a plan other than the reviewed one, or an unsafe one without ``force``."""
        if checksum is not None and checksum.strip().lower() != plan.checksum:
            raise CozyopsError(
                f"plan for zone {plan.zone}", f"its checksum is now {plan.checksum}, not {checksum.strip()}",
                "the zone or the fleet changed since the review: run `cozyops dns plan` again",
            )
        verdict = plan.unsafe(self.safety)
        if verdict and not force:
            raise UnsafePlanError(
                f"plan for zone {plan.zone} (fleet {plan.fleet})", verdict,
                "review it with `cozyops dns plan`; --force applies it; thresholds: "
                "cozy_dns.unsafe_changes, cozy_dns.unsafe_percent",
            )

    # -- apply ---------------------------------------------------------------------------------

    def apply(self, plan: Plan, on_batch: Callable[[BatchOutcome], None] | None = None) -> ApplyResult:
        """Apply the plan's changes; every batch is journaled in the fleet's state. Then remove the
        ACME challenge values an interrupted certificate run left (journaled, so only the fleet's own)."""
        provider = self.writer()
        journal = state.Journal(self.fleet.state_dir)
        subject = f"{plan.zone} at {provider.where}"

        def record(outcome: BatchOutcome) -> None:
            detail = None if outcome.ok else [change.to_json(plan.zone) for change in outcome.changes]
            journal.record("dns-batch", subject, "ok" if outcome.ok else "failed", len(outcome.changes),
                           outcome.error, detail)
            if on_batch:
                on_batch(outcome)

        try:
            result = provider.apply(plan.changes, record)
            self.cleanup_problems = self.challenges().sweep(journal.db)
            return result
        finally:
            journal.close()

    def servers(self) -> list[tuple[str, str]]:
        """The authoritative servers of the zone, as (name, address)."""
        explicit = self.fleet.dns.nameservers
        if explicit:
            return propagation.authoritative_servers(self.fleet.zone, explicit)
        data = self.zone_data or self.provider().read()
        self.zone_data = data
        if data.nameservers():
            return propagation.authoritative_servers(self.fleet.zone, (), data.nameservers(), data.addresses)
        return propagation.authoritative_servers(self.fleet.zone)

    def wait(
        self, plan: Plan, deadline: float | None = None,
        progress: Callable[[list[propagation.ServerReport]], None] | None = None,
    ) -> list[propagation.ServerReport]:
        """Wait until every authoritative server serves the plan's records (or the deadline)."""
        serial = self.writer().soa_serial()
        changed = [
            records.RRset(change.name, change.rtype, change.ttl or 0, change.values)
            for change in plan.changes
            if change.action in (CREATE, UPDATE) and not change.mark
        ]
        expected = propagation.expectations(plan.zone, changed)
        timeout = self.fleet.dns.propagation_timeout if deadline is None else deadline
        return propagation.wait(self.servers(), plan.zone, serial, expected, timeout, progress)

    def apply_and_wait(self, plan: Plan, wait: bool = True, deadline: float | None = None,
                       on_batch: Callable[[BatchOutcome], None] | None = None,
                       on_wait: Callable[[list[propagation.ServerReport]], None] | None = None) -> ApplyReport:
        report = ApplyReport(plan)
        started = time.monotonic()
        report.result = self.apply(plan, on_batch)
        report.timings["apply"] = time.monotonic() - started
        if wait and report.result.batches:
            started = time.monotonic()
            report.propagation = self.wait(plan, deadline, on_wait)
            report.waited = True
            report.timings["propagation"] = time.monotonic() - started
        return report

    # -- check and challenges --------------------------------------------------------------------

    def check(self, progress: Callable[[int, int], None] | None = None) -> list[propagation.ServerReport]:
        """Does every authoritative server serve every record the fleet needs?"""
        expected = propagation.expectations(self.fleet.zone, self.desired())
        return propagation.check(self.servers(), self.fleet.zone, expected, progress)

    def challenges(self) -> ChallengeWriter:
        """The writer of ACME challenge values: through the fleet's provider when it writes the
        zone, and the delegated challenge zone's (``cozy_dns.acme_challenge``)."""
        writers = [self.provider()]
        delegation = self.fleet.dns.acme_challenge
        if delegation:
            writers.append(providers.build(DnsProviderKind.RFC2136, delegation.zone, delegation.target))
        servers = [address for _, address in self.servers() if address]
        return ChallengeWriter(self.fleet.zone, [writer for writer in writers if writer.writes], servers)
