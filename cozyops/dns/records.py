"""The DNS records a fleet needs, and the ownership marks that say which records are whose. Pure.

Names are relative to the fleet's zone (``@`` is the apex), lowercase; values are in canonical
presentation form (what dnspython prints for the record read back from the server), sorted, so
that desired and observed records compare as plain tuples.

**Records per subdomain mode** (cozy-stack serves every app on its own host name):

- nested (``drive.alice.example.org``): per instance ``alice`` and ``*.alice`` to its server (A,
  and AAAA when the server has IPv6), and CAA at ``alice`` (it covers ``alice`` and the
  ``*.alice`` wildcard certificate without touching the rest of the zone);
- flat (``alice-drive.example.org``): per instance ``alice``; when all the instances under one
  parent share one server, one wildcard ``*.<parent>`` to it, else ``<instance>-<app>`` names for
  every app of every instance (a wildcard cannot point at two servers); CAA at the parent (where a
  CA looks for the ``*.<parent>`` certificate).

CAA holds ``issue`` and ``issuewild`` for each configured CA. With a delegated ACME challenge
zone, ``_acme-challenge.<name>`` is a CNAME to ``<name as FQDN>.<challenge zone>``.

**Ownership marks.** Records belong to the fleet that wrote them. A group of records (an
instance's, or the wildcard and CAA of a parent) is claimed by one TXT record at
``_cozyops.<group>`` (``_cozyops`` for the apex) whose first string is ``cozyops-owner=<fleet>``
and whose other strings list the names and types it claims (``"alice A,CAA" "*.alice A"``).
Several fleets may hold marks at one name: each only ever adds or removes its own TXT value.
A mark is trusted only for what cozyops writes for its group (:func:`claim_problem`); one that
claims anything else is malformed and ignored entirely, whoever it names as owner.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import NamedTuple

import dns.rdata
import dns.rdataclass
import dns.rdatatype

from cozyops.bulk import paused_gc
from cozyops.model import Fleet, Server, SubdomainMode

MARK_LABEL = "_cozyops"
OWNER_PREFIX = "cozyops-owner="
CHALLENGE_LABEL = "_acme-challenge"
# Record types cozyops writes (and so may own); everything else in a zone is never looked at.
MANAGED_TYPES = frozenset({"A", "AAAA", "CAA", "CNAME"})

_TXT_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


class RRset(NamedTuple):
    """One name and type: TTL and values. ``group`` names the mark that claims it (desired only)."""

    name: str
    rtype: str
    ttl: int
    values: tuple[str, ...]
    group: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.rtype)


def fqdn(name: str, zone: str) -> str:
    """``alice`` in ``example.org`` -> ``alice.example.org.``; ``@`` -> ``example.org.``."""
    return f"{zone}." if name == "@" else f"{name}.{zone}."


def relative(domain: str, zone: str) -> str:
    return "@" if domain == zone else domain[: -len(zone) - 1]


def wildcard(name: str) -> str:
    return "*" if name == "@" else f"*.{name}"


def child(label: str, name: str) -> str:
    return label if name == "@" else f"{label}.{name}"


def canonical(rtype: str, text: str) -> str:
    """The value as dnspython prints it (how records read from a server compare)."""
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rtype), text).to_text()


def address_records(server: Server) -> tuple[tuple[str, tuple[str, ...]], ...]:
    records = []
    if server.ipv4:
        records.append(("A", (canonical("A", server.ipv4),)))
    if server.ipv6:
        records.append(("AAAA", (canonical("AAAA", server.ipv6),)))
    return tuple(records)


def caa_values(issuers: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(canonical("CAA", f'0 {tag} "{ca}"') for ca in issuers for tag in ("issue", "issuewild")))


def challenge_target(name: str, zone: str, challenge_zone: str) -> str:
    return f"{fqdn(name, zone)}{challenge_zone}."


class Desired(list):
    """The records a fleet needs (a list of :class:`RRset`), with, per group, its records and the
    claim strings of its mark (``mark_strings`` without the owner), built as the records are."""

    def __init__(self) -> None:
        super().__init__()
        self.groups: dict[str, list[RRset]] = {}
        self.claims: dict[str, tuple[str, ...]] = {}

    def add_group(self, group: str, group_records: list[RRset]) -> None:
        known = self.groups.get(group)
        if known is None:
            self.groups[group] = group_records
        else:
            known.extend(group_records)
        self.extend(group_records)

    def finish(self) -> Desired:
        for group, group_records in self.groups.items():
            if group not in self.claims:
                self.claims[group] = claim_strings(record[:2] for record in group_records)
        return self


def claim_strings(keys) -> tuple[str, ...]:
    """``"<name> <TYPE>,<TYPE>"`` per claimed name, sorted: the body of a mark."""
    claims: dict[str, list[str]] = {}
    for name, rtype in keys:
        claims.setdefault(name, []).append(rtype)
    return tuple(f"{name} {','.join(sorted(claims[name]))}" for name in sorted(claims))


@paused_gc
def desired(fleet: Fleet) -> Desired:
    """Every record the fleet's instances need, each with the group (mark) that claims it.

    No two records share a name and type: instance labels cannot hold ``*`` or ``_``, flat-mode
    instance labels hold no ``-`` while app names do, and each parent gets one wildcard and CAA.
    The nested-mode loop is written for speed (a fleet of 100,000 instances plans in under 2 s).
    """
    zone, ttl = fleet.zone, fleet.dns.ttl
    by_server = {name: address_records(server) for name, server in fleet.servers.items()}
    caa = caa_values(fleet.acme.caa) if fleet.acme else ()
    delegation = fleet.dns.acme_challenge
    out = Desired()

    def certificate_records(name: str) -> list[RRset]:
        """What a certificate for ``name`` and ``*.name`` needs: CAA, the challenge's CNAME."""
        found = []
        if caa:
            found.append(RRset(name, "CAA", ttl, caa, name))
        if delegation:
            target = challenge_target(name, zone, delegation.zone)
            found.append(RRset(child(CHALLENGE_LABEL, name), "CNAME", ttl, (target,), name))
        return found

    if fleet.subdomains is SubdomainMode.NESTED:
        cut = -len(zone) - 1
        # Per server: the types at the instance's name and at its wildcard, as a mark lists them.
        name_types = {
            server: ",".join(sorted([rtype for rtype, _ in addresses] + (["CAA"] if caa else [])))
            for server, addresses in by_server.items()
        }
        star_types = {
            server: ",".join(sorted(rtype for rtype, _ in addresses)) for server, addresses in by_server.items()
        }
        groups, claims, extend = out.groups, out.claims, out.extend
        new = tuple.__new__  # RRset(...) without the Python-level __new__ of a NamedTuple
        for instance in fleet.instances:
            domain, server = instance.domain, instance.server
            if domain == zone:
                name, star = "@", "*"
            else:
                name = domain[:cut]
                star = "*." + name
            group = []
            for rtype, values in by_server[server]:
                group.append(new(RRset, (name, rtype, ttl, values, name)))
                group.append(new(RRset, (star, rtype, ttl, values, name)))
            entries = [f"{star} {star_types[server]}", f"{name} {name_types[server]}"]
            if caa:
                group.append(new(RRset, (name, "CAA", ttl, caa, name)))
            if delegation:
                challenge = child(CHALLENGE_LABEL, name)
                target = challenge_target(name, zone, delegation.zone)
                group.append(RRset(challenge, "CNAME", ttl, (target,), name))
                entries.append(f"{challenge} CNAME")
                entries.sort()
            groups[name] = group
            claims[name] = tuple(entries)
            extend(group)
        return out

    parents: dict[str, list] = defaultdict(list)
    for instance in fleet.instances:
        parents[instance.domain.split(".", 1)[1]].append(instance)
    for parent_domain, instances in parents.items():
        parent = relative(parent_domain, zone)
        targets = {by_server[instance.server] for instance in instances}
        shared = len(targets) == 1
        parent_records = certificate_records(parent)
        if shared:
            parent_records += [RRset(wildcard(parent), rtype, ttl, values, parent)
                               for rtype, values in next(iter(targets))]
        if parent_records:
            out.add_group(parent, parent_records)
        for instance in instances:
            name = relative(instance.domain, zone)
            addresses = by_server[instance.server]
            group = [RRset(name, rtype, ttl, values, name) for rtype, values in addresses]
            if not shared:
                first, _, rest = name.partition(".")
                for app in instance.apps:
                    app_name = f"{first}-{app}" + (f".{rest}" if rest else "")
                    group += [RRset(app_name, rtype, ttl, values, name) for rtype, values in addresses]
            out.add_group(name, group)
    return out.finish()


# -- marks -------------------------------------------------------------------------------------


def mark_name(group: str) -> str:
    return child(MARK_LABEL, group)


def mark_strings(owner: str, claims: dict[str, set[str]]) -> tuple[str, ...]:
    """The TXT strings of a mark: the owner, then ``"<name> <TYPE>,<TYPE>"`` per claimed name."""
    return (OWNER_PREFIX + owner, *claim_strings((name, rtype) for name in claims for rtype in claims[name]))


def txt_text(strings: tuple[str, ...]) -> str:
    """TXT presentation form (the strings of a mark never need escaping)."""
    return " ".join(f'"{string}"' for string in strings)


def txt_strings(text: str) -> list[str]:
    return _TXT_STRING.findall(text)


class Mark(NamedTuple):
    name: str  # where the TXT record is
    owner: str
    claims: frozenset[tuple[str, str]]  # (name, type)
    text: str  # the TXT value, as read
    problem: str | None = None  # why the mark is malformed (then it is ignored entirely), or None

    @property
    def group(self) -> str:
        return group_of_mark(self.name)

    def to_json(self, zone: str) -> dict:
        return {"name": fqdn(self.name, zone), "owner": self.owner, "value": self.text, "problem": self.problem}


# Never planned, whoever claims them: the zone's own records.
NEVER_PLANNED = frozenset({("@", "SOA"), ("@", "NS")})
# What a group's mark may claim, by where the name sits in the group (see the module's docstring).
_AT_GROUP = frozenset({"A", "AAAA", "CAA"})
_AT_WILDCARD = frozenset({"A", "AAAA"})
_AT_CHALLENGE = frozenset({"CNAME"})
_AT_APP_HOST = frozenset({"A", "AAAA"})
_GROUP_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")  # a host label, as instances.yml allows them
_FLAT_FIRST = re.compile(r"[a-z0-9]{1,63}")  # an instance's first label in flat mode: no '-'
_APP_SLUG = re.compile(r"[a-z0-9][a-z0-9_]{0,62}")


def group_of_mark(name: str) -> str:
    """``_cozyops.alice`` -> ``alice``; ``_cozyops`` -> ``@``."""
    return "@" if name == MARK_LABEL else name[len(MARK_LABEL) + 1:]


def claim_problem(group: str, name: str, rtype: str) -> str | None:
    """Why the mark of ``group`` may not claim ``name`` ``rtype``, or None when it may.

    A group's mark claims only what cozyops writes for that group, in either subdomain mode: A,
    AAAA and CAA at the group's name; A and AAAA at its wildcard; the CNAME of a delegated ACME
    challenge at ``_acme-challenge.<group>``; A and AAAA at the flat-mode app hosts
    (``alice-drive`` for the group ``alice``, ``alice-drive.team`` for ``alice.team``); and its own
    TXT value (implied: a claim of it changes nothing). The zone's SOA and NS never.
    """
    if (name, rtype) in NEVER_PLANNED:
        return f"claims {name} {rtype}: the zone's {rtype} is never planned"
    if group != "@" and not all(_GROUP_LABEL.fullmatch(label) for label in group.split(".")):
        return f"claims {name} {rtype}: {group} is not a name cozyops marks"
    if name == group:
        allowed = _AT_GROUP
    elif name == wildcard(group):
        allowed = _AT_WILDCARD
    elif name == child(CHALLENGE_LABEL, group):
        allowed = _AT_CHALLENGE
    elif name == mark_name(group):
        allowed = frozenset({"TXT"})
    elif _is_app_host(group, name):
        allowed = _AT_APP_HOST
    else:
        return f"claims {name} {rtype}: not a name of the group {group}"
    if rtype not in allowed:
        return f"claims {name} {rtype}: cozyops never writes {rtype} there"
    return None


def _is_app_host(group: str, name: str) -> bool:
    """Is ``name`` a flat-mode app host of the instance ``group`` (``alice-<app>[.rest]``)?"""
    if group == "@":
        return False
    first, _, rest = group.partition(".")
    host, _, host_rest = name.partition(".")
    prefix, dash, app = host.partition("-")
    return (dash == "-" and host_rest == rest and prefix == first and _FLAT_FIRST.fullmatch(first) is not None
            and _APP_SLUG.fullmatch(app) is not None)


def parse_mark(name: str, text: str) -> Mark | None:
    """A cozyops mark from one TXT value at ``name``, or None if the value is not one.

    A mark that claims anything its group's mark may not (:func:`claim_problem`), or holds an
    entry that is not ``"<name> <TYPE>,..."``, comes back with its ``problem`` set and no claims:
    it is malformed, and ignored entirely.
    """
    strings = txt_strings(text)
    if not strings or not strings[0].startswith(OWNER_PREFIX):
        return None
    owner = strings[0][len(OWNER_PREFIX):]
    group = group_of_mark(name)
    claims = set()
    for entry in strings[1:]:
        claimed, _, types = entry.partition(" ")
        rtypes = types.split(",")
        if not claimed or not all(rtypes):
            return Mark(name, owner, frozenset(), text, f"holds {entry!r}, not '<name> <TYPE>,<TYPE>'")
        for rtype in rtypes:
            problem = claim_problem(group, claimed, rtype)
            if problem:
                return Mark(name, owner, frozenset(), text, problem)
            if rtype != "TXT":  # its own value: the mark is that already
                claims.add((claimed, rtype))
    return Mark(name, owner, frozenset(claims), text)


def malformed_marks(marks: dict[str, tuple[str, ...]]) -> list[Mark]:
    """The malformed marks among the TXT values at mark names (``mark_index``), any owner."""
    found = []
    for name in sorted(marks):
        for text in marks[name]:
            mark = parse_mark(name, text)
            if mark is not None and mark.problem:
                found.append(mark)
    return found


def is_mark_name(name: str) -> bool:
    return name == MARK_LABEL or name.startswith(MARK_LABEL + ".")


def mark_index(rrsets: dict[tuple[str, str], RRset]) -> dict[str, tuple[str, ...]]:
    """The TXT values at mark names (``_cozyops[.<group>]``), by name."""
    return {name: rrset.values for (name, rtype), rrset in rrsets.items() if rtype == "TXT" and is_mark_name(name)}


# -- zone files --------------------------------------------------------------------------------


def zone_snippet(zone: str, records: list[RRset], header: str = "") -> str:
    """The records as zone-file lines, to paste into a zone managed elsewhere."""
    lines = [f"; {line}" for line in header.splitlines()] + [f"$ORIGIN {zone}."]
    width = max((len(record.name) for record in records), default=1)
    by_name: dict[str, list[RRset]] = {}  # a name has several types: its key is made once
    for record in records:
        by_name.setdefault(record.name, []).append(record)
    for name in sorted(by_name, key=_zone_down):
        padded = name.ljust(width)
        for record in sorted(by_name[name], key=_type_order):
            start = f"{padded} {record.ttl} IN {record.rtype:<5} "  # once per record, not per value
            lines.extend([start + value for value in record.values])
    return "\n".join(lines) + "\n"


def _type_order(record: RRset) -> str:
    return record.rtype


def _zone_down(name: str) -> str:
    """The sort key of a name: apex first, then the labels read from the zone down, so that related
    names sit together. Joined by NUL (below every character of a label), comparing these strings
    orders as comparing the lists of labels would, at a fraction of the cost."""
    return "" if name == "@" else "\x01" + "\x00".join(reversed(name.split(".")))
