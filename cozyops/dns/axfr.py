"""A zone transfer (AXFR) over TCP, signed with TSIG, read straight from the wire.

dnspython turns every record of a transfer into objects (names, rdata, record sets): about 45 us
a record on the lab machine, 5 s for the zone of 10,000 instances that every `dns plan` reads.
Here the records cozyops compares are read from the wire directly: owner names decompressed to
labels, A and AAAA through dnspython's own address formatting, plain TXT strings and CAA values
quoted as dnspython quotes them; every other record (SOA, NS, CNAME, MX, escaped TXT, ...) is parsed
by dnspython from the same bytes, so its text is dnspython's. dnspython also builds the signed
query and verifies every answer's TSIG (``dns.tsig.validate``, the same call its own reader
makes). ``tests/integration/test_dns.py`` reads the lab's zones both ways and compares.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import dns.exception
import dns.ipv4
import dns.ipv6
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.wire
import dns.xfr

from cozyops.dns.tsig import TsigKey

A, AAAA, TXT, SOA, CAA, TSIG = 1, 28, 16, 6, 257, 250
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_PLAIN_TXT = frozenset(range(0x20, 0x7F)) - {0x22, 0x5C}  # printed as is by dnspython (no " nor \)


def _name(wire: bytes, offset: int) -> tuple[tuple[bytes, ...], int]:
    """The labels of the (possibly compressed) name at ``offset``, and the offset after it."""
    labels = []
    end = None
    jumps = 0
    while True:
        length = wire[offset]
        if length == 0:
            offset += 1
            break
        if length >= 0xC0:
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | wire[offset + 1]
            jumps += 1
            if jumps > 127:
                raise dns.exception.FormError("name compression loop")
            continue
        labels.append(wire[offset + 1: offset + 1 + length])
        offset += 1 + length
    return tuple(labels), (end if end is not None else offset)


def _text(wire: bytes, rtype: int, start: int, length: int) -> str:
    if rtype == A and length == 4:
        return dns.ipv4.inet_ntoa(wire[start: start + 4])
    if rtype == AAAA and length == 16:
        return dns.ipv6.inet_ntoa(wire[start: start + 16])
    if rtype == TXT:
        strings, position, end = [], start, start + length
        while position < end:
            size = wire[position]
            string = wire[position + 1: position + 1 + size]
            if not _PLAIN_TXT.issuperset(string) or position + 1 + size > end:
                break
            strings.append(f'"{string.decode()}"')
            position += 1 + size
        else:
            return " ".join(strings)
    if rtype == CAA and length >= 2:  # flags, tag, value: as dnspython prints them, when plain
        tag_end = start + 2 + wire[start + 1]
        tag, value = wire[start + 2: tag_end], wire[tag_end: start + length]
        if tag_end <= start + length and tag.isalnum() and _PLAIN_TXT.issuperset(value):
            return f'{wire[start]} {tag.decode()} "{value.decode()}"'
    parser = dns.wire.Parser(wire, start)
    with parser.restrict_to(length):
        rdata = dns.rdata.from_wire_parser(dns.rdataclass.IN, rtype, parser, None)
    return rdata.to_text()


def read_message(connection: socket.socket, expiration: float) -> bytes:
    """One length-prefixed DNS message from a TCP stream, by ``expiration`` (time.monotonic())."""
    return _read_exactly(connection, int.from_bytes(_read_exactly(connection, 2, expiration), "big"), expiration)


def _read_exactly(connection: socket.socket, count: int, expiration: float) -> bytes:
    data = bytearray()
    while len(data) < count:
        remaining = expiration - time.monotonic()
        if remaining <= 0:
            raise dns.exception.Timeout
        connection.settimeout(remaining)
        chunk = connection.recv(count - len(data))
        if not chunk:
            raise EOFError("the server closed the connection")
        data += chunk
    return bytes(data)


Record = tuple[tuple[bytes, ...], int, int, str]  # owner labels (absolute, without the root), type, TTL, value


def transfer(address: str, port: int, zone: str, key: TsigKey, timeout: float, lifetime: float) -> Iterator[Record]:
    """Every record of ``zone`` (the SOA first and, as the transfer ends with it, again last).

    Raises ``dns.xfr.TransferError`` for an error rcode, dnspython's TSIG errors
    (``PeerBadKey``, ``PeerBadSignature``, ``BadSignature``, ...) for a failed signature, and
    ``dns.exception.Timeout``, ``EOFError`` or ``OSError`` for the transport.
    """
    origin = dns.name.from_text(zone)
    query = dns.message.make_query(origin, dns.rdatatype.AXFR)
    query.use_tsig(key.keyring(), key.name, algorithm=key.algorithm_name)
    data = query.to_wire()
    request_mac = query.mac
    tsig_key = query.keyring
    expiration = time.monotonic() + lifetime
    soas = 0
    context = None
    with socket.create_connection((address, port), timeout=timeout) as connection:
        connection.sendall(len(data).to_bytes(2, "big") + data)
        while soas < 2:
            wire = read_message(connection, min(expiration, time.monotonic() + timeout))
            message_id, flags, questions, answers, authority, additional = _HEADER.unpack_from(wire)
            if message_id != query.id:
                raise dns.exception.FormError(f"answer to another query (id {message_id}, sent {query.id})")
            offset = 12
            for _ in range(questions):
                offset = _name(wire, offset)[1] + 4
            records = []
            signed = False
            for index in range(answers + authority + additional):
                start = offset
                labels, offset = _name(wire, offset)
                rtype, _rclass, ttl, length = _RR.unpack_from(wire, offset)
                offset += 10
                if rtype == TSIG:
                    if index != answers + authority + additional - 1:
                        raise dns.exception.FormError("TSIG is not the last record")
                    parser = dns.wire.Parser(wire, offset)
                    with parser.restrict_to(length):
                        rdata = dns.rdata.from_wire_parser(dns.rdataclass.ANY, TSIG, parser, None)
                    owner = dns.name.Name(labels + (b"",))
                    context = dns.tsig.validate(wire, tsig_key, owner, rdata, int(time.time()), request_mac, start,
                                                context, True)
                    signed = True
                elif index < answers:
                    records.append((labels, rtype, ttl if ttl <= 0x7FFFFFFF else 0,
                                    _text(wire, rtype, offset, length)))
                    soas += rtype == SOA
                offset += length
            rcode = dns.rcode.from_flags(flags, 0)
            if rcode != dns.rcode.NOERROR:
                raise dns.xfr.TransferError(rcode)
            if not signed:
                if context is None:
                    raise dns.exception.FormError("the server's answer is not signed")
                context.update(wire)
            if not records:
                raise dns.exception.FormError("an answer without records")
            yield from records
        if not signed:
            raise dns.exception.FormError("the transfer's last message is not signed")
