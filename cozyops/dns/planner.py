"""Desired x observed -> Plan. Pure functions, table-tested.

The ownership rule: the fleet creates records where there are none, and updates or deletes only
the records its own marks claim. A record it wants that exists unclaimed, or claimed by another
fleet, is a conflict: reported, never written (``adopt`` takes over unclaimed ones, never another
fleet's).

A mark is trusted only for what cozyops writes for its group (``records.claim_problem``): a mark
claiming anything else is malformed, reported in ``Plan.malformed`` and ignored entirely (its
claims count for no one, it is neither updated nor deleted). The zone's SOA and NS are never
planned.
"""

from __future__ import annotations

from collections import defaultdict

from cozyops.bulk import paused_gc
from cozyops.dns import records
from cozyops.dns.plan import CREATE, DELETE, UPDATE, Change, Conflict, Plan
from cozyops.dns.records import RRset


def mark_text(owner: str, keys) -> str:
    """The TXT value of the mark claiming ``keys`` ((name, type) pairs) for ``owner``."""
    claims: dict[str, list[str]] = {}
    for name, rtype in keys:
        claims.setdefault(name, []).append(rtype)
    return records.txt_text(records.mark_strings(owner, claims))


@paused_gc
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
    marks_index: dict[str, tuple[str, ...]] | None = None,
) -> Plan:
    """The changes that make ``observed`` hold ``desired``, within what ``fleet`` owns.

    ``marks=False`` (the manual provider) plans records only, with no ownership marks.
    ``marks_index`` is ``records.mark_index(observed)`` when the reader already built it.

    The common case is cheap: a group whose mark in the zone is exactly the one the plan would
    write is owned whole, and only its records' values are compared. Other marks (other fleets',
    groups that changed or went away) are parsed, and their groups planned record by record.
    """
    if not marks:
        changes = [Change(CREATE, r.name, r.rtype, r.ttl, r.values, None, (), r.group) for r in desired]
        return Plan(fleet, zone, provider, changes, [], 0, serial)

    prepared = isinstance(desired, records.Desired)
    if prepared:
        groups, claims = desired.groups, desired.claims
    else:
        groups = {}
        for record in desired:
            groups.setdefault(record.group, []).append(record)
        claims = {group: records.claim_strings(r[:2] for r in group_records) for group, group_records in groups.items()}
    mark_values = marks_index if marks_index is not None else records.mark_index(observed)
    # The mark each group needs (as records.txt_text(records.mark_strings(...)) writes it, inlined:
    # this loop runs once per instance), and the groups whose mark is in the zone exactly so.
    prefix = f'"{records.OWNER_PREFIX}{fleet}" "'
    mark_prefix = records.MARK_LABEL + "."
    wanted_text: dict[str, str] = {}
    mark_of: dict[str, str] = {}
    matched: set[tuple[str, str]] = set()  # (mark name, value): exactly what the plan writes
    matched_groups: set[str] = set()
    no_values = ()
    for group in groups:
        text = wanted_text[group] = prefix + '" "'.join(claims[group]) + '"'
        name = mark_of[group] = mark_prefix + group if group != "@" else records.MARK_LABEL
        if text in mark_values.get(name, no_values):
            matched.add((name, text))
            matched_groups.add(group)

    ours: dict[tuple[str, str], str] = {}  # claimed by a mark of ours that is not matched -> its name
    our_marks: dict[str, list[records.Mark]] = defaultdict(list)
    theirs: dict[tuple[str, str], str] = {}
    malformed: list[records.Mark] = []
    for name, values in mark_values.items():
        for text in values:
            if (name, text) in matched:
                continue
            mark = records.parse_mark(name, text)
            if mark is None:
                continue
            if mark.problem:
                malformed.append(mark)
                continue
            if mark.owner == fleet:
                our_marks[name].append(mark)
                for claim in mark.claims:
                    ours[claim] = name
            else:
                for claim in mark.claims:
                    theirs.setdefault(claim, mark.owner)

    changes: list[Change] = []
    conflicts: list[Conflict] = []
    owned = 0
    names: dict[str, list[tuple[str, str]]] = {}

    def blocker(record: RRset) -> tuple[str, str] | None:
        """What keeps a record from being created: another owner's CNAME, or data beside a CNAME."""
        if record.rtype != "CNAME":
            key = (record.name, "CNAME")
            return key if key in observed and key not in ours else None
        if not names:
            for other in observed:
                names.setdefault(other[0], []).append(other)
        return next((other for other in names.get(record.name, ()) if other not in ours), None)

    def create(record: RRset) -> bool:
        if (key := blocker(record)) is not None:
            conflicts.append(Conflict(record.name, record.rtype, theirs.get(key), observed[key].values))
            return False
        changes.append(Change(CREATE, record.name, record.rtype, record.ttl, record.values, None, (), record.group))
        return True

    get = observed.get
    for group, group_records in groups.items():
        mark = mark_of[group]
        if group in matched_groups:  # owned whole: compare values only
            for record in group_records:
                have = get(record[:2])
                if have is None:
                    create(record)
                    continue
                owned += 1
                if have[2:4] != record[2:4]:
                    changes.append(Change(UPDATE, record.name, record.rtype, record.ttl, record.values, have.ttl,
                                          have.values, group))
            if mark in our_marks:  # duplicates of ours at that name
                changes.extend(Change(DELETE, mark, "TXT", None, (), None, (extra.text,), group, True)
                               for extra in our_marks.pop(mark))
            continue
        kept: list[tuple[str, str]] = []
        for record in group_records:
            key = record[:2]
            have = observed.get(key)
            if have is None:
                if create(record):
                    kept.append(key)
            elif key in ours or (adopt and key not in theirs):
                kept.append(key)
                if have.ttl != record.ttl or have.values != record.values:
                    changes.append(Change(UPDATE, record.name, record.rtype, record.ttl, record.values, have.ttl,
                                          have.values, group))
            else:
                conflicts.append(Conflict(record.name, record.rtype, theirs.get(key), have.values))
        changes.extend(_mark_changes(fleet, group, kept, our_marks.pop(mark, []), mark_ttl))

    unwanted = []  # claimed by our marks, no longer wanted by the group that claims them
    present = []
    for key, mark in ours.items():
        have = observed.get(key)
        if have is None:
            continue
        present.append(key)
        group = records.group_of_mark(mark)
        if not any(record[:2] == key for record in groups.get(group, ())):
            unwanted.append((key, have, group))
    if present or unwanted:  # one pass over the records, for these names only
        names = {key[0] for key in present}
        elsewhere = {record[:2]: record.group for record in desired if record.name in names}
        # Counted once: a record a matched group's mark also claims was counted with that group.
        owned += sum(1 for key in present if elsewhere.get(key) not in matched_groups)
        # Never deleted: a record another fleet's mark claims too (whose it is is not clear).
        changes.extend(Change(DELETE, key[0], key[1], None, (), have.ttl, have.values, group)
                       for key, have, group in unwanted if key not in elsewhere and key not in theirs)
    for name, existing in our_marks.items():  # groups the fleet no longer has
        group = records.group_of_mark(name)
        changes.extend(Change(DELETE, name, "TXT", None, (), None, (mark.text,), group, True) for mark in existing)
    if any((change.name, change.rtype) in records.NEVER_PLANNED for change in changes):  # whatever asked for it
        changes = [change for change in changes if (change.name, change.rtype) not in records.NEVER_PLANNED]
    malformed.sort(key=lambda mark: (mark.name, mark.text))
    return Plan(fleet, zone, provider, changes, conflicts, owned, serial, malformed=malformed)


def _mark_changes(fleet: str, group: str, kept: list[tuple[str, str]], existing: list[records.Mark],
                  ttl: int) -> list[Change]:
    """The mark of a group planned record by record: claim exactly ``kept``, drop duplicates."""
    name = records.mark_name(group)
    changes = []
    wanted = frozenset(kept)
    keep = next((mark for mark in existing if mark.claims == wanted), None) if kept else None
    if kept and keep is None:
        text = mark_text(fleet, kept)
        if existing:
            keep = existing[0]
            changes.append(Change(UPDATE, name, "TXT", ttl, (text,), None, (keep.text,), group, True))
        else:
            changes.append(Change(CREATE, name, "TXT", ttl, (text,), None, (), group, True))
    changes.extend(Change(DELETE, name, "TXT", None, (), None, (mark.text,), group, True)
                   for mark in existing if mark is not keep)
    return changes
