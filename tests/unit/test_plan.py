"""The resource-neutral plan (cozyops/plan.py): a change's kind, key, before and after, one list
and one checksum for every kind; the DNS plan gives its changes in that form. Pure."""

import ast
from pathlib import Path

from cozyops import plan
from cozyops.dns.plan import Change as DnsChange
from cozyops.dns.plan import Plan as DnsPlan
from cozyops.plan import CREATE, DELETE, UPDATE, Change, Plan

CREATED = DnsChange(CREATE, "alice", "A", 300, ("192.0.2.10",), None, (), "alice")
UPDATED = DnsChange(UPDATE, "alice", "AAAA", 300, ("2001:db8::10",), 60, ("2001:db8::99",), "alice")
DELETED = DnsChange(DELETE, "carol", "A", None, (), 300, ("192.0.2.11",), "carol")
MARK = DnsChange(UPDATE, "_cozyops.alice", "TXT", 300, ('"cozyops-owner=f" "alice A,AAAA"',), None,
                 ('"cozyops-owner=f" "alice A"',), "alice", True)


def test_a_dns_change_names_its_kind_key_before_and_after():
    assert CREATED.neutral() == Change("dns", CREATE, ("alice", "A"), None, (300, ("192.0.2.10",)))
    assert UPDATED.neutral() == Change("dns", UPDATE, ("alice", "AAAA"), (60, ("2001:db8::99",)),
                                       (300, ("2001:db8::10",)))
    assert DELETED.neutral() == Change("dns", DELETE, ("carol", "A"), (300, ("192.0.2.11",)), None)
    assert MARK.neutral().key == ("_cozyops.alice", "TXT", "mark")
    assert (MARK.kind, MARK.before, MARK.after) == ("dns", (None, MARK.old_values), (300, MARK.values))


def test_one_list_one_checksum_whatever_the_order():
    dns_plan = DnsPlan("f", "example.org", "rfc2136", [CREATED, UPDATED, DELETED, MARK])
    certificate = Change("certificate", CREATE, ("alice.example.org",), None, {"names": ["alice", "*.alice"]})
    one = Plan([*dns_plan.neutral(), certificate])
    other = Plan([certificate, *reversed(dns_plan.neutral())])
    assert one.checksum == other.checksum and len(one.checksum) == 16
    assert one.counts() == {CREATE: 2, UPDATE: 2, DELETE: 1}
    assert one.counts("dns") == {CREATE: 1, UPDATE: 2, DELETE: 1}
    changed = Plan([*dns_plan.neutral()[:-1], MARK._replace(values=('"x"',)).neutral(), certificate])
    assert changed.checksum != one.checksum  # an after value is part of it
    assert Plan([]).checksum != one.checksum


def test_the_dns_checksum_is_computed_as_before():
    import hashlib

    changes = [CREATED, UPDATED, DELETED, MARK]
    digest = hashlib.sha256(b"cozyops-dns-plan 1\nf\nexample.org\n")
    for change in sorted(changes):
        digest.update(repr(tuple(change)).encode() + b"\n")
    assert DnsPlan("f", "example.org", "rfc2136", changes).checksum == digest.hexdigest()[:16]


def test_the_neutral_plan_knows_no_resource():
    tree = ast.parse(Path(plan.__file__).read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [name for name in imported if name.startswith("cozyops")], imported
