"""The hand-encoded UPDATE sections read back, through dnspython, as the intended message."""

import dns.message
import dns.name
import dns.rdata
import dns.rdataset
import dns.rdatatype
import dns.update
import pytest

from cozyops.dns import tsig, wire
from cozyops.dns.providers import rfc2136
from cozyops.plan import CREATE, DELETE, UPDATE, Change

ZONE = dns.name.from_text("example.org")
KEY = tsig.generate("test-key")

CHANGES = [
    Change(CREATE, "alice", "A", 300, ("192.0.2.10",), None, (), "alice"),
    Change(CREATE, "*.alice", "AAAA", 300, ("2001:db8::10",), None, (), "alice"),
    Change(CREATE, "alice", "CAA", 300, ('0 issue "letsencrypt.org"', '0 issuewild "letsencrypt.org"'), None, (),
           "alice"),
    Change(CREATE, "_cozyops.alice", "TXT", 300, ('"cozyops-owner=f" "alice A,CAA" "*.alice AAAA"',), None, (),
           "alice", True),
    Change(UPDATE, "bob", "A", 60, ("192.0.2.12",), 300, ("192.0.2.11",), "bob"),
    Change(UPDATE, "_cozyops.bob", "TXT", 300, ('"cozyops-owner=f" "bob A"',), None,
           ('"cozyops-owner=f" "bob A" "bob AAAA"',), "bob", True),
    Change(DELETE, "bob", "AAAA", None, (), 300, ("2001:db8::11",), "bob"),
    Change(DELETE, "@", "CAA", None, (), 300, ('0 issue "letsencrypt.org"',), "@"),
    Change(CREATE, "_acme-challenge.carol", "CNAME", 300, ("carol.example.org.acme.example.net.",), None, (), "carol"),
    Change(DELETE, "_cozyops", "TXT", None, (), None, ('"cozyops-owner=f" "@ CAA"',), "@", True),
]


def name(relative):
    return dns.name.from_text(relative, ZONE)


def reference(changes):
    """The same changes through dnspython's own UpdateMessage API."""
    update = dns.update.UpdateMessage(ZONE)
    for change in changes:
        rdtype = dns.rdatatype.from_text(change.rtype)
        if change.mark:
            if change.action != CREATE:
                update.delete(name(change.name), dns.rdata.from_text("IN", "TXT", change.old_values[0]))
            if change.action != DELETE:
                update.add(name(change.name), change.ttl, "TXT", change.values[0])
            continue
        if change.action == CREATE:
            update.absent(name(change.name), rdtype)
        else:
            old = dns.rdataset.from_text("IN", rdtype, 0, *change.old_values)
            update.present(name(change.name), old)
            update.delete(name(change.name), rdtype)
        for value in change.values:
            update.add(name(change.name), change.ttl, rdtype, value)
    return update


def lines(section):
    return sorted(line for rrset in section for line in rrset.to_text().splitlines())


def test_sections_match_dnspythons_and_the_signature_verifies():
    builder = wire.UpdateBuilder(wire.Encoder())
    for change in CHANGES:
        builder.add_change(change)
    message, data = builder.render(ZONE, KEY)
    parsed = dns.message.from_wire(data, keyring=KEY.keyring())  # raises unless the TSIG verifies
    expected = dns.message.from_wire(reference(CHANGES).to_wire())
    assert parsed.id == message.id and parsed.had_tsig
    assert parsed.zone[0].name == ZONE
    assert lines(parsed.prerequisite) == lines(expected.prerequisite)
    assert lines(parsed.update) == lines(expected.update)


def test_every_deletion_precedes_every_addition():
    builder = wire.UpdateBuilder(wire.Encoder())
    for change in reversed(CHANGES):
        builder.add_change(change)
    _, data = builder.render(ZONE, KEY)
    parsed = dns.message.from_wire(data, keyring=KEY.keyring(), one_rr_per_rrset=True)
    kinds = ["delete" if rrset.deleting else "add" for rrset in parsed.update]
    assert kinds == sorted(kinds, key=lambda kind: kind == "add")
    assert "add" in kinds and "delete" in kinds


def test_a_tampered_message_fails_verification():
    builder = wire.UpdateBuilder(wire.Encoder())
    builder.add_change(CHANGES[0])
    _, data = builder.render(ZONE, KEY)
    tampered = bytearray(data)
    tampered[data.index(bytes([192, 0, 2, 10]))] = 193
    with pytest.raises(dns.tsig.BadSignature):
        dns.message.from_wire(bytes(tampered), keyring=KEY.keyring())


def test_txt_value_for_acme_keeps_other_values():
    builder = wire.UpdateBuilder(wire.Encoder())
    builder.add_txt("_acme-challenge.alice", '"token-1"', 60)
    builder.add_txt("_acme-challenge.alice", '"token-0"', 0, delete=True)
    _, data = builder.render(ZONE, KEY)
    parsed = dns.message.from_wire(data, keyring=KEY.keyring())
    assert lines(parsed.update) == sorted([
        '_acme-challenge.alice.example.org. 0 NONE TXT "token-0"',
        '_acme-challenge.alice.example.org. 60 IN TXT "token-1"',
    ])
    assert not parsed.prerequisite


def group_changes(group, count):
    return [Change(CREATE, f"n{i}.{group}", "A", 300, ("192.0.2.1",), None, (), group) for i in range(count)]


@pytest.mark.parametrize(("sizes", "batch_size", "expected"), [
    ([3, 3, 3], 6, [6, 3]),  # whole groups only
    ([3, 3, 3], 5, [3, 3, 3]),
    ([8], 5, [8]),  # a group larger than a batch stays whole
    ([1] * 10, 4, [4, 4, 2]),
    ([], 1000, []),
])
def test_batches_keep_groups_whole(sizes, batch_size, expected):
    changes = [change for i, size in enumerate(sizes) for change in group_changes(f"g{i}", size)]
    batches = rfc2136.plan_batches(changes, batch_size)
    assert [len(batch) for batch in batches] == expected
    for batch in batches:
        groups = {change.group for change in batch}
        assert all(sum(c.group == g for c in changes) == sum(c.group == g for c in batch) for g in groups)


def test_batches_stay_under_the_message_size():
    long_values = tuple(f"192.0.2.{i}" for i in range(1, 200))
    changes = [Change(CREATE, f"big{i}", "A", 300, long_values, None, (), f"big{i}") for i in range(40)]
    batches = rfc2136.plan_batches(changes, 1000)
    assert len(batches) > 1
    encoder = wire.Encoder()
    for batch in batches:
        builder = wire.UpdateBuilder(encoder)
        for change in batch:
            builder.add_change(change)
        _, data = builder.render(ZONE, KEY)
        assert len(data) < wire.MAX_MESSAGE
