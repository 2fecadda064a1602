"""v2 → v3 conversion: pure functions, no I/O (table-tested).

- paths: a v3 path is the member's name without ``files/``, empty and ``.`` parts dropped, names
  kept byte for byte (no Unicode normalisation: cozy-stack compares bytes), under the destination;
- conflict names follow cozy-stack's own ``ConflictName``: ``name (2).ext``, ``(3)``, ...;
- albums and references: NDJSON lines, each checked (a bad line is skipped with its reason);
- contacts: vCard 3.0 through vobject, to ``io.cozy.contacts`` with the field names of
  cozy-doctypes (``email[{address,type,label,primary}]``, ``phone``, ``address`` with ``code``
  and ``postcode``, ``name{familyName,...}``, ``company``, ``jobTitle``, groups from CATEGORIES);
- calendar events (``Archive/event``): to one iCalendar file per v2 calendar (``tags[0]``),
  through icalendar, with the mapping of cozy-ical.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import vobject
from icalendar import Alarm, Calendar, Event, vCalAddress, vRecur

from cozyops.v2.tarball import FORBIDDEN_CHARS

ALBUMS = "io.cozy.photos.albums"
CONTACTS = "io.cozy.contacts"
GROUPS = "io.cozy.contacts.groups"
CALENDAR_DIR = "Calendars"
DEFAULT_CALENDAR = "Calendar"


# -- paths ----------------------------------------------------------------------------------


def destination_parts(directory: str) -> tuple[str, ...]:
    """The destination directory (``--directory``), as parts; ``/`` is the Drive's root."""
    if not directory.startswith("/"):
        directory = "/" + directory
    parts = tuple(part for part in directory.split("/") if part not in ("", "."))
    if ".." in parts or any(c in p for p in parts for c in FORBIDDEN_CHARS):
        raise ValueError(f"destination {directory!r}: must be an absolute path without '..' or control characters")
    return parts


def v3_path(dest: tuple[str, ...], parts: tuple[str, ...]) -> str:
    """The v3 path of ``files/...`` member parts (the first part, ``files``, dropped)."""
    assert parts and parts[0] == "files"
    return "/" + "/".join(dest + parts[1:])


def conflict_name(name: str, n: int) -> str:
    """cozy-stack's ConflictName: ``report.pdf`` → ``report (2).pdf``; dot-files keep their name whole."""
    if n <= 1:
        return name
    base, ext = posixpath.splitext(name)
    if not base:  # ".bashrc"
        base, ext = name, ""
    return f"{base} ({n}){ext}"


def member_key(path: str, occurrence: int) -> str:
    """The identity of a member: its normalised name and its occurrence (1 for the first)."""
    return f"{path}#{occurrence}"


# -- NDJSON ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadLine:
    line: int
    reason: str


MAX_LINE = 1 << 20


def lines(chunks: Iterable[bytes], max_line: int = MAX_LINE) -> Iterator[bytes | None]:
    """The LF-separated lines of a stream of chunks (the last one may lack its LF), memory bounded:
    a line longer than ``max_line`` is given as None (and not kept)."""
    pending = b""
    too_long = False
    for chunk in chunks:
        pending += chunk
        while True:
            cut = pending.find(b"\n")
            if cut < 0:
                break
            yield None if too_long else pending[:cut]
            pending, too_long = pending[cut + 1:], False
        if len(pending) > max_line:
            pending, too_long = b"", True
    if pending or too_long:
        yield None if too_long else pending


def ndjson(data: bytes | Iterable[bytes], max_line: int = MAX_LINE) -> Iterator[tuple[int, dict | BadLine]]:
    """Each non-empty line (1-based number) as a JSON object, or why it is not one."""
    chunks = [data] if isinstance(data, bytes) else data
    for number, raw in enumerate(lines(chunks, max_line), 1):
        if raw is None:
            yield number, BadLine(number, f"line longer than {max_line} bytes")
            continue
        if not raw.strip():
            continue
        try:
            value = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            yield number, BadLine(number, "not valid UTF-8")
            continue
        except (ValueError, RecursionError):
            yield number, BadLine(number, "not valid JSON")
            continue
        if not isinstance(value, dict):
            yield number, BadLine(number, "not a JSON object")
            continue
        yield number, value


@dataclass(frozen=True)
class Album:
    v2_id: str
    name: str

    def doc(self) -> dict:
        return {"name": self.name}


def album_from(line: dict) -> Album | str:
    v2_id, name = line.get("_id"), line.get("name")
    if not isinstance(v2_id, str) or not v2_id:
        return "no album _id"
    if not isinstance(name, str):
        return "album name is not a string"
    return Album(v2_id, name)


@dataclass(frozen=True)
class Reference:
    albumid: str | None
    parts: tuple[str, ...]  # the photo's member parts, "files" first


def reference_from(line: dict) -> Reference | str:
    filepath, albumid = line.get("filepath"), line.get("albumid")
    if not isinstance(filepath, str) or not filepath:
        return "no filepath"
    if albumid is not None and not isinstance(albumid, str):
        return "albumid is not a string"
    if filepath.startswith("/"):
        return "filepath is absolute"
    parts = tuple(part for part in filepath.split("/") if part not in ("", "."))
    if ".." in parts:
        return "filepath leaves the export (..)"
    if not parts:
        return "empty filepath"
    return Reference(albumid or None, ("files", *parts))


# -- contacts -------------------------------------------------------------------------------

KNOWN_VCARD = {"version", "n", "fn", "bday", "note", "org", "title", "tel", "email", "adr", "categories", "impp",
               "rev", "uid"}


def _types(line) -> list[str]:
    types: list[str] = []
    for value in line.params.get("TYPE", []):
        types.extend(t.strip().lower() for t in value.split(",") if t.strip())
    return types


def _datapoint(line) -> dict:
    types = _types(line)
    return datapoint_fields(types, "pref" in types or "PREF" in line.params)


def datapoint_fields(types: list[str], primary: bool) -> dict:
    """``type`` (the types but pref/internet/voice), ``label`` work|home, ``primary`` of a datapoint."""
    kept = [t for t in types if t not in ("pref", "internet", "voice")] or [t for t in types if t != "pref"]
    point: dict = {}
    if kept:
        point["type"] = ",".join(kept)
    for label in ("work", "home"):
        if label in kept:
            point["label"] = label
            break
    if primary:
        point["primary"] = True
    return point


def _text(value) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


@dataclass
class Contact:
    doc: dict
    groups: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # vCard properties with no v3 field


def contacts_from_vcf(data: bytes) -> list[Contact] | str:
    """Every vCard of a .vcf as an io.cozy.contacts doc, or why the file does not parse."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "not valid UTF-8"
    try:
        cards = list(vobject.readComponents(text, ignoreUnreadable=False))
    except Exception as error:  # noqa: BLE001 - vobject raises many kinds on garbage
        return f"not a vCard ({type(error).__name__}: {str(error).splitlines()[0][:80] if str(error) else ''})"
    cards = [card for card in cards if getattr(card, "name", "").upper() == "VCARD"]
    if not cards:
        return "no vCard in the file"
    return [_contact(card) for card in cards]


def _contact(card) -> Contact:
    contents = card.contents
    doc: dict = {}
    name: dict = {}
    if "n" in contents:
        n = contents["n"][0].value
        for key, attr in (("familyName", "family"), ("givenName", "given"), ("additionalName", "additional"),
                          ("namePrefix", "prefix"), ("nameSuffix", "suffix")):
            value = _text(getattr(n, attr, "") or "")
            if value:
                name[key] = value
    if name:
        doc["name"] = name
    fullname = _text(contents["fn"][0].value) if "fn" in contents else ""
    if not fullname:
        fullname = " ".join(name.get(k, "") for k in ("namePrefix", "givenName", "additionalName", "familyName",
                                                      "nameSuffix") if name.get(k))
    if fullname:
        doc["fullname"] = doc["displayName"] = fullname
    for key, prop in (("birthday", "bday"), ("note", "note"), ("jobTitle", "title")):
        if prop in contents:
            doc[key] = _text(contents[prop][0].value)
    dropped: list[str] = []
    if "org" in contents:
        org = contents["org"][0].value
        org = org if isinstance(org, list) else [org]
        if org and org[0]:
            doc["company"] = org[0]
        if len(org) > 1 and any(org[1:]):
            dropped.append("ORG department " + ";".join(org[1:]))
    emails = [{"address": _text(line.value), **_datapoint(line)} for line in contents.get("email", [])]
    phones = [{"number": _text(line.value), **_datapoint(line)} for line in contents.get("tel", [])]
    addresses = []
    for line in contents.get("adr", []):
        adr = line.value
        entry = {"pobox": adr.box, "street": adr.street, "city": adr.city, "region": adr.region, "code": adr.code,
                 "postcode": adr.code, "country": adr.country}
        entry = {key: _text(value) for key, value in entry.items() if value}
        if adr.extended:
            entry["extendedAddress"] = {"locality": _text(adr.extended)}
        entry["formattedAddress"] = ", ".join(
            _text(v) for v in (adr.box, adr.extended, adr.street, adr.city, adr.region, adr.code, adr.country) if v)
        addresses.append({**entry, **_datapoint(line)})
    impps = []
    for line in contents.get("impp", []):
        uri = _text(line.value)
        impps.append({"uri": uri, "protocol": uri.split(":", 1)[0] if ":" in uri else "", **_datapoint(line)})
    for key, values in (("email", emails), ("phone", phones), ("address", addresses), ("impp", impps)):
        if values:
            doc[key] = values
    groups: list[str] = []
    for line in contents.get("categories", []):
        values = line.value if isinstance(line.value, list) else [line.value]
        groups.extend(v for v in (str(v).strip() for v in values) if v and v not in groups)
    for prop, lines in contents.items():
        if prop not in KNOWN_VCARD:
            dropped.extend(f"{prop.upper()}:{_text(line.value)[:60]}" for line in lines)
    doc["metadata"] = {"version": 1, "cozy": True}
    return Contact(doc, groups, dropped)


def group_id(name: str) -> str:
    """A fixed id for a contact group named ``name`` (so that a re-run finds it)."""
    return "v2group-" + hashlib.sha256(name.encode()).hexdigest()[:24]


# -- calendar -------------------------------------------------------------------------------


def calendar_name(event: dict) -> str:
    tags = event.get("tags")
    if isinstance(tags, list) and tags and isinstance(tags[0], str) and tags[0].strip():
        return tags[0].strip()
    return DEFAULT_CALENDAR


def calendar_file_name(calendar: str) -> str:
    clean = "".join("_" if c in "/\x00\r\n" else c for c in calendar).strip() or DEFAULT_CALENDAR
    if clean in (".", ".."):
        clean = DEFAULT_CALENDAR
    return clean + ".ics"


def _when(value: str, timezone: str, recurring: bool):
    if len(value) == 10:
        return datetime.date.fromisoformat(value), None
    if recurring and timezone and not value.endswith("Z"):
        local = datetime.datetime.fromisoformat(value[:19])
        return local, timezone  # cozy-ical: ambiguous local time in the event's timezone
    moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC), None


def vevent(event: dict) -> Event:
    """One v2 Event as a VEVENT (cozy-ical: description = SUMMARY, details = DESCRIPTION, place = LOCATION)."""
    item = Event()
    item.add("uid", (event.get("uuid") or event.get("_id") or "") + ("" if event.get("uuid") else "@cozy-v2"))
    item.add("dtstamp", datetime.datetime(2017, 1, 1, tzinfo=datetime.UTC))
    rrule = event.get("rrule") or ""
    timezone = event.get("timezone") or ""
    for key, prop in (("start", "dtstart"), ("end", "dtend")):
        value = event.get(key)
        if isinstance(value, str) and value:
            moment, tzid = _when(value, timezone, bool(rrule))
            item.add(prop, moment, parameters={"TZID": tzid} if tzid else None)
    for key, prop in (("description", "summary"), ("details", "description"), ("place", "location")):
        if isinstance(event.get(key), str) and event[key]:
            item.add(prop, event[key])
    if rrule:
        item.add("rrule", vRecur.from_ical(rrule.removeprefix("RRULE:")))
    for key, prop in (("created", "created"), ("lastModification", "last-modified")):
        value = event.get(key)
        if isinstance(value, str) and len(value) > 10:
            item.add(prop, _when(value, "", False)[0])
    for attendee in event.get("attendees") or []:
        if isinstance(attendee, dict) and attendee.get("email"):
            address = vCalAddress("mailto:" + attendee["email"])
            if attendee.get("status"):
                address.params["PARTSTAT"] = str(attendee["status"]).upper()
            item.add("attendee", address, encode=0)
    for alarm in event.get("alarms") or []:
        if not isinstance(alarm, dict) or not alarm.get("trigg"):
            continue
        actions = {"BOTH": ["DISPLAY", "EMAIL"]}.get(str(alarm.get("action", "DISPLAY")).upper(),
                                                      [str(alarm.get("action", "DISPLAY")).upper()])
        for action in actions:
            valarm = Alarm()
            valarm.add("action", action)
            valarm.add("trigger", _duration(alarm["trigg"]))
            valarm.add("description", event.get("description") or "Reminder")
            if action == "EMAIL":
                valarm.add("summary", event.get("description") or "Reminder")
            item.add_component(valarm)
    return item


def _duration(trigger: str) -> datetime.timedelta:
    from icalendar import vDuration

    return vDuration.from_ical(trigger)


def calendar_ics(name: str, events: Iterable[dict]) -> bytes:
    calendar = Calendar()
    calendar.add("prodid", "-//cozyops//Cozy v2 import//EN")
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", name)
    for event in events:
        calendar.add_component(vevent(event))
    return calendar.to_ical()


def event_problem(event: dict) -> str | None:
    """Why an event cannot become a VEVENT (checked before it is kept for its calendar), or None."""
    start = event.get("start")
    if not isinstance(start, str) or not start:
        return "event without a start"
    try:
        vevent(event).to_ical()
    except (ValueError, TypeError, KeyError) as error:
        return f"event not convertible ({type(error).__name__}: {error})"
    return None
