"""An instance's files: metadata in ``<prefix>/io-cozy-files``, content under ``<fs>/<domain>/<path>``
(files-data reference §1, §2; cozy-stack.md §5 "Data")."""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import email.utils
import hashlib
import json
import mimetypes
import os
import posixpath
import random
import re
import shutil
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

from .couch import Couch, db_name
from .instances import StackError

ROOT = "io.cozy.files.root-dir"
TRASH = "io.cozy.files.trash-dir"
SHARED_WITH_ME = "io.cozy.files.shared-with-me-dir"
TRASH_PATH = "/.cozy_trash"
FILES = "io.cozy.files"
MAX_DEPTH = 512
UPLOAD_CHUNK = 1 << 20  # bytes read from an upload's body at a time
FORBIDDEN = set("/\x00\n\r")
_MIMES = mimetypes.MimeTypes()  # the built-in table only: the same answer on every machine
_MIME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")
# §1.3: class from mime.
_CLASSES = {
    "application/octet-stream": "files",
    "application/pdf": "pdf",
    "application/msword": "text",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "text",
    "application/vnd.oasis.opendocument.text": "text",
    "application/rtf": "text",
    "application/vnd.ms-excel": "spreadsheet",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "spreadsheet",
    "application/vnd.oasis.opendocument.spreadsheet": "spreadsheet",
    "text/csv": "spreadsheet",
    "application/vnd.ms-powerpoint": "slide",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "slide",
    "application/vnd.oasis.opendocument.presentation": "slide",
    "application/zip": "zip",
    "application/gzip": "zip",
    "application/x-gzip": "zip",
    "application/x-tar": "zip",
    "application/x-7z-compressed": "zip",
    "application/x-rar-compressed": "zip",
    "application/x-bzip2": "zip",
    "application/internet-shortcut": "shortcut",
}
# Localised names of the folders creating an instance makes (§1.2; English otherwise).
TREE = {
    "en": ("Administrative", "Photos", "Uploaded from Cozy Photos", "Backed up from my mobile"),
    "fr": ("Administratif", "Photos", "Envoyées depuis Cozy Photos", "Sauvegardées depuis mon mobile"),
}


def files_error(status: int, title: str, detail: str, source: dict | None = None) -> StackError:
    return StackError(status, title, detail, source)


def not_found(detail: str = "file does not exist") -> StackError:
    return files_error(404, "Not Found", detail)


def now() -> str:
    """RFC 3339 with nanoseconds, trailing zeros trimmed (Go's RFC3339Nano)."""
    ns = time.time_ns()
    seconds, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    digits = f"{frac:09d}".rstrip("0")
    return base + ("." + digits if digits else "") + "Z"


def parse_time(value: str | None) -> str | None:
    """An RFC 3339 time as given, or None when unparsable (§1.2: silently ignored)."""
    if not value:
        return None
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        # Python 3.11 reads at most 6 fractional digits: retry with the fraction cut.
        cut = re.sub(r"(\.\d{6})\d+", r"\1", value)
        try:
            datetime.fromisoformat(cut.replace("Z", "+00:00"))
        except ValueError:
            return None
    return value


def parse_date_header(value: str | None) -> str | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed.strftime("%Y-%m-%dT%H:%M:%SZ")


def _later(a: str, b: str) -> bool:
    def key(v: str) -> datetime:
        v = re.sub(r"(\.\d{6})\d+", r"\1", v)
        return datetime.fromisoformat(v.replace("Z", "+00:00"))

    try:
        return key(a) < key(b)
    except ValueError:
        return False


def check_name(name: str | None) -> str:
    if name is None or name in ("", ".", "..") or set(name) & FORBIDDEN:
        raise files_error(422, "Unprocessable Entity", "Invalid filename: empty or contains an illegal character",
                          {"parameter": "name"})
    return name


def mime_and_class(name: str, content_type: str | None) -> tuple[str, str]:
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime and not _MIME.match(mime):
        raise files_error(422, "Unprocessable Entity", "Invalid Content-Type", {"parameter": "mime"})
    if name.lower().endswith(".url"):
        mime = "application/internet-shortcut"
    elif not mime or mime == "application/octet-stream":
        guessed, _ = _MIMES.guess_type(name, strict=False)
        mime = guessed or "application/octet-stream"
    cls = _CLASSES.get(mime)
    if cls is None:
        if mime.startswith("application/vnd.ms-excel") or "spreadsheet" in mime:
            cls = "spreadsheet"
        elif "presentation" in mime or "powerpoint" in mime:
            cls = "slide"
        elif mime.startswith("application/"):
            cls = "files"
        else:
            cls = mime.split("/")[0]
    return mime, cls


def parse_tags(value: str | None) -> list[str]:
    seen: list[str] = []
    for tag in (value or "").split(","):
        tag = tag.strip()
        if tag and tag not in seen:
            seen.append(tag)
    return seen


def cozy_metadata(domain: str, upload: bool, at: str) -> dict:
    meta = {
        "doctypeVersion": "1",
        "metadataVersion": 1,
        "createdAt": at,
        "updatedAt": at,
        "createdOn": f"https://{domain}/",
    }
    if upload:
        meta["uploadedAt"] = at
        meta["uploadedOn"] = f"https://{domain}/"
    return meta


class VFS:
    """One instance's files. Writes are serialised per instance (one lock)."""

    _locks: dict[str, threading.RLock] = {}
    _pending: dict[str, set[tuple[str, str]]] = {}  # per instance: (dir id, name) of uploads under way
    # Per instance: directory documents by id. The double is the only writer of the files database
    # (/data refuses io.cozy.files) and every directory write goes through ``put``: an upload reads
    # its parent without a CouchDB round trip, as cozy-stack's VFS keeps its own caches.
    _dir_docs: dict[str, dict[str, dict]] = {}
    _locks_lock = threading.Lock()

    def __init__(self, couch: Couch, fs_root: Path, inst: dict) -> None:
        self.couch = couch
        self.inst = inst
        self.domain = inst["domain"]
        self.db = db_name(inst["prefix"], FILES)
        self.disk = fs_root / self.domain
        with self._locks_lock:
            self.lock = self._locks.setdefault(inst["_id"], threading.RLock())
            self.pending = self._pending.setdefault(inst["_id"], set())
            self.dir_docs = self._dir_docs.setdefault(inst["_id"], {})

    # --- reads
    def get(self, file_id: str) -> dict | None:
        if not file_id or file_id.startswith("_"):
            return None
        cached = self.dir_docs.get(file_id)
        if cached is not None:
            return copy.deepcopy(cached)
        doc = self.couch.get(self.db, file_id)
        if doc is not None and doc.get("type") == "directory":
            with self.lock:  # a write meanwhile (under the lock) has put the newer one: keep it
                self.dir_docs.setdefault(file_id, copy.deepcopy(doc))
        return doc

    def put(self, doc: dict) -> dict:
        """Write a document of the files database (every directory write comes here)."""
        with self.lock:
            try:
                doc = self.couch.put(self.db, doc)
            except Exception:
                self.dir_docs.pop(doc["_id"], None)
                raise
            if doc.get("type") == "directory":
                self.dir_docs[doc["_id"]] = copy.deepcopy(doc)
            return doc

    def require(self, file_id: str) -> dict:
        doc = self.get(file_id)
        if doc is None:
            raise not_found()
        return doc

    def children(self, dir_id: str) -> list[dict]:
        docs = self.couch.find(self.db, {"dir_id": dir_id})
        if dir_id == ROOT:
            docs = [d for d in docs if d["_id"] != TRASH]
        return sorted(docs, key=lambda d: (d.get("type", ""), d.get("name", "").encode()))

    def child(self, dir_id: str, name: str) -> dict | None:
        # Byte-for-byte comparison, no normalisation (§1.5).
        for doc in self.couch.find(self.db, {"dir_id": dir_id, "name": name}):
            if doc.get("name") == name:
                return doc
        return None

    def path_of(self, doc: dict) -> str:
        if doc.get("type") == "directory":
            return doc["path"]
        parent = self.require(doc["dir_id"])
        return parent["path"].rstrip("/") + "/" + doc["name"]

    def by_path(self, path: str) -> dict | None:
        if path == "/":
            return self.get(ROOT)
        found = [d for d in self.couch.find(self.db, {"path": path}) if d.get("type") == "directory"]
        if found:
            return found[0]
        parent_path, _, name = path.rpartition("/")
        parent = self.by_path(parent_path or "/")
        if parent is None or parent.get("type") != "directory":
            return None
        return self.child(parent["_id"], name)

    def ancestors(self, doc: dict) -> list[str]:
        ids = []
        current = doc
        while current.get("dir_id"):
            ids.append(current["dir_id"])
            current = self.get(current["dir_id"]) or {}
        return ids

    def in_trash(self, doc: dict) -> bool:
        if doc["_id"] == TRASH or doc.get("trashed"):
            return True
        if doc.get("type") == "directory" and doc.get("path"):
            # As cozy-stack does: a directory is in the trash when its path is under the trash's
            # (one comparison, not a read per ancestor: deep trees stay linear).
            return doc["path"] == TRASH_PATH or doc["path"].startswith(TRASH_PATH + "/")
        return TRASH in self.ancestors(doc)

    def usage(self) -> tuple[int, int, int]:
        """(bytes of all files, bytes in the trash, documents)."""
        used = trashed = count = 0
        for doc in self.couch.all_docs(self.db):
            if doc["_id"].startswith("_design/"):
                continue
            count += 1
            if doc.get("type") == "file":
                size = int(doc.get("size") or 0)
                used += size
                if doc.get("trashed"):
                    trashed += size
        return used, trashed, count

    def disk_path(self, path: str) -> Path:
        return self.disk / path.lstrip("/")

    # --- writes
    def init_tree(self, locale: str) -> None:
        """What creating an instance makes: root, trash, and the localised default folders (§1.2)."""
        self.init_root()
        admin, photos, uploaded, backup = TREE.get(locale.split("-")[0].split("_")[0], TREE["en"])
        self.mkdir(ROOT, admin)
        photos_dir = self.mkdir(ROOT, photos)
        self.mkdir(photos_dir["_id"], uploaded)
        self.mkdir(photos_dir["_id"], backup)

    def init_root(self) -> None:
        """The root and the trash, and the indexes the double's look-ups use."""
        at = now()
        self.disk.mkdir(parents=True, exist_ok=True)
        root = {"_id": ROOT, "type": "directory", "name": "", "path": "/", "created_at": at, "updated_at": at,
                "tags": [], "cozyMetadata": cozy_metadata(self.domain, False, at)}
        self.put(root)
        trash = {"_id": TRASH, "type": "directory", "name": ".cozy_trash", "dir_id": ROOT, "path": "/.cozy_trash",
                 "created_at": at, "updated_at": at, "tags": [], "cozyMetadata": cozy_metadata(self.domain, False, at)}
        self.put(trash)
        self.disk_path("/.cozy_trash").mkdir(exist_ok=True)
        self.couch.ok("POST", Couch.db(self.db) + "/_index",
                      {"index": {"fields": ["dir_id", "name"]}, "ddoc": "dir-children", "name": "dir-children"})
        self.couch.ok("POST", Couch.db(self.db) + "/_index",
                      {"index": {"fields": ["path"]}, "ddoc": "dir-by-path", "name": "dir-by-path"})

    def mkdir(self, parent_id: str, name: str | None, tags: list[str] | None = None, created: str | None = None,
              updated: str | None = None, parent: dict | None = None) -> dict:
        with self.lock:
            name = check_name(name)
            if parent is None or parent.get("_id") != parent_id:
                parent = self.get(parent_id)
            if parent is None or parent.get("type") != "directory":
                raise not_found()
            if parent_id != TRASH and self.in_trash(parent):
                raise not_found("Parent directory is in the trash")
            path = parent["path"].rstrip("/") + "/" + name
            if path.count("/") >= MAX_DEPTH:
                raise files_error(422, "Unprocessable Entity", "Invalid path: too many levels", {"parameter": "path"})
            if (parent_id, name) in self.pending or self.child(parent_id, name) is not None:
                raise files_error(409, "Conflict", "file already exists")
            at = now()
            created = created or at
            updated = updated or created
            doc = {"_id": uuid.uuid4().hex, "type": "directory", "name": name, "dir_id": parent_id, "path": path,
                   "created_at": created, "updated_at": updated, "tags": tags or [],
                   "cozyMetadata": cozy_metadata(self.domain, False, at)}
            self.disk_path(path).mkdir(parents=True, exist_ok=True)
            return self.put(doc)

    def mkdir_path(self, path: str, recursive: bool, tags: list[str] | None = None) -> dict:
        """``POST /files/?Type=directory&Path=/a/b[&Recursive=true]`` (§1.2)."""
        path = "/" + "/".join(p for p in path.split("/") if p)
        with self.lock:
            existing = self.by_path(path)
            if existing is not None:
                if recursive and existing.get("type") == "directory":
                    return existing
                raise files_error(409, "Conflict", "file already exists")
            parent_path, _, name = path.rpartition("/")
            parent = self.by_path(parent_path or "/")
            if parent is None:
                if not recursive:
                    raise not_found()
                parent = self.mkdir_path(parent_path, True)
            return self.mkdir(parent["_id"], name, tags)

    def upload(self, parent_id: str, name: str | None, request, quota: int, parent: dict | None = None) -> dict:
        """``POST /files/:dir-id?Type=file``: stream the body to disk, check length and MD5, then index it.

        ``parent``: the parent's document when the caller has just read it."""
        name = check_name(name)
        md5_header = request.header("Content-MD5")
        expected_md5 = None
        if md5_header is not None:
            try:
                expected_md5 = base64.b64decode(md5_header.strip(), validate=True)
            except (binascii.Error, ValueError):
                expected_md5 = b""
            if len(expected_md5) != 16:
                raise files_error(422, "Unprocessable Entity", "Given Content-MD5 is invalid",
                                  {"parameter": "Content-MD5"})
        mime, cls = mime_and_class(name, request.header("Content-Type"))
        length_header = request.header("Content-Length")
        expected_size = None
        if length_header is not None and "chunked" not in (request.header("Transfer-Encoding") or "").lower():
            expected_size = int(length_header)
        elif request.param("Size"):
            try:
                expected_size = int(request.param("Size"))
            except ValueError:
                raise files_error(422, "Unprocessable Entity", "Invalid size", {"parameter": "Size"}) from None
        if parent is None or parent.get("_id") != parent_id:
            parent = self.get(parent_id)
        if parent is None or parent.get("type") != "directory":
            raise not_found("Parent directory with given DirID does not exist")
        if self.in_trash(parent):
            raise not_found("Parent directory is in the trash")
        # The name is held (``pending``: mkdir and other uploads see it) from here to the end, so
        # the look-ups and the body run outside the instance's lock: uploads to one instance run
        # side by side, as on cozy-stack. With a quota, checking and writing stay under the lock.
        with self.lock:
            if (parent_id, name) in self.pending:
                raise files_error(409, "Conflict", "file already exists")
            self.pending.add((parent_id, name))
        try:
            if self.child(parent_id, name) is not None:
                raise files_error(409, "Conflict", "file already exists")
            if quota and expected_size is not None:
                used, _, _ = self.usage()
                if used + expected_size > quota:
                    raise files_error(413, "Request Entity Too Large",
                                      "The file is too big and exceeds the disk quota")
        except BaseException:
            with self.lock:
                self.pending.discard((parent_id, name))
            raise
        path = parent["path"].rstrip("/") + "/" + name
        target = self.disk_path(path)
        tmp = self.disk / f".cozy-double-upload-{uuid.uuid4().hex}"
        digest = hashlib.md5()
        size = 0
        try:
            with open(tmp, "wb") as out:
                while True:
                    piece = request.read_chunk(UPLOAD_CHUNK)
                    if not piece:
                        break
                    digest.update(piece)
                    size += len(piece)
                    out.write(piece)
            if request.short_body or (expected_size is not None and size != expected_size):
                raise files_error(412, "Precondition Failed", "Invalid content length",
                                  {"parameter": "Content-Length"})
            if expected_md5 is not None and digest.digest() != expected_md5:
                raise files_error(412, "Precondition Failed", "Invalid hash", {"parameter": "Content-MD5"})
            at = now()
            date = parse_date_header(request.header("Date"))
            created = parse_time(request.param("CreatedAt")) or date or at
            updated = parse_time(request.param("UpdatedAt")) or date or at
            if _later(updated, created):
                updated = created
            doc = {
                "_id": uuid.uuid4().hex,
                "type": "file",
                "name": name,
                "dir_id": parent_id,
                "created_at": created,
                "updated_at": updated,
                "size": str(size),
                "md5sum": base64.b64encode(digest.digest()).decode(),
                "mime": mime,
                "class": cls,
                "executable": request.param("Executable") == "true",
                "trashed": False,
                "encrypted": request.param("Encrypted") == "true",
                "tags": parse_tags(request.param("Tags")),
                "cozyMetadata": cozy_metadata(self.domain, True, at),
            }
            if request.param("Metadata"):
                try:
                    metadata = json.loads(request.param("Metadata"))
                    if isinstance(metadata, dict) and metadata:
                        doc["metadata"] = metadata
                except ValueError:
                    pass
            for param, key in (("SourceAccount", "sourceAccount"),
                               ("SourceAccountIdentifier", "sourceAccountIdentifier")):
                if request.param(param):
                    doc["cozyMetadata"][key] = request.param(param)
            with self.lock if quota else contextlib.nullcontext():
                if quota:
                    used, _, _ = self.usage()
                    if used + size > quota:
                        raise files_error(413, "Request Entity Too Large",
                                          "The file is too big and exceeds the disk quota")
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, target)
                try:
                    return self.couch.put(self.db, doc)
                except Exception:
                    target.unlink(missing_ok=True)
                    raise
        finally:
            if tmp.exists():
                tmp.unlink()
            with self.lock:
                self.pending.discard((parent_id, name))

    # --- moves, trash, copies (cozy-stack's model/vfs: TrashFile, TrashDir, RestoreFile, RestoreDir,
    # DestroyFile, DestroyDirAndContent, DestroyDirContent, CopyFile; web/files ModifyMetadataByIDHandler)
    def descendants(self, directory: dict) -> list[dict]:
        found = []
        for child in self.couch.find(self.db, {"dir_id": directory["_id"]}):
            found.append(child)
            if child.get("type") == "directory":
                found.extend(self.descendants(child))
        return found

    def free_name(self, dir_id: str, name: str) -> str:
        """``vfs.ConflictName`` (a file's copy): ``base (2).ext``, or one more than a ``(n)`` the
        name already ends with, the first free one."""
        if self.child(dir_id, name) is None:
            return name
        dot = name.rfind(".")
        base, ext = (name[:dot], name[dot:]) if dot > 0 else (name, "")
        number = 2
        found = re.search(r" \((\d+)\)$", base)
        if found:
            number, base = int(found.group(1)) + 1, base[:found.start()]
        while number < 1000 and self.child(dir_id, f"{base} ({number}){ext}") is not None:
            number += 1
        return f"{base} ({number}){ext}"

    def suffixed_name(self, dir_id: str, name: str) -> str:
        """``tryOrUseSuffix`` with ``conflictFormat`` (trash, restore): the name, else
        ``name (<9 random digits>)``, the suffix after the whole name."""
        candidate = name
        while self.child(dir_id, candidate) is not None:
            candidate = f"{name} ({random.randrange(10**9):09d})"
        return candidate

    def move(self, doc: dict, dir_id: str, name: str, extra: dict | None = None) -> dict:
        """Move or rename ``doc`` (its content on disk and, for a directory, its subtree's paths)."""
        with self.lock:
            parent = self.require(dir_id)
            if parent.get("type") != "directory":
                raise not_found("Parent directory with given DirID does not exist")
            old_path = self.path_of(doc)
            new_path = parent["path"].rstrip("/") + "/" + name
            if new_path != old_path:
                if self.child(dir_id, name) is not None:
                    raise files_error(409, "Conflict", "file already exists")
                if doc.get("type") == "directory" and (new_path + "/").startswith(old_path + "/"):
                    raise files_error(412, "Precondition Failed", "Invalid path: the directory cannot be moved "
                                                                   "inside itself")
                target = self.disk_path(new_path)
                target.parent.mkdir(parents=True, exist_ok=True)
                if self.disk_path(old_path).exists():
                    os.replace(self.disk_path(old_path), target)
                elif doc.get("type") == "directory":
                    target.mkdir(exist_ok=True)
            doc = {**doc, "dir_id": dir_id, "name": name, **(extra or {})}
            doc["updated_at"] = now()
            doc.setdefault("cozyMetadata", {})["updatedAt"] = doc["updated_at"]
            for key, value in list(doc.items()):
                if value is None:
                    del doc[key]
            if doc.get("type") == "directory":
                doc["path"] = new_path
                for child in self.descendants(doc):
                    if child.get("type") == "directory":
                        child["path"] = new_path + child["path"][len(old_path):]
                        self.put(child)
            return self.put(doc)

    def trash(self, doc: dict) -> dict:
        """``TrashFile``/``TrashDir``: into the trash with ``restore_path`` (the parent's path)."""
        if doc["_id"] == ROOT:
            raise files_error(412, "Precondition Failed", "Forbidden document move", {"parameter": "dir-id"})
        if self.in_trash(doc):
            raise files_error(400, "Bad Request", "File or directory is already in the trash")
        parent = self.require(doc["dir_id"])
        name = self.suffixed_name(TRASH, doc["name"])
        extra: dict = {"restore_path": parent["path"]}
        if doc.get("type") == "file":
            extra["trashed"] = True
        return self.move(doc, TRASH, name, extra)

    def restore(self, doc: dict) -> dict:
        """``RestoreFile``/``RestoreDir``: to ``restore_path`` (for a document inside a trashed
        directory, the path below that directory's), made again when it is gone (``MkdirAll``),
        the conflict suffix stripped (``stripConflictSuffix``). Not in the trash:
        ``ErrFileNotInTrash``, which ``WrapVfsError`` leaves unwrapped (500)."""
        path = self.path_of(doc)
        if doc["_id"] == TRASH or not (path + "/").startswith(TRASH_PATH + "/"):
            raise files_error(500, "Unqualified error", "File or directory is not in the trash")
        restore_path = doc.get("restore_path") or ""
        if not restore_path:
            rest = path[len(TRASH_PATH) + 1:]
            root, slash, below = rest.partition("/")
            if slash:
                top = self.by_path(f"{TRASH_PATH}/{root}")
                if top is not None and top.get("restore_path"):
                    restore_path = posixpath.join(top["restore_path"], top["name"], posixpath.dirname(below))
        restore_path = posixpath.normpath(restore_path or "/")
        target = self.by_path(restore_path)
        if target is None:
            target = self.mkdir_path(restore_path, True)
        name = self.suffixed_name(target["_id"], _strip_conflict_suffix(doc["name"]))
        extra: dict = {"restore_path": None}
        if doc.get("type") == "file":
            extra["trashed"] = False
        return self.move(doc, target["_id"], name, extra)

    def destroy(self, doc: dict) -> None:
        with self.lock:
            path = self.path_of(doc)
            for child in self.descendants(doc) if doc.get("type") == "directory" else []:
                self.couch.delete(self.db, child["_id"], child["_rev"])
                self.dir_docs.pop(child["_id"], None)
            self.couch.delete(self.db, doc["_id"], doc["_rev"])
            self.dir_docs.pop(doc["_id"], None)
            target = self.disk_path(path)
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)

    def clear_trash(self) -> None:
        for child in self.couch.find(self.db, {"dir_id": TRASH}):
            self.destroy(child)

    def copy_file(self, doc: dict, dir_id: str, name: str) -> dict:
        with self.lock:
            parent = self.require(dir_id)
            name = self.free_name(dir_id, name)
            at = now()
            new = {k: v for k, v in doc.items() if k not in ("_id", "_rev", "referenced_by", "restore_path")}
            new.update({"_id": uuid.uuid4().hex, "dir_id": dir_id, "name": name, "created_at": at,
                        "updated_at": at, "trashed": False, "cozyMetadata": cozy_metadata(self.domain, True, at)})
            target = self.disk_path(parent["path"].rstrip("/") + "/" + name)
            shutil.copyfile(self.disk_path(self.path_of(doc)), target)
            return self.couch.put(self.db, new)

    def overwrite(self, doc: dict, request, quota: int) -> dict:
        """``PUT /files/:id`` (OverwriteFileContentHandler): new content, same document."""
        with self.lock:
            path = self.path_of(doc)
            tmp = self.disk / f".cozy-double-upload-{uuid.uuid4().hex}"
            digest, size = hashlib.md5(), 0
            try:
                with open(tmp, "wb") as out:
                    while True:
                        piece = request.read_chunk(UPLOAD_CHUNK)
                        if not piece:
                            break
                        digest.update(piece)
                        size += len(piece)
                        out.write(piece)
                length = request.header("Content-Length")
                if request.short_body or (length is not None and length.isdigit() and int(length) != size):
                    raise files_error(412, "Precondition Failed", "Invalid content length",
                                      {"parameter": "Content-Length"})
                md5_header = request.header("Content-MD5")
                if md5_header and base64.b64encode(digest.digest()).decode() != md5_header.strip():
                    raise files_error(412, "Precondition Failed", "Invalid hash", {"parameter": "Content-MD5"})
                if quota:
                    used, _, _ = self.usage()
                    if used - int(doc.get("size") or 0) + size > quota:
                        raise files_error(413, "Request Entity Too Large",
                                          "The file is too big and exceeds the disk quota")
                mime, cls = mime_and_class(doc["name"], request.header("Content-Type"))
                at = now()
                doc = {**doc, "size": str(size), "md5sum": base64.b64encode(digest.digest()).decode(),
                       "mime": mime, "class": cls, "updated_at": parse_time(request.param("UpdatedAt")) or at}
                meta = dict(doc.get("cozyMetadata") or {})
                meta.update({"updatedAt": at, "uploadedAt": at, "uploadedOn": f"https://{self.domain}/"})
                doc["cozyMetadata"] = meta
                os.replace(tmp, self.disk_path(path))
                return self.couch.put(self.db, doc)
            finally:
                tmp.unlink(missing_ok=True)

    def add_refs(self, doc: dict, refs: list[dict]) -> dict:
        with self.lock:
            doc = self.require(doc["_id"])
            current = list(doc.get("referenced_by") or [])
            for ref in refs:
                item = {"type": ref.get("type"), "id": ref.get("id")}
                if doc.get("type") == "directory" and item in current:
                    continue  # directories de-duplicate, files do not (§2)
                current.append(item)
            doc["referenced_by"] = current
            return self.put(doc)

    def remove_refs(self, doc: dict, refs: list[dict]) -> dict:
        with self.lock:
            doc = self.require(doc["_id"])
            gone = [{"type": r.get("type"), "id": r.get("id")} for r in refs]
            doc["referenced_by"] = [r for r in (doc.get("referenced_by") or []) if r not in gone]
            return self.put(doc)

    def destroy_all(self) -> None:
        with self.lock:
            self.dir_docs.clear()
        shutil.rmtree(self.disk, ignore_errors=True)


def _strip_conflict_suffix(name: str) -> str:
    """``stripConflictSuffix``: ``name (123)`` → ``name`` (only digits and parentheses after the last ``(``)."""
    at = name.rfind("(")
    if at <= 0 or any(c not in "()0123456789" for c in name[at:]):
        return name
    return name[:at - 1]


# --- JSON:API rendering (§1.4)
def file_attributes(doc: dict) -> dict:
    attrs: dict = {"type": doc.get("type")}
    attrs["name"] = doc.get("name", "")
    if doc.get("dir_id"):
        attrs["dir_id"] = doc["dir_id"]
    if doc.get("type") == "directory":
        attrs["path"] = doc.get("path")
    attrs["created_at"] = doc.get("created_at")
    attrs["updated_at"] = doc.get("updated_at")
    if doc.get("type") == "file":
        for key in ("size", "md5sum", "mime", "class", "executable", "trashed", "encrypted"):
            attrs[key] = doc.get(key)
    if doc.get("tags"):
        attrs["tags"] = doc["tags"]
    if doc.get("type") == "file" and doc.get("metadata"):
        attrs["metadata"] = doc["metadata"]
    if doc.get("restore_path"):
        attrs["restore_path"] = doc["restore_path"]
    if doc.get("type") == "directory":
        if doc.get("referenced_by"):
            attrs["referenced_by"] = doc["referenced_by"]
        if doc.get("not_synchronized_on"):
            attrs["not_synchronized_on"] = doc["not_synchronized_on"]
    if doc.get("cozyMetadata"):
        attrs["cozyMetadata"] = doc["cozyMetadata"]
    return attrs


def _refs_relationship(doc: dict) -> dict:
    refs = doc.get("referenced_by") or None
    return {
        "links": {"self": f"/files/{doc['_id']}/relationships/references"},
        "data": [{"id": r.get("id"), "type": r.get("type")} for r in refs] if refs else None,
    }


def file_resource(doc: dict, full: bool = True) -> dict:
    """A file or directory as a JSON:API resource; ``full`` adds the relationships a GET shows."""
    links = {"self": f"/files/{doc['_id']}"}
    if doc.get("type") == "file" and doc.get("class") in ("image", "pdf"):
        key = hashlib.sha256((doc["_id"] + doc.get("_rev", "")).encode()).hexdigest()[:16]
        for size in ("tiny", "small", "medium", "large"):
            links[size] = f"/files/{doc['_id']}/thumbnails/{key}/{size}"
    relationships: dict = {}
    if doc.get("type") == "file":
        relationships["parent"] = {"links": {"related": f"/files/{doc['dir_id']}"},
                                   "data": {"id": doc["dir_id"], "type": FILES}}
        relationships["referenced_by"] = _refs_relationship(doc)
    else:
        if full and doc.get("dir_id"):
            relationships["parent"] = {"links": {"self": f"/files/{doc['dir_id']}"},
                                       "data": {"id": doc["dir_id"], "type": FILES}}
        relationships["referenced_by"] = _refs_relationship(doc)
    return {
        "type": FILES,
        "id": doc["_id"],
        "attributes": file_attributes(doc),
        "meta": {"rev": doc.get("_rev")},
        "links": links,
        "relationships": relationships,
    }
