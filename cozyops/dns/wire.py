"""RFC 2136 UPDATE messages for many changes, encoded section by section.

dnspython builds a message from rdata objects and renders it afterwards: about 60 us per record
on the lab machine, three times what BIND needs to apply one. Here each change is encoded once,
straight into the prerequisite and update sections (owner names compressed against the zone name
at offset 12, record data encoded once per distinct value), and dnspython renders the header and
question, signs with TSIG and parses the answer. ``tests/unit/test_wire.py`` checks that dnspython
reads back exactly the intended message.

Within one message every deletion comes before every addition: RFC 2136 applies updates in
order, and an addition next to a CNAME that is deleted later in the message would be ignored.
"""

from __future__ import annotations

import struct
import time

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.renderer
import dns.tsig

from cozyops.dns import records
from cozyops.dns.plan import CREATE, DELETE, UPDATE, Change
from cozyops.dns.tsig import TsigKey
from cozyops.errors import DnsError

MAX_MESSAGE = 65535
# Room left for the TSIG record (key name up to 255 bytes, hmac-sha512 MAC) and the question.
TSIG_RESERVE = 512
IN, NONE, ANY = dns.rdataclass.IN, dns.rdataclass.NONE, dns.rdataclass.ANY
POINTER_TO_ZONE = b"\xc0\x0c"  # the zone's name, first thing after the 12-byte header

_RR = struct.Struct("!HHIH")


class Encoder:
    """Encodes owner names and record data, caching both (a fleet repeats its values)."""

    def __init__(self) -> None:
        self._names: dict[str, bytes] = {}
        self._rdata: dict[tuple[str, str], bytes] = {}
        self._types: dict[str, int] = {}

    def name(self, relative: str) -> bytes:
        encoded = self._names.get(relative)
        if encoded is None:
            if relative == "@":
                encoded = POINTER_TO_ZONE
            else:
                labels = dns.name.from_text(relative, origin=None).labels if "\\" in relative else [
                    label.encode() for label in relative.split(".")
                ]
                encoded = b"".join(bytes((len(label),)) + label for label in labels) + POINTER_TO_ZONE
            self._names[relative] = encoded
        return encoded

    def rtype(self, rtype: str) -> int:
        code = self._types.get(rtype)
        if code is None:
            code = self._types[rtype] = dns.rdatatype.from_text(rtype)
        return code

    def rdata(self, rtype: str, value: str) -> bytes:
        encoded = self._rdata.get((rtype, value))
        if encoded is None:
            if rtype == "TXT" and "\\" not in value:
                encoded = b"".join(
                    bytes((len(part),)) + part for part in (s.encode() for s in records.txt_strings(value))
                )
            else:
                encoded = dns.rdata.from_text(IN, self.rtype(rtype), value).to_wire()
            self._rdata[(rtype, value)] = encoded
        return encoded


class UpdateBuilder:
    """The prerequisite and update sections of one UPDATE message."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.prerequisites = bytearray()
        self.deletions = bytearray()
        self.additions = bytearray()
        self.counts = [0, 0]  # prerequisites, updates

    @property
    def size(self) -> int:
        return 12 + len(self.prerequisites) + len(self.deletions) + len(self.additions)

    def _rr(self, into: bytearray, name: bytes, rtype: int, rclass: int, ttl: int, rdata: bytes = b"") -> None:
        into += name
        into += _RR.pack(rtype, rclass, ttl, len(rdata))
        into += rdata

    def add_change(self, change: Change) -> None:
        enc = self.encoder
        name, rtype = enc.name(change.name), enc.rtype(change.rtype)
        if change.mark:  # one TXT value of the fleet's own, beside other fleets' marks
            if change.action != CREATE:
                self._rr(self.deletions, name, rtype, NONE, 0, enc.rdata("TXT", change.old_values[0]))
                self.counts[1] += 1
            if change.action != DELETE:
                self._rr(self.additions, name, rtype, IN, change.ttl or 0, enc.rdata("TXT", change.values[0]))
                self.counts[1] += 1
            return
        if change.action == CREATE:
            self._rr(self.prerequisites, name, rtype, NONE, 0)  # RRset does not exist
            self.counts[0] += 1
        else:  # the RRset is exactly what the plan saw (compare-and-set)
            for value in change.old_values:
                self._rr(self.prerequisites, name, rtype, IN, 0, enc.rdata(change.rtype, value))
            self.counts[0] += len(change.old_values)
            self._rr(self.deletions, name, rtype, ANY, 0)
            self.counts[1] += 1
        if change.action in (CREATE, UPDATE):
            for value in change.values:
                self._rr(self.additions, name, rtype, IN, change.ttl or 0, enc.rdata(change.rtype, value))
            self.counts[1] += len(change.values)

    def add_txt(self, relative: str, value: str, ttl: int, delete: bool = False) -> None:
        """Add (or delete) one TXT value, leaving the other values at that name alone."""
        name, rdata = self.encoder.name(relative), self.encoder.rdata("TXT", value)
        if delete:
            self._rr(self.deletions, name, dns.rdatatype.TXT, NONE, 0, rdata)
        else:
            self._rr(self.additions, name, dns.rdatatype.TXT, IN, ttl, rdata)
        self.counts[1] += 1

    def render(self, zone: dns.name.Name, key: TsigKey, avoid=()) -> tuple[dns.message.Message, bytes]:
        """The signed message (for its id and MAC, to check the answer) and its wire form.

        Its (random) id is none of ``avoid``: the ids of the messages still waiting for an answer.
        A message whose records leave no room for the question and the TSIG record within 64 KiB is
        refused here, before anything is sent (one line naming the zone and the size).
        """
        if self.size + TSIG_RESERVE > MAX_MESSAGE:
            raise DnsError(f"zone {zone.to_text(omit_final_dot=True)}",
                           f"an UPDATE message of {self.size} bytes of records does not fit in one DNS message "
                           f"with its TSIG signature (at most {MAX_MESSAGE - TSIG_RESERVE} bytes)",
                           "lower cozy_dns.batch_size")
        message = key.update(zone.to_text())
        while message.id in avoid:
            message = key.update(zone.to_text())
        renderer = dns.renderer.Renderer(message.id, dns.opcode.to_flags(dns.opcode.UPDATE), MAX_MESSAGE)
        renderer.add_question(zone, dns.rdatatype.SOA, IN)
        renderer.output.write(self.prerequisites)
        renderer.output.write(self.deletions)
        renderer.output.write(self.additions)
        renderer.counts[dns.renderer.ANSWER] = self.counts[0]
        renderer.counts[dns.renderer.AUTHORITY] = self.counts[1]
        renderer.write_header()
        signed, _ = dns.tsig.sign(renderer.get_wire(), message.keyring, message.tsig[0], int(time.time()), b"")
        message.tsig.clear()
        message.tsig.add(signed)
        renderer.add_rrset(dns.renderer.ADDITIONAL, message.tsig)
        renderer.write_header()
        return message, renderer.get_wire()


def change_size(change: Change, encoder: Encoder) -> int:
    """An upper bound of the bytes a change adds to a message."""
    name = len(encoder.name(change.name)) + 10
    values = sum(name + len(encoder.rdata(change.rtype, value)) for value in change.values)
    old = sum(name + len(encoder.rdata(change.rtype, value)) for value in change.old_values)
    return values + 2 * old + 2 * name
