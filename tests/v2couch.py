"""Live v2 databases made by the tests: v2-shaped CouchDB documents, loaded into a real pouchdb-server.

The documents follow ../shared/reference/cozy-v2-export.md: ``Folder``/``File`` (cozy-files: parent
``path`` ``""`` or ``/A/B``, ``creationDate``, ``lastModification``, ``tags``, ``binary.file`` →
a ``Binary`` doc holding the attachment ``file``; §1.4), ``Photo``/``Album`` (cozy-photos-v2:
``binary.raw``/``screen``/``thumb``, ``albumid``, a photo "imported from Files" reusing the File's
``binary.file``; §1.5), ``contact`` (cozy-contacts-v2: ``n``, ``fn``, ``datapoints``, ``tags``, the
picture as the attachment ``picture`` of the contact doc; §1.6), ``Event``, ``Tag``,
``CozyInstance`` (the locale) and ``_design`` docs (§1.2, §1.7).

``PouchServer`` runs pouchdb-server from the lab's cache (COZYOPS_POUCHDB_CACHE), on 127.0.0.1 of
the root namespace or of a lab's namespace, its data in the test's scratch directory; it is
stopped by its PID.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.v2export import EVENT

PHOTO_DIRS = {"en": "Uploaded from Cozy Photos", "fr": "Transférées depuis Cozy Photos"}


def _attachment(data: bytes, content_type: str) -> dict:
    return {"content_type": content_type, "data": base64.b64encode(data).decode()}


@dataclass
class V2Db:
    """The documents of a v2 database ``cozy``, built by the tests; ``load`` puts them in CouchDB."""

    locale: str = "en"
    docs: list[dict] = field(default_factory=list)
    counter: int = 0

    def new_id(self, hint: str) -> str:
        self.counter += 1
        return hashlib.sha1(f"{hint}{self.counter}".encode()).hexdigest()[:30]

    def add(self, doc: dict) -> str:
        doc.pop("_rev", None)  # new documents (a _rev would make _bulk_docs see an update)
        doc.setdefault("_id", self.new_id(doc.get("docType", "")))
        self.docs.append(doc)
        return doc["_id"]

    def binary(self, data: bytes, name: str = "file", content_type: str = "application/octet-stream") -> str:
        return self.add({"docType": "Binary", "_attachments": {name: _attachment(data, content_type)}})

    def folder(self, path: str, name: str, created: str = "2016-05-02T08:12:00.000Z",
               modified: str = "2016-05-02T08:12:00.000Z", tags: list | None = None, **extra) -> str:
        return self.add({"docType": "Folder", "path": path, "name": name, "creationDate": created,
                         "lastModification": modified, "tags": tags or [], **extra})

    def file(self, path: str, name: str, data: bytes, created: str = "2017-01-15T10:00:01.000Z",
             modified: str = "2017-01-14T18:20:00.000Z", tags: list | None = None, doctype: str = "File",
             **extra) -> str:
        binary = self.binary(data)
        return self.add({"docType": doctype, "path": path, "name": name, "mime": "application/octet-stream",
                         "class": "document", "size": len(data), "creationDate": created,
                         "lastModification": modified, "tags": tags or [], "uploading": False,
                         "checksum": hashlib.sha1(data).hexdigest(), "binary": {"file": {"id": binary, "rev": "1"}},
                         **extra})

    def album(self, title: str, description: str = "") -> str:
        return self.add({"docType": "Album", "title": title, "description": description,
                         "date": "2016-08-20T00:00:00.000Z", "orientation": 1, "coverPicture": "", "clearance": [],
                         "folderid": ""})

    def photo(self, title: str, data: bytes, albumid: str | None = None, date: str = "2016-08-21T09:12:33.000Z",
              **extra) -> str:
        binary = {"raw": {"id": self.binary(data, "raw", "image/jpeg"), "rev": "1"},
                  "screen": {"id": self.binary(b"screen " + data[:10], "screen", "image/jpeg"), "rev": "1"},
                  "thumb": {"id": self.binary(b"thumb", "thumb", "image/jpeg"), "rev": "1"}}
        doc = {"docType": "Photo", "title": title, "description": "", "orientation": 1, "date": date, "gps": {},
               "binary": binary, **extra}
        if albumid:
            doc["albumid"] = albumid
        return self.add(doc)

    def photo_from_file(self, file_id: str, albumid: str | None) -> str:
        """A Photo "imported from Files" (cozy-photos-v2 createPhoto): ``title: ""``, the File's binary."""
        file = next(doc for doc in self.docs if doc["_id"] == file_id)
        doc = {"docType": "Photo", "title": "", "binary": {"file": dict(file["binary"]["file"])}}
        if albumid:
            doc["albumid"] = albumid
        return self.add(doc)

    def contact(self, n: str, fn: str, datapoints: list, picture: bytes | None = None, **fields) -> str:
        doc = {"docType": "contact", "n": n, "fn": fn, "datapoints": datapoints, **fields}
        if picture is not None:
            doc["_attachments"] = {"picture": _attachment(picture, "image/png")}
        return self.add(doc)

    # -- loading -------------------------------------------------------------------------------

    def load(self, base: str, db: str = "cozy", batch: int = 200) -> None:
        """Create ``db`` and put every document (attachments inline, as base64) through _bulk_docs."""
        with requests.Session() as session:
            session.trust_env = False
            reply = session.put(f"{base}/{db}")
            assert reply.status_code in (201, 412), reply.text
            for start in range(0, len(self.docs), batch):
                reply = session.post(f"{base}/{db}/_bulk_docs", json={"docs": self.docs[start:start + batch]})
                assert reply.status_code == 201, reply.text
                assert all(row.get("ok") for row in reply.json()), reply.text


def realistic_db(locale: str = "en") -> tuple[V2Db, dict]:
    """A realistic v2 database, and what it holds for the tests to check: files (path -> bytes, dates,
    tags), photos and their albums, contacts with fields and a picture, events, other doctypes."""
    fr = locale == "fr"
    db = V2Db(locale)
    db.add({"_id": "_design/file", "views": {"all": {"map": "function (doc) {}"}}})
    db.add({"docType": "CozyInstance", "locale": locale, "domain": "old.example"})
    docs, bills = "Documents", ("Factures" if fr else "Bills")
    db.folder("", docs, tags=["papiers"], created="2015-01-02T03:04:05.000Z", modified="2015-06-07T08:09:10.000Z")
    db.folder(f"/{docs}", bills, tags=["factures", "a,b"])
    db.folder("", "Photos")
    files = {
        f"{docs}/{bills}/edf-2017-01.pdf": (b"%PDF-1.4 edf " * 300, ["facture", "edf"]),
        f"{docs}/{bills}/reçu été.txt": ("reçu d'été ✓".encode(), []),
        "notes.txt": (b"v2 notes\n", []),
        f"{docs}/" + "n" * 120 + ".txt": (b"a long name", []),
        "Photos/beach.jpg": (b"\xff\xd8\xff beach" * 20, []),
    }
    ids = {}
    for path, (data, tags) in files.items():
        parent, _, name = path.rpartition("/")
        ids[path] = db.file(f"/{parent}" if parent else "", name, data, tags=tags)
    holiday = db.album("Vacances 2016" if fr else "Holidays 2016", description="Été")
    db.album("Vide")
    photos = {"IMG_0001.JPG": (b"\xff\xd8\xff jpeg 1" * 50, holiday),
              "Plage été.jpg": (b"\xff\xd8\xff jpeg 3", holiday)}
    for title, (data, album) in photos.items():
        db.photo(title, data, album)
    untitled = db.photo("", b"\xff\xd8\xff jpeg 2" * 50)
    db.photo_from_file(ids["Photos/beach.jpg"], holiday)
    photo_dir = f"Photos/{PHOTO_DIRS[locale]}"
    expected = {path: data for path, (data, _) in files.items()}
    expected.update({f"{photo_dir}/{title}": data for title, (data, _) in photos.items()})
    expected[f"{photo_dir}/{untitled}.jpg"] = b"\xff\xd8\xff jpeg 2" * 50
    picture = b"\x89PNG\r\n\x1a\n picture of jean"
    db.contact("Dupont;Jean;;;", "Jean Dupont", [
        {"name": "tel", "type": "cell", "value": "+33 6 12 34 56 78"},
        {"name": "tel", "type": "work", "value": "+33 1 00 00 00 00", "pref": True},
        {"name": "email", "type": "home", "value": "jean@example.com"},
        {"name": "adr", "type": "home", "value": ["", "", "12, rue Basse", "Paris", "", "75011", "France"]},
        {"name": "url", "type": "", "value": "https://jean.example"},
    ], picture=picture, bday="1980-01-01", note="Voisin, 3ème étage", org="Cozy", title="Dev", tags=["amis"])
    db.contact("Dupont;Jean;;;", "Jean Dupont (bis)", [{"name": "email", "type": "work", "value": "jd@work.example"}])
    db.add(dict(EVENT))
    db.add({**EVENT, "_id": "5c1e0000000000000000000000000b", "start": "2017-04-01", "end": "2017-04-02",
            "description": "Jour férié", "tags": ["Perso"], "alarms": [], "attendees": []})
    db.add({"_id": "tag1", "docType": "Tag", "name": "Travail", "color": "#ff0000"})
    # another app's contents (reference §4: cozy-monitor lost them): a Binary it owns, legacy _attachments
    mail = db.binary(b"%PDF mail attachment", "facture.pdf", "application/pdf")
    db.add({"_id": "mail1", "docType": "Message", "subject": "Facture", "binary": {"facture.pdf": {"id": mail}}})
    db.add({"_id": "note1", "docType": "Note", "_attachments": {"a.txt": _attachment(b"legacy", "text/plain")}})
    expected["Archive/message/mail1.facture.pdf"] = b"%PDF mail attachment"
    expected["Archive/note/note1.a.txt"] = b"legacy"
    # a Binary nothing refers to (its owner deleted, say): kept with its contents, not dropped silently
    orphan = db.binary(b"orphan bytes", "file", "application/octet-stream")
    expected[f"Archive/binary/{orphan}.file"] = b"orphan bytes"
    return db, {"files": expected, "ids": ids, "picture": picture, "album": "Vacances 2016" if fr else "Holidays 2016",
                "photo_dir": photo_dir}


def hostile_db() -> V2Db:
    """Documents a v2 database should not hold but may: each is skipped and reported, the rest imported."""
    db = V2Db()
    db.add({"docType": "CozyInstance", "locale": "en"})
    db.folder("", "Keep")
    db.file("/Keep", "ok.txt", b"ok")
    db.file("/../..", "outside.txt", b"escape")
    db.file("/Keep", "..", b"dotdot")
    db.file("/Keep", "a/b.txt", b"slash in name")
    db.file("/Keep", "nul\x00.txt", b"nul")
    db.file("/Keep", "bad\ud800.txt", b"lone surrogate")
    db.file("/Keep", "twice.txt", b"first")
    db.file("/Keep", "twice.txt", b"second")
    db.add({"docType": "File", "path": "/Keep", "name": "never.txt", "uploading": True, "size": 3})
    db.add({"docType": "File", "path": "/Keep", "name": "lost.txt", "binary": {"file": {"id": "nobinary"}}})
    db.add({"docType": "contact", "n": ["not", "a", "string"], "datapoints": []})
    db.add({"docType": "contact", "fn": "x", "datapoints": "garbage"})
    db.add({"docType": "contact"})
    return db


# -- pouchdb-server --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PouchServer:
    """pouchdb-server on 127.0.0.1:``port`` (of ``netns`` when given), data in ``data_dir``."""

    def __init__(self, data_dir: Path, port: int | None = None, netns: str | None = None) -> None:
        self.data_dir, self.netns = data_dir, netns
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, function):
        """Run ``function`` where the server listens (inside the namespace when there is one)."""
        if self.netns is None:
            return function()
        from cozyops.lab import netns

        return netns.inside(self.netns, function)

    def __enter__(self) -> PouchServer:
        from cozyops.lab import pouchdb, procs

        node = shutil.which("node")
        assert node, "node is needed for pouchdb-server"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = procs.netns_argv(self.netns, pouchdb.argv(node, self.port, "127.0.0.1", self.data_dir))
        with open(self.data_dir / "server.log", "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        deadline = time.monotonic() + 60
        while not self.call(self._up):
            assert self.process.poll() is None, (self.data_dir / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "pouchdb-server did not start in 60 s"
            time.sleep(0.2)
        return self

    def _up(self) -> bool:
        try:
            return requests.get(self.base + "/", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)  # `ip netns exec` execs node: this PID is the server's
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def add_admin(self, user: str, password: str) -> None:
        """End the admin party (after loading: pouchdb-server 4.2.0 then needs credentials to create dbs)."""
        def put() -> None:
            reply = requests.put(f"{self.base}/_config/admins/{user}", data=json.dumps(password), timeout=10)
            assert reply.status_code == 200, reply.text

        self.call(put)
