"""Exports in cozy-monitor's format, made by the tests (reference: cozy-v2-export.md §1).

Headers are written by hand as tar-stream 1.5.5 writes them, not by ``tarfile``: directories
``0o750`` with a trailing ``/``, files ``0o640``, names ``files/<path>/<name>`` with the ``//``
that v2's ``path`` gives, and for any name that is not ASCII or does not fit ustar, a ``pax-header``
entry named ``PaxHeader`` holding ``path=<name>``, followed by the real header **also named
``PaxHeader``**. gzip level 6, as cozy-monitor does.
"""

from __future__ import annotations

import gzip
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

PHOTO_DIRS = {"en": "Uploaded from Cozy Photos", "fr": "Transférées depuis Cozy Photos"}
BLOCK = 512


def _octal(value: int, width: int) -> bytes:
    return (format(value, "o").zfill(width - 1)).encode() + b"\0"


def ustar_header(name: bytes, size: int, typeflag: bytes, mode: int, mtime: int, linkname: bytes = b"",
                 devmajor: int = 0, devminor: int = 0) -> bytes:
    prefix = b""
    if len(name) > 100:  # tar-stream splits on a "/" into prefix (155) + name (100)
        cut = name.rfind(b"/", 0, 156)
        prefix, name = name[:cut], name[cut + 1:]
    block = bytearray(BLOCK)
    block[0:len(name[:100])] = name[:100]
    block[100:108] = _octal(mode, 8)
    block[108:116] = _octal(0, 8)
    block[116:124] = _octal(0, 8)
    block[124:136] = _octal(size, 12)
    block[136:148] = _octal(mtime, 12)
    block[148:156] = b" " * 8
    block[156:157] = typeflag
    block[157:157 + len(linkname)] = linkname
    block[257:265] = b"ustar\x0000"
    block[329:337] = _octal(devmajor, 8)
    block[337:345] = _octal(devminor, 8)
    block[345:345 + len(prefix)] = prefix
    block[148:156] = _octal(sum(block), 7) + b" "
    return bytes(block)


def pax_record(key: str, value: bytes, tar_stream_154: bool = False) -> bytes:
    """A PAX record; ``tar_stream_154``: with tar-stream <= 1.5.4's bug (length+digits reaching 100
    counted as 100 while the record is 101 bytes: a 91-byte path)."""
    body = b" " + key.encode() + b"=" + value + b"\n"
    length = len(body) + len(str(len(body)))
    if len(str(length)) != len(str(len(body))):
        length = length if tar_stream_154 else length + 1
    return str(length).encode() + body


def _fits_ustar(name: bytes) -> bool:
    if len(name) <= 100:
        return True
    cut = name.rfind(b"/", 0, 156)
    return cut > 0 and len(name) - cut - 1 <= 100


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % BLOCK)


@dataclass
class Export:
    """An export being built; ``write`` makes the tarball."""

    locale: str = "en"
    entries: list[bytes] = field(default_factory=list)
    tar_stream_154: bool = False  # cozy-monitor 1.4.0/1.4.1: tar-stream's PAX off-by-one
    mtime: int = field(default_factory=lambda: int(time.time()))

    def entry(self, name: str | bytes, data: bytes = b"", typeflag: bytes = b"0", mode: int = 0o640,
              linkname: bytes = b"", size: int | None = None, devmajor: int = 0) -> Export:
        raw = name if isinstance(name, bytes) else name.encode()
        if typeflag == b"5" and not raw.endswith(b"/"):
            raw += b"/"  # tar-stream appends "/" to directory names
        length = len(data) if size is None else size
        if not raw.isascii() or not _fits_ustar(raw):
            record = pax_record("path", raw, self.tar_stream_154)
            self.entries.append(ustar_header(b"PaxHeader", len(record), b"x", 0o644, self.mtime) + _pad(record))
            raw = b"PaxHeader"
        self.entries.append(ustar_header(raw, length, typeflag, mode, self.mtime, linkname, devmajor) + _pad(data))
        return self

    # -- what cozy-monitor writes -----------------------------------------------------------

    def folder(self, v2_parent: str, name: str) -> Export:
        """A v2 Folder: ``files/#{path}/#{name}`` (path ``""`` for the root, else ``/A/B``)."""
        return self.entry(f"files/{v2_parent}/{name}", typeflag=b"5", mode=0o750)

    def file(self, v2_parent: str, name: str, data: bytes) -> Export:
        return self.entry(f"files/{v2_parent}/{name}", data)

    def nested(self, depth: int, under: str = "", prefix: str = "d") -> str:
        """``depth`` folders each inside the previous one; returns the v2 path of the deepest."""
        parent = under
        for level in range(depth):
            self.folder(parent, f"{prefix}{level}")
            parent += f"/{prefix}{level}"
        return parent

    @property
    def photo_dir(self) -> str:
        return f"Photos/{PHOTO_DIRS[self.locale]}/"

    def photos_folder(self) -> Export:
        return self.entry(f"files/{self.photo_dir}", typeflag=b"5", mode=0o750)

    def photo(self, name: str, data: bytes) -> Export:
        return self.entry(f"files/{self.photo_dir}/{name}", data)

    def reference(self, name: str, albumid: str | None) -> dict:
        line: dict = {"filepath": f"{self.photo_dir}/{name}"}
        if albumid:
            line = {"albumid": albumid, **line}
        return line

    def albums(self, albums: list[dict], references: list[dict] | list[str]) -> Export:
        """``albums.json`` newline-terminated lines; ``references.json`` joined with LF, no final newline."""
        self.entry("albums/", typeflag=b"5", mode=0o750)
        self.entry("albums/albums.json", b"".join(
            (json.dumps({"_id": a["_id"], "_rev": a.get("_rev", "1-x"), "name": a["name"],
                         "type": "io.cozy.photos.albums"}) + "\n").encode() for a in albums))
        lines = [ref if isinstance(ref, str) else json.dumps(ref, ensure_ascii=False) for ref in references]
        return self.entry("albums/references.json", "\n".join(lines).encode())

    def contacts_folder(self) -> Export:
        return self.entry("contacts/", typeflag=b"5", mode=0o750)

    def contact(self, n: str, vcard: str) -> Export:
        name = "Contact_" + n.replace(";", "_").replace("-", "_")
        while "__" in name:
            name = name.replace("__", "_")
        return self.entry(f"contacts/{name}.vcf", vcard.encode())

    def archive(self, doc: dict, first_of_type: bool = False) -> Export:
        doctype = doc["docType"].lower()
        if first_of_type:
            self.entry(f"files/Archive/{doctype}/", typeflag=b"5", mode=0o750)
        return self.entry(f"files/Archive/{doctype}/{doc['_id']}", json.dumps(doc).encode())

    # -- output -------------------------------------------------------------------------------

    def tar_bytes(self) -> bytes:
        return b"".join(self.entries) + b"\0" * (BLOCK * 2)

    def write(self, path: Path, truncate_at: int | None = None) -> Path:
        buffer = io.BytesIO()
        with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6, mtime=0) as gz:
            gz.write(self.tar_bytes())
        data = buffer.getvalue()
        path.write_bytes(data if truncate_at is None else data[:truncate_at])
        return path


def vcard(n: str, fn: str, *lines: str) -> str:
    """A vCard as cozy-vcard's toVCF writes it: LF line endings, no folding."""
    return "\n".join(["BEGIN:VCARD", "VERSION:3.0", "REV:2017-03-02T10:00:00.000Z", f"N:{n}", f"FN:{fn}",
                      *lines, "END:VCARD"]) + "\n"


EVENT = {
    "_id": "5c1e0000000000000000000000000a", "_rev": "2-1", "docType": "Event",
    "start": "2017-03-10T09:00:00.000Z", "end": "2017-03-10T10:00:00.000Z", "place": "Bureau",
    "details": "Ordre du jour...", "description": "Réunion équipe", "rrule": "", "tags": ["Travail"],
    "attendees": [{"email": "bob@example.com", "status": "ACCEPTED", "key": "k1"}], "related": None,
    "timezone": "Europe/Paris", "alarms": [{"id": 1, "trigg": "-PT10M", "action": "DISPLAY"}],
    "created": "2017-03-01T12:00:00.000Z", "lastModification": "2017-03-01T12:00:00.000Z",
    "caldavuri": "", "uuid": "",
}


def realistic(locale: str = "en") -> tuple[Export, dict]:
    """A realistic export (folders, files, photos in the localised folder, albums, contacts, events).

    Returns the export and what it holds, for the tests to check against.
    """
    fr = locale == "fr"
    export = Export(locale=locale)
    docs = "Documents"
    bills = "Factures" if fr else "Bills"
    export.folder("", docs).folder(f"/{docs}", bills).folder("", "Photos")
    files = {
        f"{docs}/{bills}/edf-2017-01.pdf": b"%PDF-1.4 edf " * 300,
        f"{docs}/{bills}/reçu été.txt": "reçu d'été ✓".encode(),
        "notes.txt": b"v2 notes\n",
        f"{docs}/" + "n" * 120 + ".txt": b"a long name needs PAX",
    }
    for path, data in files.items():
        parent, _, name = path.rpartition("/")
        export.file(f"/{parent}" if parent else "", name, data)
    export.photos_folder()
    photos = {"IMG_0001.JPG": b"\xff\xd8\xff jpeg 1" * 50, "3f2a00c1.jpg": b"\xff\xd8\xff jpeg 2" * 50,
              "Plage été.jpg": b"\xff\xd8\xff jpeg 3"}
    for name, data in photos.items():
        export.photo(name, data)
        files[f"Photos/{PHOTO_DIRS[locale]}/{name}"] = data
    albums = [{"_id": "0b3f01", "name": "Vacances 2016" if fr else "Holidays 2016"}, {"_id": "0b3f02", "name": "Vide"}]
    refs = [export.reference("IMG_0001.JPG", "0b3f01"), export.reference("Plage été.jpg", "0b3f01"),
            export.reference("3f2a00c1.jpg", None)]
    export.albums(albums, refs)
    export.contacts_folder()
    export.contact("Dupont;Jean;;;", vcard(
        "Dupont;Jean;;;", "Jean Dupont", "BDAY:1980-01-01", "NOTE:Voisin\\, 3ème étage", "CATEGORIES:amis",
        "ORG:Cozy;R&D", "TITLE:Dev", "TEL;TYPE=CELL:+33 6 12 34 56 78", "TEL;TYPE=WORK,PREF:+33 1 00 00 00 00",
        "EMAIL;TYPE=HOME:jean@example.com", "ADR;TYPE=HOME:;;12\\, rue Basse;Paris;;75011;France"))
    export.contact("Dupont;Jean;;;", vcard("Dupont;Jean;;;", "Jean Dupont (bis)", "EMAIL;TYPE=WORK:jd@work.example"))
    export.archive(EVENT, first_of_type=True)
    export.archive({**EVENT, "_id": "5c1e0000000000000000000000000b", "start": "2017-04-01", "end": "2017-04-02",
                    "description": "Jour férié", "tags": ["Perso"], "alarms": [], "attendees": []})
    export.archive({"_id": "tag1", "_rev": "1-1", "docType": "Tag", "name": "Travail", "color": "#ff0000"},
                   first_of_type=True)
    return export, {"files": files, "albums": albums, "refs": refs}
