"""The wire-level zone transfer reader prints every value as dnspython does."""

import dns.exception
import dns.rdata
import dns.rdatatype
import pytest

from cozyops.dns import axfr

VALUES = [
    ("A", "192.0.2.1"),
    ("AAAA", "2001:db8::10"),
    ("AAAA", "2001:db8:0:1:1:1:1:1"),
    ("AAAA", "::ffff:192.0.2.1"),
    ("TXT", '"cozyops-owner=prod" "*.alice A,AAAA" "alice A,AAAA,CAA"'),
    ("TXT", '"with \\"quotes\\" and \\\\"'),
    ("TXT", '"bytes \\200\\001 and ünïcode"'),
    ("TXT", '""'),
    ("CAA", '0 issue "letsencrypt.org"'),
    ("CAA", '128 issuewild "ca.example.net; account=1"'),
    ("CAA", '0 iodef "mailto:\\"x\\"@example.org"'),
    ("CNAME", "target.example.net."),
    ("MX", "10 mail.example.org."),
    ("SOA", "ns1.example.org. hostmaster.example.org. 2024010101 60 30 600 60"),
    ("SRV", "0 5 5060 sip.example.org."),
]


@pytest.mark.parametrize(("rtype", "text"), VALUES)
def test_values_read_from_the_wire_print_as_dnspythons(rtype, text):
    rdata = dns.rdata.from_text("IN", rtype, text)
    wire = b"\x00" * 7 + rdata.to_wire() + b"\x00" * 3  # somewhere inside a message
    code = dns.rdatatype.from_text(rtype)
    assert axfr._text(wire, code, 7, len(wire) - 10) == rdata.to_text()


def test_names_are_decompressed():
    wire = b"\x00" * 12 + b"\x07example\x03org\x00" + b"\x05alice\xc0\x0c" + b"\x01*\xc0\x19"
    assert axfr._name(wire, 12) == ((b"example", b"org"), 25)
    assert axfr._name(wire, 25) == ((b"alice", b"example", b"org"), 33)
    assert axfr._name(wire, 33) == ((b"*", b"alice", b"example", b"org"), 37)


def test_a_compression_loop_is_an_error():
    wire = b"\x00" * 12 + b"\x01a\xc0\x0c"
    with pytest.raises(dns.exception.FormError):
        axfr._name(wire, 12)
