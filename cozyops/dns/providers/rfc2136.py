"""The RFC 2136 provider: read a zone by AXFR, write it by batched, TSIG-signed UPDATE messages.

Everything goes over TCP to one server (the zone's primary, or any server that takes updates),
signed with the fleet's TSIG key (hmac-sha256 unless the key says otherwise). A batch is one
message, so it applies whole or not at all; each record change in it carries a prerequisite (the
record set is absent, or is exactly what the plan saw), so a zone changed since it was read fails
the batch instead of being overwritten. The changes of one ownership group (an instance's records
and its mark) always travel in the same message.

Failures become one :class:`DnsError` line naming the server, the zone and the key (never the
secret).
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.xfr

from cozyops.bulk import paused_gc
from cozyops.dns import axfr, records, wire
from cozyops.dns.providers import ApplyResult, BatchOutcome, Provider, ZoneData
from cozyops.dns.records import RRset
from cozyops.dns.tsig import TsigKey, load_reference
from cozyops.errors import ConfigError, DnsError
from cozyops.model import Rfc2136Server
from cozyops.plan import Change

# An UPDATE's prerequisites did not hold: the zone changed since the plan read it.
PREREQUISITE_RCODES = {dns.rcode.YXDOMAIN, dns.rcode.YXRRSET, dns.rcode.NXDOMAIN, dns.rcode.NXRRSET}
# UPDATE messages sent before the first answer is read: the next is encoded and on its way while
# the server applies one.
WINDOW = 2
# Room for the prerequisites and the TSIG record in a message of at most 64 KiB.
BATCH_BYTES = 48_000
# Owner names whose text is their bytes (no escaping needed), lowercase as cozyops writes them.
_PLAIN_NAME = re.compile(rb"[a-z0-9_*-]+(?:\.[a-z0-9_*-]+)*")


@dataclass
class _InFlight:
    index: int
    batch: list[Change]
    message: dns.message.Message
    started: float


def plan_batches(changes: list[Change], batch_size: int, encoder: wire.Encoder | None = None) -> list[list[Change]]:
    """Split changes into messages: whole groups, at most ``batch_size`` changes and ~48 KB each.

    A group larger than a batch gets a message of its own (it must stay atomic).
    """
    encoder = encoder or wire.Encoder()
    groups: dict[str, list[Change]] = {}
    for change in changes:
        groups.setdefault(change.group, []).append(change)
    batches: list[list[Change]] = []
    current: list[Change] = []
    size = 0
    for group in groups.values():
        group_size = sum(wire.change_size(change, encoder) for change in group)
        if current and (len(current) + len(group) > batch_size or size + group_size > BATCH_BYTES):
            batches.append(current)
            current, size = [], 0
        current.extend(group)
        size += group_size
    if current:
        batches.append(current)
    return batches


def build(zone: str, settings: Rfc2136Server | None, batch_size: int = 1000) -> Rfc2136:
    """The provider for ``zone`` from its settings (``cozy_dns``, or ``cozy_dns.acme_challenge``)."""
    if settings is None or settings.tsig_key_file is None:
        raise ConfigError(f"zone {zone}", "cozy_dns: the rfc2136 provider needs server and tsig_key_file")
    key = load_reference(settings.tsig_key_file)
    if settings.algorithm:
        key = replace(key, algorithm=settings.algorithm)
    return Rfc2136(zone, settings.server, key, settings.port, settings.timeout, batch_size,
                   key_source=str(settings.tsig_key_file))


class Rfc2136(Provider):
    """One zone on one server, with one key."""

    name = "rfc2136"

    def __init__(self, zone: str, server: str, key: TsigKey, port: int = 53, timeout: float = 10.0,
                 batch_size: int = 1000, key_source: str | None = None) -> None:
        self.zone = zone.rstrip(".").lower()
        self.origin = dns.name.from_text(self.zone)
        self.server = server
        self.port = port
        self.key = key
        self.timeout = timeout
        self.batch_size = batch_size
        self.key_source = key_source  # where the key came from, for error hints

    def __repr__(self) -> str:
        return f"Rfc2136({self.zone!r} at {self.where}, key {self.key.name!r})"

    def describe(self) -> str:
        return f"rfc2136 provider of zone {self.zone} at {self.where} (TSIG key {self.key.name})"

    @property
    def where(self) -> str:
        return f"{self.server}:{self.port}" if self.port != 53 else self.server

    def _error(self, reason: str, hint: str | None = None) -> DnsError:
        return DnsError(f"zone {self.zone} at {self.where} (TSIG key {self.key.name})", reason, hint)

    def _address(self) -> str:
        try:
            return socket.getaddrinfo(self.server, self.port, proto=socket.IPPROTO_TCP)[0][4][0]
        except socket.gaierror as error:
            raise self._error(f"cannot resolve the server name {self.server!r}: {error.strerror}") from None

    def explain(self, error: BaseException) -> DnsError:
        """One line for a failure talking to the server."""
        key_file = f" in {self.key_source}" if self.key_source else ""
        if isinstance(error, DnsError):
            return error
        if isinstance(error, dns.tsig.PeerBadKey):
            return self._error("BADKEY: the server does not accept this key (unknown to it, or not allowed "
                               "for this zone and operation)",
                               f"the key name{key_file} must match a key the server grants on the zone")
        if isinstance(error, dns.tsig.PeerBadSignature):
            return self._error("BADSIG: the server rejects the signature",
                               f"the secret or algorithm{key_file} differs from the server's")
        if isinstance(error, dns.tsig.PeerBadTime):
            return self._error("BADTIME: the server's clock and this machine's differ by more than 5 minutes")
        if isinstance(error, dns.tsig.PeerError | dns.tsig.BadSignature):
            return self._error(f"TSIG failure: {error}")
        if isinstance(error, dns.exception.Timeout | TimeoutError | socket.timeout):
            return self._error(f"no answer within {self.timeout:g} s")
        if isinstance(error, ConnectionRefusedError):
            return self._error("connection refused", "is a DNS server listening there over TCP?")
        if isinstance(error, dns.xfr.TransferError):
            return self._rcode_error(error.rcode, "zone transfer")
        if isinstance(error, EOFError | ConnectionResetError):
            return self._error("the server closed the connection",
                               "it may refuse zone transfers from this address or with this key")
        if isinstance(error, OSError):
            return self._error(error.strerror or str(error))
        if isinstance(error, dns.exception.DNSException):
            return self._error(f"{type(error).__name__}: {error}")
        raise error

    def _rcode_error(self, rcode: int, what: str) -> DnsError:
        text = dns.rcode.to_text(rcode)
        if rcode == dns.rcode.NOTAUTH:
            return self._error(f"NOTAUTH: {what} refused: the server is not authoritative for the zone "
                               "or does not accept this key for it")
        if rcode == dns.rcode.REFUSED:
            policy = "allow-transfer" if what == "zone transfer" else "update-policy"
            return self._error(f"REFUSED: the server refuses the {what}",
                               f"its {policy} (BIND) or acl (Knot) must grant the key {self.key.name}")
        if rcode == dns.rcode.NOTZONE:
            return self._error(f"NOTZONE: a name of the {what} is outside the zone")
        return self._error(f"{text}: {what} failed")

    # -- reading -------------------------------------------------------------------------------

    @paused_gc
    def read(self) -> ZoneData:
        """The whole zone, by a TSIG-signed AXFR."""
        address = self._address()
        rrsets: dict[tuple[str, str], RRset] = {}
        serial = None
        origin = self.origin
        try:
            cut = len(origin.labels) - 1  # the records' labels come without the root label
            types: dict[int, str] = {}
            transfer = axfr.transfer(address, self.port, self.zone, self.key, self.timeout, max(self.timeout, 60.0))
            for labels, code, ttl, value in transfer:
                if len(labels) == cut:
                    name = "@"
                else:
                    relative = labels[:-cut]
                    joined = b".".join(relative)
                    plain = _PLAIN_NAME.fullmatch(joined) and joined.count(b".") == len(relative) - 1
                    name = joined.decode() if plain else (
                        dns.name.Name(labels + (b"",)).relativize(origin).to_text().lower())
                rtype = types.get(code)
                if rtype is None:
                    rtype = types[code] = dns.rdatatype.to_text(code)
                if rtype == "SOA":
                    serial = int(value.split()[2])
                have = rrsets.get((name, rtype))
                if have is None:
                    rrsets[(name, rtype)] = RRset(name, rtype, ttl, (value,))
                elif value not in have.values:
                    rrsets[(name, rtype)] = RRset(name, rtype, have.ttl, tuple(sorted((*have.values, value))))
        except Exception as error:  # noqa: BLE001 - every failure becomes one line
            raise self.explain(error) from None
        if serial is None:
            raise self._error("the zone transfer returned no SOA record")
        return ZoneData(self.zone, serial, rrsets, records.mark_index(rrsets))

    def soa_serial(self) -> int:
        query = dns.message.make_query(self.origin, dns.rdatatype.SOA)
        try:
            response = dns.query.tcp(query, self._address(), port=self.port, timeout=self.timeout)
        except Exception as error:  # noqa: BLE001
            raise self.explain(error) from None
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.SOA:
                return rrset[0].serial
        raise self._rcode_error(response.rcode(), "SOA query")

    # -- writing -------------------------------------------------------------------------------

    @paused_gc
    def apply(
        self,
        changes: list[Change],
        on_batch: Callable[[BatchOutcome], None] | None = None,
    ) -> ApplyResult:
        """Send the changes in batches over one TCP connection, ``WINDOW`` messages in flight.

        While the server applies one message the next is encoded and sent. A batch whose
        prerequisites fail is reported and the others go on (re-planning converges); an
        authentication, authority or transport failure stops the apply and is raised after
        ``on_batch`` saw the failed batch (and any other batch whose outcome is then unknown).
        """
        result = ApplyResult()
        if not changes:
            return result
        encoder = wire.Encoder()
        batches = plan_batches(changes, self.batch_size, encoder)
        in_flight: dict[int, _InFlight] = {}

        def report(outcome: BatchOutcome) -> None:
            result.batches.append(outcome)
            if on_batch:
                on_batch(outcome)

        def fail(error: BaseException, first: _InFlight) -> DnsError:
            """Report ``first`` as failed by ``error``, the rest in flight as unknown; the error to raise."""
            failure = self.explain(error)
            report(BatchOutcome(first.index, first.batch, False, str(failure), time.monotonic() - first.started, True))
            for other in sorted(in_flight.values(), key=lambda entry: entry.index):
                if other is not first:
                    report(BatchOutcome(other.index, other.batch, False, f"not known whether applied: {failure}",
                                        time.monotonic() - other.started, True))
            in_flight.clear()
            return failure

        connection = None
        try:
            for index, batch in enumerate(batches):
                started = time.monotonic()
                builder = wire.UpdateBuilder(encoder)
                for change in batch:
                    builder.add_change(change)
                message, data = builder.render(self.origin, self.key, avoid=in_flight)
                entry = _InFlight(index, batch, message, started)
                try:
                    if connection is None:
                        connection = socket.create_connection((self._address(), self.port), timeout=self.timeout)
                    dns.query.send_tcp(connection, data, time.time() + self.timeout)
                except Exception as error:  # noqa: BLE001 - journaled, then raised as one line
                    raise fail(error, entry) from None
                in_flight[message.id] = entry
                while len(in_flight) >= WINDOW:
                    self._receive(connection, in_flight, report, fail)
            while in_flight:
                self._receive(connection, in_flight, report, fail)
        finally:
            if connection is not None:
                connection.close()
        return result

    def _receive(self, connection: socket.socket, in_flight: dict[int, _InFlight],
                 report: Callable[[BatchOutcome], None], fail: Callable[..., DnsError]) -> None:
        """Read one answer, match it to its message by id, report the batch's outcome."""
        oldest = min(in_flight.values(), key=lambda entry: entry.index)
        try:
            data = axfr.read_message(connection, time.monotonic() + self.timeout)
        except Exception as error:  # noqa: BLE001
            raise fail(error, oldest) from None
        entry = in_flight.pop(int.from_bytes(data[:2], "big"), None)
        if entry is None:
            raise fail(self._error("the server answered a message that was not sent"), oldest)
        try:
            response = dns.message.from_wire(
                data, keyring={entry.message.keyname: entry.message.keyring}, request_mac=entry.message.tsig[0].mac,
            )
        except Exception as error:  # noqa: BLE001
            raise fail(error, entry) from None
        rcode = response.rcode()
        seconds = time.monotonic() - entry.started
        if rcode == dns.rcode.NOERROR:
            report(BatchOutcome(entry.index, entry.batch, True, None, seconds))
        elif rcode in PREREQUISITE_RCODES:
            report(BatchOutcome(
                entry.index, entry.batch, False,
                f"{dns.rcode.to_text(rcode)}: the zone changed since it was read; nothing of this batch was applied "
                "(plan and apply again)", seconds,
            ))
        else:
            raise fail(self._rcode_error(rcode, "update"), entry)

    def _send(self, connection: socket.socket, builder: wire.UpdateBuilder) -> int:
        """One message, one answer: its rcode."""
        message, data = builder.render(self.origin, self.key)
        expiration = time.time() + self.timeout
        dns.query.send_tcp(connection, data, expiration)
        response, _ = dns.query.receive_tcp(
            connection, expiration, keyring={message.keyname: message.keyring}, request_mac=message.tsig[0].mac,
        )
        if response.id != message.id:
            raise self._error(f"answer to another message (id {response.id}, sent {message.id})")
        return response.rcode()

    # -- ACME challenges -----------------------------------------------------------------------

    def _relative(self, fqdn: str) -> str:
        name = fqdn.rstrip(".").lower()
        if name == self.zone:
            return "@"
        if not name.endswith("." + self.zone):
            raise self._error(f"{fqdn} is not in the zone")
        return name[: -len(self.zone) - 1]

    def change_txts(self, adds: list[tuple[str, str, int]] = (), deletes: list[tuple[str, str]] = ()) -> int:
        """Add (fqdn, value, ttl) and delete (fqdn, value) TXT values, each beside the others at its name,
        in as few UPDATE messages as fit (one message carries those of about 250 certificates).

        Returns the number of messages sent. A message applies whole or not at all; when one fails,
        the error says so and the values of the messages before it stay (callers clean up).
        """
        items = [(fqdn, value, ttl, False) for fqdn, value, ttl in adds]
        items += [(fqdn, value, 0, True) for fqdn, value in deletes]
        if not items:
            return 0
        builders: list[wire.UpdateBuilder] = []
        builder = None
        encoder = wire.Encoder()
        for fqdn, value, ttl, delete in items:
            if builder is None or builder.size > BATCH_BYTES:
                builder = wire.UpdateBuilder(encoder)
                builders.append(builder)
            text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
            builder.add_txt(self._relative(fqdn), text, ttl, delete)
        try:
            with socket.create_connection((self._address(), self.port), timeout=self.timeout) as connection:
                for builder in builders:
                    rcode = self._send(connection, builder)
                    if rcode != dns.rcode.NOERROR:
                        raise self._rcode_error(rcode, "update")
        except DnsError:
            raise
        except Exception as error:  # noqa: BLE001
            raise self.explain(error) from None
        return len(builders)
