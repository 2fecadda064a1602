"""The live v2 database's documents → v3 tables: dates, tags, paths, contents, contacts, photos, URLs."""

from __future__ import annotations

import pytest

from cozyops.v2 import v2docs
from cozyops.v2.couchdb import CouchRefused, parse_url


@pytest.mark.parametrize(("value", "out"), [
    ("2017-01-15T10:00:01.000Z", "2017-01-15T10:00:01Z"),
    ("2017-01-15T10:00:01.250Z", "2017-01-15T10:00:01.250Z"),
    ("2017-01-15T11:00:01+01:00", "2017-01-15T10:00:01Z"),
    ("2017-01-15", "2017-01-15T00:00:00Z"),
    ("Sun Jan 15 2017 11:00:01 GMT+0100 (CET)", "2017-01-15T10:00:01Z"),  # JavaScript's Date.toString()
    ("Sun, 15 Jan 2017 10:00:01 GMT", "2017-01-15T10:00:01Z"),
    ("yesterday", None), ("", None), (None, None), (1484474401, None),
])
def test_v2_dates(value, out):
    moment = v2docs.parse_v2_date(value)
    assert (v2docs.rfc3339(moment) if moment else None) == out


@pytest.mark.parametrize(("created", "modified", "out"), [
    # v2 creationDate is the upload, lastModification the client's date: the earlier is the creation
    ("2017-01-15T10:00:01.000Z", "2017-01-14T18:20:00.000Z",
     {"created_at": "2017-01-14T18:20:00Z", "updated_at": "2017-01-14T18:20:00Z"}),
    ("2017-01-15T10:00:01.000Z", "2017-02-01T00:00:00.000Z",
     {"created_at": "2017-01-15T10:00:01Z", "updated_at": "2017-02-01T00:00:00Z"}),
    ("2017-01-15T10:00:01.000Z", None, {"created_at": "2017-01-15T10:00:01Z", "updated_at": "2017-01-15T10:00:01Z"}),
    (None, "garbage", {}),
])
def test_dates(created, modified, out):
    assert v2docs.dates(created, modified) == out


@pytest.mark.parametrize(("value", "kept", "dropped"), [
    (["a", " b ", "a", "", None, 3], ["a", "b"], []),
    (["x,y", "z"], ["z"], ["x,y"]),
    ("notalist", [], []),
])
def test_tags(value, kept, dropped):
    assert v2docs.tags(value) == (kept, dropped)


@pytest.mark.parametrize(("doc", "out"), [
    ({"_id": "f", "path": "", "name": "a.txt"}, ("files", "a.txt")),
    ({"_id": "f", "path": "/Documents/Factures", "name": "é.pdf", "tags": ["t"],
      "creationDate": "2016-05-02T08:12:00.000Z"},
     ("files", "Documents", "Factures", "é.pdf")),
    ({"_id": "f", "path": "/", "name": "r"}, ("files", "r")),
    ({"_id": "f", "path": None, "name": "r"}, ("files", "r")),
    ({"_id": "f", "path": "/../..", "name": "x"}, "name leaves the destination (..)"),
    ({"_id": "f", "path": "/A", "name": ".."}, "name leaves the destination (..)"),
    ({"_id": "f", "path": "/A", "name": "a/b"}, "name holds a /"),
    ({"_id": "f", "path": "/A", "name": "a\nb"}, "name holds a character cozy-stack forbids (NUL, CR or LF)"),
    ({"_id": "f", "path": "/A", "name": "a\ud800"}, "name is not valid UTF-8"),
    ({"_id": "f", "path": "/A", "name": ""}, "no name"),
    ({"_id": "f", "path": 3, "name": "x"}, "path is not a string"),
])
def test_entry(doc, out):
    found = v2docs.entry(doc)
    assert (found if isinstance(found, str) else found.parts) == out


def test_entry_options_and_notes():
    found = v2docs.entry({"_id": "f1", "path": "/A", "name": "x", "tags": ["a", "b,c"],
                          "creationDate": "2016-05-02T08:12:00.000Z", "lastModification": "2016-06-02T08:12:00.000Z"})
    assert found.v2_id == "f1"
    assert found.options == {"created_at": "2016-05-02T08:12:00Z", "updated_at": "2016-06-02T08:12:00Z", "tags": ["a"]}
    assert found.notes == ("tag 'b,c' holds a comma (v3 Tags are comma separated): not kept",)


@pytest.mark.parametrize(("doc", "kind", "out"), [
    ({"_id": "f", "binary": {"file": {"id": "b1"}, "thumb": {"id": "b2"}}}, "file", [("b1", "file"), ("b1", "raw")]),
    ({"_id": "p", "binary": {"raw": {"id": "r"}, "screen": {"id": "s"}}}, "photo", [("r", "raw"), ("r", "file")]),
    ({"_id": "p", "binary": {"file": {"id": "b1"}}}, "photo", [("b1", "raw"), ("b1", "file")]),
    ({"_id": "f", "_attachments": {"file": {"stub": True}}}, "file", [("f", "file")]),  # legacy content
    ({"_id": "f", "uploading": True}, "file", []),
    ({"_id": "f", "binary": "garbage"}, "file", []),
])
def test_content_sources(doc, kind, out):
    assert v2docs.content_sources(doc, kind) == out


@pytest.mark.parametrize(("doc", "locale", "out"), [
    ({"_id": "p1", "title": "IMG_1.JPG"}, "en", ("files", "Photos", "Uploaded from Cozy Photos", "IMG_1.JPG")),
    ({"_id": "p1", "title": ""}, "fr", ("files", "Photos", "Transférées depuis Cozy Photos", "p1.jpg")),
    ({"_id": "p1", "title": "../x"}, "en", "photo title is not a valid name"),
])
def test_photo_parts(doc, locale, out):
    assert v2docs.photo_parts(doc, locale) == out


def test_contact_fields():
    found = v2docs.contact({
        "_id": "c1", "docType": "contact", "n": "de Cozy;Testé;M;Dr;Jr", "fn": "Testé de Cozy", "bday": "1989-02-02",
        "org": "Cozy", "title": "Dev", "note": "46b12,\n3ème", "tags": ["groupe1", "groupe2"],
        "datapoints": [
            {"name": "tel", "type": "cell", "value": "+33612345678"},
            {"name": "tel", "type": "work,pref", "value": "+331"},
            {"name": "email", "type": "work", "value": "t@cozycloud.cc", "pref": True},
            {"name": "adr", "type": "home",
             "value": ["BP 1", "Bât. B", "12, rue René", "Paris", "", "75010", "France"]},
            {"name": "chat", "type": "skype", "value": "testé"},
            {"name": "url", "type": "", "value": "https://x.example"},
            "garbage",
        ],
        "nickname": "TT", "revision": "2017-01-01", "_attachments": {"picture": {"stub": True}},
    })
    doc = found.doc
    assert doc["name"] == {"familyName": "de Cozy", "givenName": "Testé", "additionalName": "M", "namePrefix": "Dr",
                           "nameSuffix": "Jr"}
    assert doc["fullname"] == doc["displayName"] == "Testé de Cozy"
    assert (doc["birthday"], doc["company"], doc["jobTitle"]) == ("1989-02-02", "Cozy", "Dev")
    assert doc["note"] == "46b12,\n3ème"
    assert doc["phone"] == [{"number": "+33612345678", "type": "cell"},
                            {"number": "+331", "type": "work", "label": "work", "primary": True}]
    assert doc["email"] == [{"address": "t@cozycloud.cc", "type": "work", "label": "work", "primary": True}]
    assert doc["address"] == [{"pobox": "BP 1", "street": "12, rue René", "city": "Paris", "code": "75010",
                               "postcode": "75010", "country": "France", "extendedAddress": {"locality": "Bât. B"},
                               "formattedAddress": "BP 1, Bât. B, 12, rue René, Paris, 75010, France",
                               "type": "home", "label": "home"}]
    assert doc["impp"] == [{"uri": "skype:testé", "protocol": "skype"}]
    assert doc["metadata"] == {"version": 1, "cozy": True}
    assert found.groups == ["groupe1", "groupe2"]
    assert found.dropped == ["URL:https://x.example", "datapoint 7: not a datapoint", 'nickname:"TT"']


@pytest.mark.parametrize(("doc", "why"), [
    ({"_id": "c", "n": ["a"]}, "field n is not a string"),
    ({"_id": "c", "fn": "x", "datapoints": "garbage"}, "datapoints is not a list"),
    ({"_id": "c"}, "no name and no datapoint: not a contact"),
    ({"_id": "c", "bday": 1980}, "field bday is not a string"),
])
def test_garbage_contacts(doc, why):
    assert v2docs.contact(doc) == why


def test_contact_without_fn_gets_a_fullname_and_no_n():
    assert v2docs.contact({"_id": "c", "n": "Dupont;Jean;;;"}).doc["fullname"] == "Jean Dupont"
    assert v2docs.contact({"_id": "c", "datapoints": [{"name": "email", "value": "a@b"}]}).doc == {
        "email": [{"address": "a@b"}], "metadata": {"version": 1, "cozy": True}}


@pytest.mark.parametrize(("doc", "v2_id", "ctype", "name"), [
    ({"fullname": "Jean Dupont"}, "c1", "image/png", "Jean Dupont.png"),
    ({"fullname": "A/B"}, "c1", "image/jpeg; charset=x", "A_B.jpg"),
    ({}, "c1", "image/gif", "c1.gif"),
    ({"fullname": ".."}, "c1", "application/x-unknown", "c1.jpg"),
])
def test_picture_name(doc, v2_id, ctype, name):
    assert v2docs.picture_name(doc, v2_id, ctype) == name


def test_archive_json_is_compact_and_keeps_the_document():
    doc = {"_id": "e1", "docType": "Event", "description": "Réunion"}
    assert v2docs.archive_json(doc) == '{"_id":"e1","docType":"Event","description":"Réunion"}'.encode()
    assert v2docs.archive_parts(doc) == ("files", "Archive", "event", "e1")
    assert v2docs.archive_parts({"_id": "../x", "docType": "Event"}) == "name leaves the destination (..)"


@pytest.mark.parametrize(("url", "server", "db", "user", "display"), [
    ("http://cozy:pw@localhost:5984/", "http://localhost:5984/", "cozy", "cozy", "http://cozy@localhost:5984/cozy"),
    ("http://localhost:5984", "http://localhost:5984/", "cozy", "", "http://localhost:5984/cozy"),
    ("https://u:p%40ss@db.example/couch/mydb", "https://db.example/couch/", "mydb", "u",
     "https://u@db.example/couch/mydb"),
])
def test_parse_url_keeps_the_password_out_of_display(url, server, db, user, display):
    parsed = parse_url(url)
    assert (parsed.server, parsed.db, parsed.user, parsed.display) == (server, db, user, display)
    assert "pw" not in parsed.display and "p@ss" not in parsed.display
    assert parse_url(url).source_id == parse_url(url.replace("pw", "other")).source_id  # not keyed by the password


def test_couch_url_repr_hides_the_password():
    parsed = parse_url("http://cozy:s3cret-pw@localhost:5984/cozy")
    assert parsed.password == "s3cret-pw"
    assert "s3cret" not in repr(parsed) and "s3cret" not in str(parsed)
    assert "cozy" in repr(parsed)


@pytest.mark.parametrize("url", ["ftp://x/cozy", "localhost:5984", "http:///cozy", "http://u:pa/ss@host/cozy"])
def test_parse_url_refuses_what_is_not_http(url):
    with pytest.raises(CouchRefused) as refused:
        parse_url(url)
    assert "pa" not in str(refused.value).replace("password", "").replace("part", "")


def test_archive_attachments_are_the_contents_the_document_owns():
    doc = {"_id": "m1", "docType": "Message", "binary": {"facture.pdf": {"id": "b1"}, "bad/name": {"id": "b2"},
                                                         "nothing": {}},
           "_attachments": {"a.txt": {"stub": True}}}
    assert v2docs.archive_attachments(doc) == [("m1.facture.pdf", [("b1", "facture.pdf")]),
                                               ("m1.a.txt", [("m1", "a.txt")])]
    assert v2docs.archive_attachments({"_id": "e1", "docType": "Event"}) == []


def test_parse_url_takes_the_password_from_the_environment_when_the_url_has_none(monkeypatch):
    monkeypatch.setenv("COZYOPS_COUCHDB_PASSWORD", "s3cret")
    parsed = parse_url("http://admin@127.0.0.1:5984/cozy")
    assert (parsed.user, parsed.password) == ("admin", "s3cret")
    assert "s3cret" not in parsed.display
    assert parse_url("http://admin:inline@127.0.0.1:5984/cozy").password == "inline"
    assert parse_url("http://127.0.0.1:5984/cozy").password == ""
