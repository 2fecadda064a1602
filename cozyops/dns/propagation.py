"""What the authoritative servers of a zone serve: propagation after an apply, and ``dns check``.

The servers are the zone's NS records (addresses from the zone's glue, else the system resolver),
or the fleet's ``cozy_dns.nameservers``. Every server is asked directly (no recursion, no cache).

After an apply, :func:`wait` polls every server until it serves the zone's new SOA serial (a
server serves a zone version whole, so that covers every change) and then the changed records
themselves (all of them up to ``SAMPLE``, else a sample spread over the changes), or the deadline
passes. Polls back off from 50 ms to 1 s; nothing sleeps a fixed time.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.serial

from cozyops.dns.records import RRset, fqdn
from cozyops.errors import DnsError

SAMPLE = 500
QUERY_TIMEOUT = 2.0


@dataclass
class Expectation:
    """A record set a server should serve: ``values`` (any TTL)."""

    name: str  # FQDN
    rtype: str
    values: tuple[str, ...]


@dataclass
class ServerReport:
    name: str  # the NS name (or the address when given as one)
    address: str
    ok: bool = False
    serial: int | None = None
    checked: int = 0
    problems: list[str] = field(default_factory=list)  # the first few records not served as expected
    problem_count: int = 0
    reason: str | None = None  # a server-wide failure (no answer, not authoritative)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"name": self.name, "address": self.address, "ok": self.ok, "serial": self.serial,
                "checked": self.checked, "problems": self.problems, "problem_count": self.problem_count,
                "reason": self.reason, "seconds": round(self.seconds, 3)}

    def summary(self) -> str:
        if self.ok:
            return f"serves serial {self.serial} and the {self.checked} records checked"
        if self.reason:
            return self.reason
        more = f" (+{self.problem_count - len(self.problems)} more)" if self.problem_count > len(self.problems) else ""
        return "; ".join(self.problems) + more


def expectations(zone: str, records: list[RRset]) -> list[Expectation]:
    return [Expectation(fqdn(record.name, zone), record.rtype, record.values) for record in records]


def spread(items: list, count: int) -> list:
    """At most ``count`` items, evenly spread (first and last included)."""
    if len(items) <= count:
        return list(items)
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


def _resolve(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, 53, proto=socket.IPPROTO_UDP)
    except socket.gaierror:
        return []
    return sorted({info[4][0] for info in infos})


def authoritative_servers(
    zone: str,
    explicit: tuple[str, ...] = (),
    ns_names: list[str] | None = None,
    glue: Callable[[str], list[str]] | None = None,
) -> list[tuple[str, str]]:
    """(name, address) of every authoritative server of ``zone``.

    ``explicit`` (addresses or names) wins; else the NS names given (read from the zone) or looked
    up with the system resolver, each with its glue addresses or else its resolved ones.
    """
    if explicit:
        servers = []
        for entry in explicit:
            addresses = _resolve(entry) or [entry]
            servers.extend((entry, address) for address in addresses)
        return servers
    if ns_names is None:
        try:
            answer = dns.resolver.resolve(zone + ".", "NS")
        except dns.exception.DNSException as error:
            raise DnsError(f"zone {zone}", f"cannot find its NS records: {error}",
                           "set cozy_dns.nameservers to the addresses of its authoritative servers") from None
        ns_names = sorted(rdata.target.to_text() for rdata in answer)
    servers = []
    for name in ns_names:
        addresses = (glue(name) if glue else []) or _resolve(name.rstrip("."))
        if not addresses:
            servers.append((name, ""))
        servers.extend((name, address) for address in addresses)
    return servers


def _ask(address: str, name: str, rtype: str, timeout: float = QUERY_TIMEOUT) -> dns.message.Message:
    query = dns.message.make_query(name, rtype)
    query.flags &= ~dns.flags.RD
    response = dns.query.udp(query, address, timeout=timeout)
    if response.flags & dns.flags.TC:
        response = dns.query.tcp(query, address, timeout=timeout)
    return response


def soa_serial(address: str, zone: str) -> int:
    response = _ask(address, zone + ".", "SOA")
    if response.rcode() != dns.rcode.NOERROR:
        raise LookupError(f"{dns.rcode.to_text(response.rcode())} for the zone's SOA")
    if not response.flags & dns.flags.AA:
        raise LookupError("not authoritative for the zone")
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.SOA:
            return rrset[0].serial
    raise LookupError("no SOA in the answer")


def served(address: str, expectation: Expectation) -> str | None:
    """None when ``address`` serves the expectation, else what it serves instead."""
    response = _ask(address, expectation.name, expectation.rtype)
    label = f"{expectation.name} {expectation.rtype}"
    if response.rcode() == dns.rcode.NXDOMAIN:
        return f"{label}: missing (no such name)"
    if response.rcode() != dns.rcode.NOERROR:
        return f"{label}: {dns.rcode.to_text(response.rcode())}"
    qname = dns.name.from_text(expectation.name)
    rdtype = dns.rdatatype.from_text(expectation.rtype)
    values: set[str] = set()
    for rrset in response.answer:
        if rrset.name == qname and rrset.rdtype == rdtype:
            values.update(rdata.to_text() for rdata in rrset)
    if values == set(expectation.values):
        return None
    if not values:
        return f"{label}: missing"
    return f"{label}: {', '.join(sorted(values))} instead of {', '.join(expectation.values)}"


def _failure(error: BaseException) -> str:
    if isinstance(error, dns.exception.Timeout):
        return "no answer (timeout)"
    return str(error) or type(error).__name__


def check(
    servers: list[tuple[str, str]],
    zone: str,
    expected: list[Expectation],
    progress: Callable[[int, int], None] | None = None,
    keep: int = 10,
) -> list[ServerReport]:
    """Ask every server for every expected record set, once."""
    reports = []
    total, done = len(servers) * len(expected), 0
    for name, address in servers:
        started = time.monotonic()
        report = ServerReport(name, address)
        if not address:
            report.reason = f"no address for {name}"
            reports.append(report)
            continue
        try:
            report.serial = soa_serial(address, zone)
            for expectation in expected:
                problem = served(address, expectation)
                report.checked += 1
                if problem:
                    report.problem_count += 1
                    if len(report.problems) < keep:
                        report.problems.append(problem)
                done += 1
                if progress and done % 200 == 0:
                    progress(done, total)
        except (OSError, LookupError, dns.exception.DNSException) as error:
            report.reason = _failure(error)
        report.ok = report.reason is None and report.problem_count == 0
        report.seconds = time.monotonic() - started
        reports.append(report)
    if progress:
        progress(total, total)
    return reports


def wait(
    servers: list[tuple[str, str]],
    zone: str,
    serial: int,
    expected: list[Expectation],
    deadline: float,
    progress: Callable[[list[ServerReport]], None] | None = None,
) -> list[ServerReport]:
    """Poll every server until it serves ``serial`` (or newer) and the expected records.

    ``deadline`` is in seconds from now. Returns one report per server, ok or with the reason.
    """
    started = time.monotonic()
    end = started + deadline
    sample = spread(expected, SAMPLE)
    reports = {(name, address): ServerReport(name, address) for name, address in servers}
    pending = [server for server in servers if server[1]]
    for name, address in servers:
        if not address:
            reports[(name, address)].reason = f"no address for {name}"
    delay = 0.05
    target = dns.serial.Serial(serial)
    while pending:
        still = []
        for server in pending:
            report = reports[server]
            report.seconds = time.monotonic() - started
            try:
                report.serial = soa_serial(server[1], zone)
                report.reason = None
                if dns.serial.Serial(report.serial) < target:
                    report.reason = f"serves serial {report.serial}, not yet {serial}"
                    still.append(server)
                    continue
                problems = [problem for expectation in sample if (problem := served(server[1], expectation))]
                report.checked = len(sample)
                report.problem_count = len(problems)
                report.problems = problems[:10]
                if problems:
                    still.append(server)
                else:
                    report.ok = True
            except (OSError, LookupError, dns.exception.DNSException) as error:
                report.reason = _failure(error)
                still.append(server)
        pending = still
        if progress:
            progress(list(reports.values()))
        if not pending or time.monotonic() >= end:
            break
        time.sleep(min(delay, max(0.0, end - time.monotonic())))
        delay = min(delay * 1.5, 1.0)
    for server in pending:
        report = reports[server]
        if report.reason and not report.reason.startswith("serves serial"):
            report.reason = f"{report.reason} (after {deadline:g} s)"
        elif report.reason:
            report.reason = f"{report.reason} after {deadline:g} s"
    return list(reports.values())
