"""Certificates of a fleet: what is missing or due, the budget, issuing many at once.

A run works in chunks of at most ``CHUNK`` certificates: their orders are created concurrently
(``cozy_acme.concurrency`` in flight), every TXT value of the chunk is published in one UPDATE per
zone, the authoritative servers are waited for once, the challenges are answered and the orders
completed concurrently, and the values are removed in one UPDATE, whatever happened. A failure
is per certificate: collected, the others go on.

Each certificate is kept as it arrives (its issuance, files and row: :meth:`CertStore.save`), and
every challenge value is journaled before it is published. A run killed at any point is cleaned
up by the next: :meth:`CertManager.recover` (certificate files without their row adopted, staged
files finished) and the challenge values left removed (:meth:`Dns01Solver.sweep`).
"""

from __future__ import annotations

import contextlib
import datetime
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from cryptography import x509

from cozyops import state
from cozyops.dns import propagation
from cozyops.dns.manager import DnsManager
from cozyops.dns.providers import Provider
from cozyops.errors import ConfigError, CozyopsError
from cozyops.model import Fleet
from cozyops.tls import policy
from cozyops.tls.http01 import PREFIX as HTTP01_PREFIX
from cozyops.tls.http01 import Http01Solver
from cozyops.tls.issuer import Issuer, Order, ari_cert_id, directory_id, directory_url
from cozyops.tls.policy import CertSpec
from cozyops.tls.solver import Dns01Solver
from cozyops.tls.store import CertStore, Record, Recovery, check_pair

CHUNK = 200  # certificates per DNS update (two TXT values each; one message holds ~250)
ORDER_DEADLINE = 300.0  # seconds for a chunk's validation and finalization

Progress = Callable[[str, int, int], None]


def _quiet(stage: str, done: int, total: int) -> None:
    pass


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass
class Status:
    spec: CertSpec
    record: Record | None
    status: str  # missing, names changed (its names are no longer the instance's: HTTP-01), valid, due, expired
    next_renewal: datetime.datetime | None


@dataclass
class CertPlan:
    statuses: list[Status]
    todo: list[tuple[CertSpec, bool]]  # (certificate, is a renewal)
    verdict: policy.BudgetVerdict
    directory: str

    @property
    def refused(self) -> list[CertSpec]:
        return self.verdict.refused

    def to_json(self) -> dict:
        refused = {spec.name for spec in self.verdict.refused}
        return {
            "directory": self.directory,
            "issue": [spec.name for spec, renewal in self.todo if not renewal],
            "renew": [spec.name for spec, renewal in self.todo if renewal],
            "over_budget": sorted(refused),
            "budget": {"limit_per_week": self.verdict.limit, "left": self.verdict.left},
        }


@dataclass
class RunResult:
    issued: dict[str, Record] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    cleanup_problems: list[str] = field(default_factory=list)
    dns_messages: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, summed over chunks

    def timed(self, stage: str, since: float) -> float:
        now = time.monotonic()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - since
        return now


class CertManager:
    def __init__(self, fleet: Fleet, issuer: Issuer | None = None,
                 solver: Dns01Solver | Http01Solver | None = None) -> None:
        if fleet.acme is None:
            raise ConfigError(f"fleet {fleet.name}", "cozy_acme: missing (the ACME directory to get certificates from)")
        self.fleet = fleet
        self.acme = fleet.acme
        self.directory = directory_url(self.acme.directory)
        self.store = CertStore(fleet.state_dir)
        self._issuer = issuer
        self._solver = solver
        self._dns: DnsManager | None = None
        self._http01: Http01Solver | None = None
        self._dns01: Dns01Solver | None = None
        self.challenge = self.acme.challenge  # dns-01 or http-01

    def close(self) -> None:
        if self._http01 is not None:
            self._http01.close()
        self.store.close()

    @contextlib.contextmanager
    def locked(self, command: str = "") -> Iterator[None]:
        with state.fleet_lock(self.fleet.state_dir, self.fleet.name, command):
            yield

    # -- the seams -----------------------------------------------------------------------------

    def issuer(self) -> Issuer:
        if self._issuer is None:
            eab = (self.acme.eab_kid, self.acme.eab_hmac_key_file) if self.acme.eab_kid else None
            self._issuer = Issuer(self.directory, self.fleet.state_dir / "acme" / directory_id(self.directory),
                                  self.acme.ca_bundle, self.acme.email, eab)  # type: ignore[arg-type]
        return self._issuer

    def http01_solver(self) -> Http01Solver:
        """HTTP-01: challenge files on each instance's server, through its transport."""
        if self._http01 is None:
            from cozyops.transport.fleet import transport

            self._http01 = Http01Solver(self.fleet, transport, state.Challenges(self.store.db))
        return self._http01

    def solver(self) -> Dns01Solver | Http01Solver:
        """The solver of the fleet's challenge type (cozy_acme.challenge)."""
        if self._solver is None:
            self._solver = self.http01_solver() if self.challenge == "http-01" else self.dns_solver()
        return self._solver

    def dns_solver(self) -> Dns01Solver:
        if isinstance(self._solver, Dns01Solver):
            return self._solver
        if self._dns01 is None:
            self._dns = DnsManager(self.fleet)
            dns = self._dns

            def servers_for(provider: Provider) -> list[tuple[str, str]]:
                if provider.zone == self.fleet.zone:
                    return dns.servers()
                data = provider.read()
                return propagation.authoritative_servers(provider.zone, (), data.nameservers(), data.addresses)

            self._dns01 = Dns01Solver(dns.challenges(), servers_for, self.fleet.dns.propagation_timeout,
                                      state.Challenges(self.store.db))
        return self._dns01

    # -- after an interrupted run ----------------------------------------------------------------

    def recover(self) -> Recovery:
        """Finish what an interrupted run left in the store: staged files moved into place,
        certificate files without their row adopted (key and chain checked), so that rows match
        files and the budget counts every certificate the CA issued."""
        return self.store.recover(self.directory, self.acme.key_type)

    def resume_orders(self) -> tuple[list[str], list[str]]:
        """Orders an interrupted run finalized without keeping their certificate: fetched from the
        CA and kept (their keys were kept before finalizing), or no longer counted when the CA did
        not issue them. Returns (names kept, problems). The CA is asked only when there are some."""
        pending = self.store.pending(self.directory)
        kept, problems = [], []
        for name, url, renewal, key_file in pending:
            try:
                status, chain = self.issuer().fetch_issued(url)
            except CozyopsError as error:
                problems.append(str(error))  # still counted: the CA may have issued it
                continue
            if chain is None:
                if status != "processing":
                    self.store.not_issued(self.directory, url)
                continue
            key = key_file.read_bytes() if key_file.exists() else None
            current = self.store.records().get(name)
            if current is not None and current.not_before >= x509.load_pem_x509_certificate(
                    chain.encode()).not_valid_before_utc:
                self.store.record_issued(name, chain, self.directory, self.acme.key_type, renewal, url)
                continue  # a newer one is kept already
            if key is None or check_pair(key, chain):
                problems.append(f"certificate {name}: issued by the CA ({url}) but its key was not kept; "
                                "it is issued again")
                self.store.record_issued(name, chain, self.directory, self.acme.key_type, renewal, url)
                continue
            self.store.save(name, key, chain, self.directory, self.acme.key_type, renewal, url)
            kept.append(name)
        return kept, problems

    def sweep_challenges(self) -> list[str]:
        """Remove the challenge values an interrupted run published (journaled, never cleaned
        up); the problems, if any. Nothing is asked of the DNS when none is journaled."""
        left = state.Challenges(self.store.db).left(other_runs_only=False)
        problems = []
        if any(zone.startswith(HTTP01_PREFIX) for zone in left):
            problems += self.http01_solver().sweep()
        if any(not zone.startswith(HTTP01_PREFIX) for zone in left):
            # DNS-01 values (also those left before a fleet moved to HTTP-01)
            problems += self.dns_solver().sweep()
        return problems

    # -- what to do ----------------------------------------------------------------------------

    def specs(self, names: list[str] | None = None) -> list[CertSpec]:
        every = policy.cert_specs(self.fleet)
        if not names:
            return every
        chosen: dict[str, CertSpec] = {}
        for name in names:
            spec = policy.spec_for(self.fleet, name, every)
            if spec is None:
                raise ConfigError(f"certificate {name}", "neither a certificate nor an instance of the fleet",
                                  "`cozyops cert ls` lists them")
            chosen[spec.name] = spec
        return list(chosen.values())

    def statuses(self, specs: list[CertSpec], now: datetime.datetime | None = None) -> list[Status]:
        now = now or now_utc()
        records = self.store.records()
        found = []
        for spec in specs:
            record = records.get(spec.name)
            if record is None:
                found.append(Status(spec, record, "missing", None))
                continue
            if set(record.domains) != set(spec.domains):
                found.append(Status(spec, record, "names changed", None))
                continue
            when = policy.renewal_time(record.not_before, record.not_after, record.ari)
            status = "expired" if now >= record.not_after else "due" if now >= when else "valid"
            found.append(Status(spec, record, status, when))
        return found

    def refresh_renewal_info(self, specs: list[CertSpec], progress: Progress = _quiet) -> int:
        """Ask the CA's renewalInfo (RFC 9773) for certificates whose next check has come; returns how many."""
        issuer = self.issuer()
        if issuer.renewal_info_url is None:
            return 0
        records = self.store.records()
        now = now_utc()
        wanted = [spec for spec in specs if spec.name in records and now < records[spec.name].not_after
                  and (records[spec.name].ari_next_check is None or records[spec.name].ari_next_check <= now)]
        for done, spec in enumerate(wanted, 1):
            cert_pem = self.store.fullchain(spec.name).read_bytes()
            window, retry = issuer.renewal_window(cert_pem)
            self.store.set_ari(spec.name, window, now + datetime.timedelta(seconds=retry))
            progress("renewal info", done, len(wanted))
        return len(wanted)

    def plan(self, names: list[str] | None = None, renew_only: bool = False, force: bool = False,
             progress: Progress = _quiet) -> CertPlan:
        """Missing (unless ``renew_only``) and due certificates, within the weekly budget."""
        specs = self.specs(names)
        if any(spec.name in self.store.records() for spec in specs):
            self.refresh_renewal_info(specs, progress)
        statuses = self.statuses(specs)
        todo: list[tuple[CertSpec, bool]] = []
        for status in statuses:
            decision = policy.to_do(status.status, renew_only, force)
            if decision is not None:
                todo.append((status.spec, decision[1]))
        limit = policy.budget_limit(self.directory, self.acme.budget)
        verdict = policy.budget([spec for spec, _ in todo], self.store.history(self.directory), limit, now_utc())
        refused = {spec.name for spec in verdict.refused}
        exempt = {spec.name for spec in verdict.renewals}  # the same names were issued before
        return CertPlan(statuses, [(spec, renewal or spec.name in exempt) for spec, renewal in todo
                                   if spec.name not in refused], verdict, self.directory)

    # -- doing it ------------------------------------------------------------------------------

    def execute(self, todo: list[tuple[CertSpec, bool]], progress: Progress = _quiet) -> RunResult:
        result = RunResult()
        started = time.monotonic()
        result.cleanup_problems += self.sweep_challenges()
        if not todo:
            return result
        self.issuer().connect()
        done = 0
        for index in range(0, len(todo), CHUNK):
            chunk = todo[index:index + CHUNK]
            self._chunk(chunk, result, lambda n, total=len(todo), base=done: progress("issue", base + n, total))
            done += len(chunk)
        result.seconds = time.monotonic() - started
        return result

    def _replaced(self, renewals: list[CertSpec]) -> dict[str, str]:
        """The ARI identifier (RFC 9773) of the certificate each renewal replaces, when the CA has ARI."""
        if not renewals or self.issuer().renewal_info_url is None:
            return {}
        records = self.store.records()
        found = {}
        for spec in renewals:
            path = self.store.fullchain(spec.name)
            record = records.get(spec.name)
            if record is not None and record.directory == self.directory and path.exists():
                found[spec.name] = ari_cert_id(path.read_bytes())
        return found

    def _chunk(self, chunk: list[tuple[CertSpec, bool]], result: RunResult, progress: Callable[[int], None]) -> None:
        solver, issuer = self.solver(), self.issuer()
        renewal = {spec.name: is_renewal for spec, is_renewal in chunk}
        mark = time.monotonic()
        with ThreadPoolExecutor(self.acme.concurrency) as pool:
            # 1. where each challenge goes (before asking the CA anything; CNAMEs looked up
            # concurrently): an unpublishable name fails alone
            def where(spec: CertSpec) -> None:
                for domain in spec.domains:
                    solver.target(domain)

            lookups = [(spec, pool.submit(where, spec)) for spec, _ in chunk]
            ready: list[CertSpec] = []
            for spec, future in lookups:
                try:
                    future.result()
                    ready.append(spec)
                except CozyopsError as error:
                    result.failed[spec.name] = f"cannot publish its {self.challenge.upper()} challenge: {error}"
            mark = result.timed("targets", mark)
            # 2. orders: placed one after another by this thread (the CA takes one newOrder at a
            # time), each then prepared (authorizations fetched, key and CSR made) by the pool
            # meanwhile; a renewal names the certificate it replaces when the CA has ARI
            replaces = self._replaced([spec for spec in ready if renewal[spec.name]])
            orders: dict[str, Order] = {}
            published = None
            prepared = {}
            for spec in ready:
                try:
                    placed = issuer.new_order(spec.domains, replaces.get(spec.name))
                except CozyopsError as error:
                    result.failed[spec.name] = error.reason
                    continue
                prepared[spec.name] = pool.submit(issuer.prepare, placed, self.acme.key_type, self.challenge)
            for name, future in prepared.items():
                try:
                    orders[name] = future.result()
                except CozyopsError as error:
                    result.failed[name] = error.reason
            mark = result.timed("orders", mark)
            # 3. every TXT value of the chunk at once; then wait; answer; complete; always clean up
            items = [(challenge.domain, challenge.value) for order in orders.values()
                     for challenge in order.challenges]
            try:
                try:
                    published = solver.publish(items)
                    result.dns_messages += published.messages
                    mark = result.timed("publish", mark)
                    solver.wait(published)
                    mark = result.timed("propagation", mark)
                except CozyopsError as error:
                    for name in orders:
                        result.failed[name] = f"{self.challenge.upper()} challenge: {error}"
                    return
                deadline = time.monotonic() + ORDER_DEADLINE

                def finish(name: str, order: Order) -> Record:
                    issuer.answer(order)
                    url = order.resource.uri

                    def finalizing() -> None:
                        self.store.finalizing(name, order.domains, self.directory, renewal[name], url, order.key_pem)

                    certificate = issuer.complete(order, deadline, finalizing)
                    return self.store.save(name, certificate.key_pem, certificate.fullchain_pem, self.directory,
                                           self.acme.key_type, renewal[name], url)

                futures = {name: pool.submit(finish, name, order) for name, order in orders.items()}
                count = 0
                for name, future in futures.items():
                    try:
                        result.issued[name] = future.result()
                    except CozyopsError as error:
                        result.failed[name] = error.reason
                        continue
                    count += 1
                    progress(count)
                mark = result.timed("validation", mark)
            finally:
                if published is not None:
                    result.cleanup_problems += solver.cleanup(published)
                    result.dns_messages += len(published.values)
                    result.timed("cleanup", mark)
