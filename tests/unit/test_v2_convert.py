"""The v2 → v3 conversion tables: paths, NDJSON lines, contacts, calendar events."""

from __future__ import annotations

import icalendar
import pytest

from cozyops.v2 import convert
from tests.v2export import EVENT, vcard


@pytest.mark.parametrize(("dest", "parts", "path"), [
    ("/", ("files", "Documents", "a.pdf"), "/Documents/a.pdf"),
    ("/Imported", ("files", "Photos", "Transférées depuis Cozy Photos", "x.jpg"),
     "/Imported/Photos/Transférées depuis Cozy Photos/x.jpg"),
    ("Imported//v2/", ("files", "e\u0301te\u0301"), "/Imported/v2/e\u0301te\u0301"),  # bytes kept: NFD stays NFD
])
def test_v3_path(dest, parts, path):
    assert convert.v3_path(convert.destination_parts(dest), parts) == path


@pytest.mark.parametrize("dest", ["/a/../b", "/a\nb"])
def test_bad_destination(dest):
    with pytest.raises(ValueError):
        convert.destination_parts(dest)


@pytest.mark.parametrize(("name", "n", "out"), [
    ("report.pdf", 1, "report.pdf"), ("report.pdf", 2, "report (2).pdf"), ("archive.tar.gz", 3, "archive.tar (3).gz"),
    (".bashrc", 2, ".bashrc (2)"), ("noext", 2, "noext (2)"),
])
def test_conflict_name(name, n, out):
    assert convert.conflict_name(name, n) == out


def test_ndjson_without_trailing_newline_and_bad_lines():
    data = b'{"a":1}\n\nnot json\n[1]\n\xff\xfe\n{"b":2}'
    got = list(convert.ndjson(data))
    assert got[0] == (1, {"a": 1}) and got[-1] == (6, {"b": 2})
    assert [(n, v.reason) for n, v in got if isinstance(v, convert.BadLine)] == [
        (3, "not valid JSON"), (4, "not a JSON object"), (5, "not valid UTF-8")]


def test_ndjson_deep_nesting_is_a_bad_line_not_a_crash():
    got = list(convert.ndjson(b"[" * 100000 + b"]" * 100000 + b'\n{"x":1}'))
    assert isinstance(got[0][1], convert.BadLine) and got[1] == (2, {"x": 1})


@pytest.mark.parametrize(("line", "out"), [
    ({"_id": "a1", "_rev": "1-x", "name": "Vacances", "type": "io.cozy.photos.albums"},
     convert.Album("a1", "Vacances")),
    ({"name": "x"}, "no album _id"),
    ({"_id": "a", "name": 3}, "album name is not a string"),
])
def test_album_lines(line, out):
    assert convert.album_from(line) == out


@pytest.mark.parametrize(("line", "out"), [
    ({"albumid": "a1", "filepath": "Photos/Uploaded from Cozy Photos//I.jpg"},
     convert.Reference("a1", ("files", "Photos", "Uploaded from Cozy Photos", "I.jpg"))),
    ({"filepath": "Photos/x.jpg"}, convert.Reference(None, ("files", "Photos", "x.jpg"))),
    ({"albumid": "a1", "filepath": "../../etc/passwd"}, "filepath leaves the export (..)"),
    ({"albumid": "a1", "filepath": "/etc/passwd"}, "filepath is absolute"),
    ({"albumid": "a1"}, "no filepath"),
    ({"albumid": 5, "filepath": "x"}, "albumid is not a string"),
])
def test_reference_lines(line, out):
    assert convert.reference_from(line) == out


def test_contact_keeps_types_labels_primary_and_v3_names():
    text = vcard("Dupont;Jean;Paul;Dr;Jr", "Jean Dupont", "BDAY:1980-01-01", "NOTE:Voisin\\, 3ème étage",
                 "CATEGORIES:amis,famille", "ORG:Cozy;R&D", "TITLE:Dev", "TEL;TYPE=CELL:+33 6 12",
                 "TEL;TYPE=WORK,PREF:+33 1 00", "EMAIL;TYPE=HOME:jean@example.com",
                 "ADR;TYPE=HOME:;;12\\, rue Basse;Paris;;75011;France", "IMPP:xmpp:jean@jabber.example",
                 "URL:http://jean.example")
    [contact] = convert.contacts_from_vcf(text.encode())
    doc = contact.doc
    assert doc["name"] == {"familyName": "Dupont", "givenName": "Jean", "additionalName": "Paul", "namePrefix": "Dr",
                           "nameSuffix": "Jr"}
    assert doc["fullname"] == doc["displayName"] == "Jean Dupont"
    assert doc["birthday"] == "1980-01-01" and doc["note"] == "Voisin, 3ème étage"
    assert doc["company"] == "Cozy" and doc["jobTitle"] == "Dev"
    assert doc["phone"] == [{"number": "+33 6 12", "type": "cell"},
                            {"number": "+33 1 00", "type": "work", "label": "work", "primary": True}]
    assert doc["email"] == [{"address": "jean@example.com", "type": "home", "label": "home"}]
    assert doc["address"] == [{"street": "12, rue Basse", "city": "Paris", "code": "75011", "postcode": "75011",
                               "country": "France", "formattedAddress": "12, rue Basse, Paris, 75011, France",
                               "type": "home", "label": "home"}]
    assert doc["impp"] == [{"uri": "xmpp:jean@jabber.example", "protocol": "xmpp"}]
    assert contact.groups == ["amis", "famille"]
    assert contact.dropped == ["ORG department R&D", "URL:http://jean.example"]


@pytest.mark.parametrize(("data", "reason"), [
    (b"garbage", "not a vCard"),
    (b"BEGIN:VCARD\nVERSION:3.0\nN:a;b\n", "not a vCard"),
    (b"\xff\xfeBEGIN", "not valid UTF-8"),
    (b"", "no vCard"),
])
def test_garbage_vcards(data, reason):
    got = convert.contacts_from_vcf(data)
    assert isinstance(got, str) and reason in got


def test_events_to_one_calendar_with_cozy_ical_mapping():
    allday = {**EVENT, "_id": "e2", "start": "2017-04-01", "end": "2017-04-02", "alarms": [], "attendees": []}
    recurring = {**EVENT, "_id": "e3", "start": "2017-05-01T09:00:00.000", "end": "2017-05-01T10:00:00.000",
                 "rrule": "FREQ=WEEKLY;COUNT=3", "alarms": [{"id": 1, "trigg": "-PT1H", "action": "BOTH"}]}
    assert all(convert.event_problem(e) is None for e in (EVENT, allday, recurring))
    assert convert.calendar_name(EVENT) == "Travail" and convert.calendar_name({"tags": []}) == "Calendar"
    ics = convert.calendar_ics("Travail", [EVENT, allday, recurring])
    cal = icalendar.Calendar.from_ical(ics)
    events = cal.walk("VEVENT")
    assert [str(e["summary"]) for e in events] == ["Réunion équipe"] * 3
    first = events[0]
    assert str(first["location"]) == "Bureau" and str(first["description"]) == "Ordre du jour..."
    assert first.decoded("dtstart").isoformat() == "2017-03-10T09:00:00+00:00"
    assert "bob@example.com" in str(first["attendee"]) and first["attendee"].params["PARTSTAT"] == "ACCEPTED"
    assert events[1].decoded("dtstart").isoformat() == "2017-04-01"
    assert events[2]["dtstart"].params["TZID"] == "Europe/Paris"
    assert events[2]["rrule"]["FREQ"] == ["WEEKLY"]
    assert [a["action"] for a in events[2].walk("VALARM")] == ["DISPLAY", "EMAIL"]


@pytest.mark.parametrize("event", [{"_id": "x"}, {"_id": "x", "start": "not a date"},
                                   {"_id": "x", "start": "2017-01-01", "end": "31/12/2017"}, {"_id": "x", "start": 5}])
def test_bad_events_are_reported(event):
    assert convert.event_problem(event)


@pytest.mark.parametrize(("name", "file"), [("Travail", "Travail.ics"), ("a/b", "a_b.ics"), ("..", "Calendar.ics")])
def test_calendar_file_names(name, file):
    assert convert.calendar_file_name(name) == file


@pytest.mark.parametrize(("chunks", "out"), [
    ([b'{"a":1}\n{"b":', b'2}'], [{"a": 1}, {"b": 2}]),
    ([b'{"a":1}\n', b"x" * 40, b"y" * 40, b'\n{"c":3}\n'], [{"a": 1}, "line longer than 64 bytes", {"c": 3}]),
    ([b"z" * 100], ["line longer than 64 bytes"]),
])
def test_ndjson_streams_lines_with_a_length_limit(chunks, out):
    got = [v if isinstance(v, dict) else v.reason for _, v in convert.ndjson(iter(chunks), max_line=64)]
    assert got == out
