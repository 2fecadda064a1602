"""Desired x observed -> Plan. Pure functions, table-tested.

The ownership rule: the fleet creates records where there are none, and updates or deletes only
the records its own marks claim. A record it wants that exists unclaimed, or claimed by another
fleet, is a conflict: reported, never written (``adopt`` takes over unclaimed ones, never another
fleet's).
"""

from __future__ import annotations

from collections import defaultdict

from cozyops.dns import records
from cozyops.dns.records import RRset
from cozyops.plan import CREATE, DELETE, UPDATE, Change, Conflict, Plan


def _group_of_mark(name: str) -> str:
    return "@" if name == records.MARK_LABEL else name[len(records.MARK_LABEL) + 1:]


def plan_dns(
    fleet: str,
    zone: str,
    provider: str,
    desired: list[RRset],
    observed: dict[tuple[str, str], RRset],
    *,
    serial: int | None = None,
    adopt: bool = False,
    marks: bool = True,
    mark_ttl: int = 300,
) -> Plan:
    """The changes that make ``observed`` hold ``desired``, within what ``fleet`` owns.

    ``marks=False`` (the manual provider) plans records only, with no ownership marks.
    """
    ours: dict[tuple[str, str], str] = {}  # claimed record -> the mark name claiming it
    our_marks: dict[str, list[records.Mark]] = defaultdict(list)
    theirs: dict[tuple[str, str], str] = {}
    for mark in records.marks_in(observed) if marks else ():
        if mark.owner == fleet:
            our_marks[mark.name].append(mark)
            for claim in mark.claims:
                ours[claim] = mark.name
        else:
            for claim in mark.claims:
                theirs.setdefault(claim, mark.owner)

    changes: list[Change] = []
    conflicts: list[Conflict] = []
    claims: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    wanted: set[tuple[str, str]] = set()
    names: dict[str, list[tuple[str, str]]] | None = None

    for record in desired:
        key = (record.name, record.rtype)
        wanted.add(key)
        have = observed.get(key)
        if have is None:
            blocker = None
            if record.rtype == "CNAME":  # a CNAME stands alone at its name
                if names is None:
                    names = defaultdict(list)
                    for other in observed:
                        names[other[0]].append(other)
                blocker = next((other for other in names.get(record.name, ()) if other not in ours), None)
            elif (record.name, "CNAME") in observed and (record.name, "CNAME") not in ours:
                blocker = (record.name, "CNAME")
            if blocker:
                conflicts.append(Conflict(record.name, record.rtype, theirs.get(blocker),
                                          observed[blocker].values))
                continue
            changes.append(Change(CREATE, record.name, record.rtype, record.ttl, record.values, None, (),
                                  record.group))
        elif key in ours or (adopt and key not in theirs):
            if have.ttl != record.ttl or have.values != record.values:
                changes.append(Change(UPDATE, record.name, record.rtype, record.ttl, record.values, have.ttl,
                                      have.values, record.group))
        else:
            conflicts.append(Conflict(record.name, record.rtype, theirs.get(key), have.values))
            continue
        claims[record.group][record.name].add(record.rtype)

    owned = 0
    for key, mark in ours.items():
        have = observed.get(key)
        if have is None:
            continue
        owned += 1
        if key not in wanted:
            changes.append(Change(DELETE, key[0], key[1], None, (), have.ttl, have.values, _group_of_mark(mark)))

    if marks:
        changes.extend(_mark_changes(fleet, claims, our_marks, mark_ttl))
    return Plan(fleet, zone, provider, changes, conflicts, owned, serial)


def _mark_changes(
    fleet: str, claims: dict[str, dict[str, set[str]]], our_marks: dict[str, list[records.Mark]], ttl: int
) -> list[Change]:
    changes = []
    for group, group_claims in claims.items():
        name = records.mark_name(group)
        text = records.txt_text(records.mark_strings(fleet, group_claims))
        wanted = frozenset((claimed, rtype) for claimed, types in group_claims.items() for rtype in types)
        existing = our_marks.pop(name, [])
        keep = next((mark for mark in existing if mark.claims == wanted), None)
        if keep is None and existing:
            keep = existing[0]
            changes.append(Change(UPDATE, name, "TXT", ttl, (text,), None, (keep.text,), group, True))
        elif keep is None:
            changes.append(Change(CREATE, name, "TXT", ttl, (text,), None, (), group, True))
        for extra in existing:
            if extra is not keep:
                changes.append(Change(DELETE, name, "TXT", None, (), None, (extra.text,), group, True))
    for name, existing in our_marks.items():  # groups the fleet no longer has
        for mark in existing:
            changes.append(Change(DELETE, name, "TXT", None, (), None, (mark.text,), _group_of_mark(name), True))
    return changes
