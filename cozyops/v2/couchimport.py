"""Importing a live v2 CouchDB into a v3 instance: the same importer, another source.

``inspect_couch`` reads every document once (pages of ``_all_docs``), writes nothing, and keeps
what the import needs up front: the folders (to create them parents first, with their dates and
tags), the albums (created before their photos), the locale (the photo folder's name), the Binary
ids that photos share with Drive files (a photo "imported from Files" is that file, not a copy),
the total size of the contents (the quota check). A database that cannot be reached, refuses the
credentials, does not exist or holds no v2 document is refused here (``CouchRefused``).

``CouchImporter`` is ``importer.Importer`` with a pass over the documents instead of the tarball's
members: the ledger keys are the v2 document ids (``doc:<_id>``), so that ``--resume`` continues
and a re-run adds nothing; the upload, the conflict names, the ledger, the report, the calendars
and the album references are the importer's own.
"""

from __future__ import annotations

import base64
import hashlib
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cozyops.stack import StackError
from cozyops.v2 import convert, v2docs
from cozyops.v2.couchdb import CouchRefused, CouchSource, Skipped
from cozyops.v2.importer import (
    ALREADY,
    CONVERTED,
    KEPT,
    MAX_EVENT,
    RENAMED,
    SKIPPED,
    SPOOL_IN_MEMORY,
    Importer,
    Inspection,
    Report,
    own_scratch,
)

CONTACTS_DIR = "Contacts"  # where contact pictures go (the reference is silent: our choice)


@dataclass
class CouchPlan:
    """What ``inspect_couch`` found, for the report and for the import."""

    inspection: Inspection
    locale: str = "en"
    folders: list[v2docs.Entry] = field(default_factory=list)
    albums: list[dict] = field(default_factory=list)
    photo_binaries: set[str] = field(default_factory=set)
    referenced: set[str] = field(default_factory=set)  # Binary ids some document's `binary` names


def inspect_couch(source: CouchSource, progress: Callable[[int], None] | None = None) -> CouchPlan:
    """Read the whole database once, writing nothing (``CouchRefused`` if it is not a v2 database)."""
    source.check()
    found = Inspection(source.display)
    plan = CouchPlan(found)
    doctypes: Counter[str] = Counter()
    seen_paths: Counter[str] = Counter()
    v2 = 0
    for doc in source.docs():
        found.members += 1
        if isinstance(doc, Skipped):
            found.problems.append({"member": f"document {doc.doc_id}", "problem": doc.reason})
            continue
        kind = v2docs.doctype(doc)
        v2 += bool(kind)
        size = 0
        owned = doc.get("binary") if isinstance(doc.get("binary"), dict) else {}
        plan.referenced.update(ref["id"] for ref in owned.values()
                               if isinstance(ref, dict) and isinstance(ref.get("id"), str))
        if kind in ("folder", "file"):
            entry = v2docs.entry(doc)
            if isinstance(entry, str):
                found.problems.append({"member": f"{doc.get('docType')} {doc.get('_id')}", "problem": entry})
            elif kind == "folder":
                found.folders += 1
                plan.folders.append(entry)
            else:
                found.files += 1
                seen_paths[entry.path] += 1
                found.duplicates += seen_paths[entry.path] == 2
        elif kind == "binary":
            attachments = doc.get("_attachments") if isinstance(doc.get("_attachments"), dict) else {}
            size = sum(int(a.get("length") or 0) for name, a in attachments.items()
                       if name not in ("thumb", "screen") and isinstance(a, dict))
            found.file_bytes += size
        elif kind == "photo":
            found.photos += 1
            binary = doc.get("binary") if isinstance(doc.get("binary"), dict) else {}
            shared = binary.get("file") if not binary.get("raw") else None
            if isinstance(shared, dict) and isinstance(shared.get("id"), str):
                plan.photo_binaries.add(shared["id"])
        elif kind == "album":
            found.albums_lines += 1
            album = v2docs.album(doc)
            if isinstance(album, str):
                found.problems.append({"member": f"Album {doc.get('_id')}", "problem": album})
            else:
                plan.albums.append(doc)
        elif kind == "contact":
            found.contacts += 1
        elif kind == "cozyinstance" and isinstance(doc.get("locale"), str):
            plan.locale = doc["locale"]
        if kind and kind not in v2docs.CONVERTED_TYPES:
            doctypes[kind] += 1
        if progress:
            progress(size)
    if not v2:
        raise CouchRefused(source.name, "holds no document with a docType: not a Cozy v2 database")
    found.doctypes = dict(doctypes)
    plan.folders.sort(key=lambda entry: entry.parts)
    return plan


class _Content:
    """A member-like view of an attachment (``stream``, ``size``) for the importer's spool."""

    def __init__(self, stream, size: int) -> None:
        self.stream, self.size = stream, size


class CouchImporter(Importer):
    def __init__(self, source: CouchSource, plan: CouchPlan, target, ledger, report: Report, *,
                 directory: str = "/", scratch: Path | None = None,
                 progress: Callable[[int, int], None] | None = None) -> None:
        super().__init__(Path(source.display), target, ledger, report, directory=directory, scratch=scratch,
                         progress=progress, export_id=source.url.source_id)
        self.source = source
        self.plan = plan
        self.shared: dict[str, dict] = {}  # Binary id of a photo "imported from Files" -> the file's ledger entry

    def run(self) -> Report:
        with own_scratch(self.scratch) as scratch:  # locked: another import's sweep leaves it alone
            self.scratch = scratch
            if self.dest:
                self.ensure_dir(self.dest)
            for folder in self.plan.folders:
                self.folder(folder)
            for doc in self.plan.albums:
                self.album(doc)
            for doc in self.source.docs():  # everything but photos, which need the files first
                self.report.members += 1
                if isinstance(doc, Skipped):
                    self.report.add(f"document {doc.doc_id}", "document", SKIPPED, reason=doc.reason)
                else:
                    self.document(doc)
                self.progress(0, 1)
            for doc in self.source.docs():
                if isinstance(doc, dict) and v2docs.doctype(doc) == "photo":
                    self.photo(doc)
                    self.progress(0, 1)
            self.write_calendars()
            for handle in self.calendars.values():
                handle.close()
        return self.report

    def document(self, doc: dict) -> None:
        kind = v2docs.doctype(doc)
        doc_id = str(doc.get("_id", ""))
        if kind in ("folder", "album", "photo"):
            return  # done before (folders, albums) or after (photos) this pass
        if kind == "binary":
            if doc_id not in self.plan.referenced:  # nobody's content: kept, not dropped silently
                self.archive(doc, "a Binary document no file, photo or other document refers to: kept as JSON "
                                  "with its contents")
            return  # else read through the File, Photo or Contact that owns it
        if kind == "file":
            self.file_doc(doc)
        elif kind == "contact":
            self.contact(doc)
        elif kind:
            self.archive(doc)
        elif not doc_id.startswith("_design/"):
            self.report.add(f"document {doc_id}", "document", SKIPPED, reason="no docType (not a v2 document)")

    # -- folders and files ------------------------------------------------------------------

    def folder(self, entry: v2docs.Entry) -> None:
        source = f"Folder {entry.v2_id} ({'/'.join(entry.parts[1:])})"
        parts = self.dest + entry.parts[1:]
        path = "/" + "/".join(parts)
        self.dir_options[path] = entry.options
        if self.ensure_dir(parts, source=source) is None:
            return
        self.report.add(source, "directory", ALREADY if path in self.reused else CONVERTED, path,
                        "; ".join(entry.notes))

    def file_doc(self, doc: dict) -> None:
        entry = v2docs.entry(doc)
        doc_id = str(doc.get("_id"))
        if isinstance(entry, str):
            self.report.add(f"File {doc_id}", "file", SKIPPED, reason=entry)
            return
        source = f"File {doc_id} ({entry.path.removeprefix('files/')})"
        sources = v2docs.content_sources(doc, "file")
        if not sources:
            why = "its upload never finished in v2" if doc.get("uploading") else "it has no content in v2"
            self.report.add(source, "file", SKIPPED, reason=f"{why} (no binary)")
            return
        done = self.content(f"doc:{doc_id}", self.dest + entry.parts[1:], sources, entry.options, source, "file",
                            entry.notes)
        binary = sources[0][0]
        if done and binary in self.plan.photo_binaries:
            self.shared[binary] = done

    def content(self, key: str, parts: tuple[str, ...], sources: list[tuple[str, str]], options: dict,
                source: str, kind: str, notes: tuple[str, ...] = (), reason: str = "") -> dict | None:
        """Upload one content (the first of ``sources`` that exists) at ``parts``; its ledger entry."""
        done = None if self.dry else self.ledger.get(key)
        if done:
            self.progress(done.get("size") or 0, 0)
            self.report.add(source, kind, ALREADY, done["path"])
            return done
        parent = self.ensure_dir(parts[:-1], source=source)
        if parent is None:
            if not any(i.source == source for i in self.report.items[-1:]):
                self.report.add(source, kind, SKIPPED, reason="its folder could not be created")
            return None
        if self.dry:
            final = self.upload(key, parent, parts[-1], None, source, kind)  # type: ignore[arg-type]
            if final:
                self.report.add(source, kind, RENAMED if final[1] else CONVERTED, final[0], reason)
                return {"id": "dry", "path": final[0]}
            return None
        for doc_id, name in sources:
            with self.source.attachment(doc_id, name) as body:
                if body is None:
                    continue
                spool = _spool(_Content(body, body.size), self.scratch, lambda n: self.progress(n, 0))
                try:
                    final = self.upload(key, parent, parts[-1], spool, source, kind, options)
                finally:
                    spool.close()
                break
        else:
            self.report.add(source, kind, SKIPPED, reason=f"its content ({sources[0][0]}/{sources[0][1]}) is "
                            "missing from the database")
            return None
        if final is None:
            return None
        path, renamed = final
        why = "; ".join(([reason] if reason else []) + list(notes) +
                        (["the name was taken (a repeated path or an existing file)"] if renamed else []))
        self.report.add(source, kind, RENAMED if renamed else CONVERTED, path, why)
        return self.ledger.get(key)

    # -- other doctypes, events -------------------------------------------------------------

    def archive(self, doc: dict, why: str | None = None) -> None:
        kind = v2docs.doctype(doc)
        doc_id = str(doc.get("_id"))
        source = f"{doc.get('docType')} {doc_id}"
        parts = v2docs.archive_parts(doc)
        if isinstance(parts, str):
            self.report.add(source, "archive", SKIPPED, reason=parts)
            return
        data = v2docs.archive_json(doc)
        if kind == "event":
            self._event_seen(None, source, data[:MAX_EVENT + 1])  # type: ignore[arg-type]
        key = f"doc:{doc_id}"
        done = None if self.dry else self.ledger.get(key)
        if done:
            self.report.add(source, "archive", ALREADY, done["path"])
            self.archive_contents(doc, parts, source)
            return
        parent = self.ensure_dir(self.dest + parts[1:-1], source=source)
        if parent is None:
            return
        spool = _bytes_spool(data, self.scratch)
        try:
            final = self.upload(key, parent, parts[-1], spool, source, "archive")
        finally:
            spool.close()
        if final:
            self.report.add(source, "archive", KEPT, final[0], why or f"{kind} documents have no v3 app: kept as JSON")
        self.archive_contents(doc, parts, source)

    def archive_contents(self, doc: dict, parts: tuple[str, ...], source: str) -> None:
        """The contents an archived document owns, next to its JSON (``<_id>.<name>``)."""
        for name, sources in v2docs.archive_attachments(doc):
            self.content(f"doc:{doc.get('_id')}:content:{name}", self.dest + parts[1:-1] + (name,), sources, {},
                         f"{source} content {name}", "archive", reason="content of the archived document")

    # -- albums and photos ------------------------------------------------------------------

    def album(self, doc: dict) -> None:
        v2_id = str(doc["_id"])
        source = f"Album {v2_id}"
        doc_id = self.fixed_id("album", v2_id)
        self.albums[v2_id] = doc_id
        outcome = self._create(convert.ALBUMS, doc_id, v2docs.album_doc(doc), "album:" + v2_id, source)
        if outcome:
            dropped = [k for k in ("coverPicture", "clearance", "folderid") if doc.get(k)]
            reason = v2docs.album(doc).name + (f" (not kept: {', '.join(dropped)})" if dropped else "")  # type: ignore[union-attr]
            self.report.add(source, "album", outcome, f"{convert.ALBUMS}/{doc_id}", reason)

    def photo(self, doc: dict) -> None:
        doc_id = str(doc["_id"])
        source = f"Photo {doc_id}"
        sources = v2docs.content_sources(doc, "photo")
        shared = self.shared.get(sources[0][0]) if sources else None
        if shared is not None:
            key = f"doc:{doc_id}"
            seen = not self.dry and self.ledger.get(key)
            if not seen and not self.dry:
                self.ledger.put(key, shared["id"], None)
            self.report.add(source, "photo", ALREADY if seen else CONVERTED, shared["path"],
                            "imported from Files in v2: the Drive file itself, not a copy")
            done = shared
        else:
            parts = v2docs.photo_parts(doc, self.plan.locale)
            if isinstance(parts, str):
                self.report.add(source, "photo", SKIPPED, reason=parts)
                return
            if not sources:
                self.report.add(source, "photo", SKIPPED, reason="it has no content in v2 (no binary)")
                return
            done = self.content(f"doc:{doc_id}", self.dest + parts[1:], sources, v2docs.photo_options(doc), source,
                                "photo")
        if done is None:
            return
        albumid = doc.get("albumid")
        if not isinstance(albumid, str) or not albumid:
            return
        album = self.albums.get(albumid)
        if album is None:
            self.report.add(source, "reference", SKIPPED, reason=f"album {albumid} is not in the database")
            return
        self.reference(f"ref:{albumid}:doc:{doc_id}", done, {"type": convert.ALBUMS, "id": album}, source,
                       f"in album {convert.ALBUMS}/{album}")

    def reference(self, key: str, file: dict, ref: dict, source: str, reason: str) -> None:
        """Add ``ref`` to the file's ``referenced_by`` once (files do not de-duplicate them)."""
        if not self.dry and self.ledger.get(key):
            self.report.add(source, "reference", ALREADY, file["path"])
            return
        if not self.dry:
            public = self.target.client()
            try:
                present = [{"type": r.get("type"), "id": r.get("id")} for r in public.get(file["id"]).referenced_by]
                if ref not in present:
                    public.add_referenced_by(file["id"], [ref])
            except StackError as error:
                self._fail(source, "reference", error)
                return
            self.ledger.put(key, file["id"])
        self.report.add(source, "reference", CONVERTED, file["path"], reason)

    # -- contacts ---------------------------------------------------------------------------

    def contact(self, doc: dict) -> None:
        v2_id = str(doc.get("_id"))
        source = f"Contact {v2_id}"
        found = v2docs.contact(doc)
        if isinstance(found, str):
            self.report.add(source, "contact", SKIPPED, reason=found)
            return
        out = self.with_groups(found, source)
        key = f"contact:doc:{v2_id}"
        contact_id = self.fixed_id("contact", key)
        outcome = self._create(convert.CONTACTS, contact_id, out, key, source)
        if not outcome:
            return
        reason = ("no v3 field for: " + "; ".join(found.dropped)) if found.dropped else ""
        self.report.add(source, "contact", outcome, f"{convert.CONTACTS}/{contact_id}", reason)
        picture = v2docs.picture(doc)
        if picture is None:
            return
        name = v2docs.picture_name(out, v2_id, picture[1])
        done = self.content(f"picture:{v2_id}", self.dest + (CONTACTS_DIR, name), [(v2_id, picture[0])], {},
                            f"{source} picture", "picture",
                            reason="the contact's picture (the file references the contact)")
        if done:
            self.reference(f"picref:{v2_id}", done, {"type": convert.CONTACTS, "id": contact_id},
                           f"{source} picture", f"picture of {convert.CONTACTS}/{contact_id}")


def _spool(content: _Content, scratch: Path, progress: Callable[[int], None]):
    from cozyops.v2.importer import _Spool

    spool = _Spool(content, scratch, progress)  # type: ignore[arg-type]
    spool.size = content.stream.read_bytes if content.size < 0 else content.size
    return spool


def _bytes_spool(data: bytes, scratch: Path):
    from cozyops.v2.importer import _Spool

    spool = _Spool.__new__(_Spool)
    spool.file = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, dir=scratch)  # noqa: SIM115
    spool.file.write(data)
    spool.file.seek(0)
    spool.size = len(data)
    spool.md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    return spool
