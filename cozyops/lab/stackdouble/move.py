"""Moving an instance: export and import (cozy-stack.md §7, §2.5, §1.9), from cozy-stack's ``model/move``,
``worker/moves/workers.go``, ``web/instances/move.go`` … at db1163854.

Export (``ExportWorker``, ``CreateExport``): the admin route queues an ``export`` job (202 with the
job). The worker refuses when an export of the same domain is still ``exporting`` and younger than a
day (``CleanPreviousExports``), removes the older archives, and writes an ``io.cozy.exports``
document in the *global* database (``couchdb.CreateDoc(prefixer.GlobalPrefixer, …)``), its own id,
``state: exporting``, ``total_size: -1``; realtime ``CREATED``. The JSON documents go to a tar.gz
archive, ``<fs>/exports/<domain>/<id>tar.gz`` (``aferoArchiver.fileName``: no dot before ``tar``):
``instance.json`` (the instance without its secrets), ``<doctype>/<id>.json`` for every database
but the files', and ``io.cozy.files/<id>.json`` for every directory. Then ``state: done``,
``total_size`` (bytes of JSON written), ``creation_duration`` (ns); realtime ``UPDATED``; with
``admin_req`` the document is published once more (``NotifyRealtime``, ``CREATED`` on the global
prefixer). That is how ``cozy-stack instances export --path`` learns the export is done
(``client.AdminClient.Export`` waits for an ``UPDATED`` ``io.cozy.exports`` with ``state: done``).

A part (``ExportCopyData``) is a ZIP: part 0 has the archive's documents under ``My Cozy/Data/``,
then for each file its document ``My Cozy/Data/io.cozy.files/<id>.json`` followed by its content
``My Cozy/Files/<path>`` (the importer takes the entry after a file's document as its content). A
double's instance is far below a part's size (1 GB at least), so ``parts_cursors`` is ``[]``.

The link (``GenerateLink``) carries ``base64.URLEncoding`` of ``crypto.EncodeAuthMessage`` (name
``exports``, the instance's session secret, the export id): the public routes
``/move/exports/:mac`` and ``/move/exports/data/:mac`` decode both layers.

Import (``ImportWorker``, ``move.Import``): the instance is blocked (``IMPORTING``), the manifest
fetched (safe_http), the instance reset (``lifecycle.Reset``), each part downloaded and imported
(``importer.importZip``), and the instance unblocked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import ipaddress
import json
import os
import socket
import struct
import tarfile
import threading
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path
from urllib.parse import quote, urlsplit

from . import realtime
from .couch import db_name
from .httpd import HTTPError, Response, json_response, log
from .instances import StackError, unb64
from .vfs import FILES, ROOT, TRASH, VFS, now

EXPORTS = "io.cozy.exports"
JOBS = "io.cozy.jobs"
GLOBAL_EXPORTS = db_name("global", EXPORTS)
MAX_AGE = 7 * 24 * 3600  # archiveMaxAge
MIN_PARTS_SIZE = 1024 * 1024 * 1024  # minimalPartsSize
ZERO_TIME = "0001-01-01T00:00:00Z"
MAC_NAME = b"exports"  # archiveMACConfig
MAC_MAX_LEN = 256
# The job is picked up after this delay: the CLI subscribes to realtime events after its POST (as
# cozy-stack's does), and a double's export of a small instance would otherwise be over before.
QUEUE_DELAY = 1.0
# model/instance/lifecycle/reset.go: the databases Reset creates again.
RESET_DOCTYPES = ("io.cozy.files", "io.cozy.apps", "io.cozy.konnectors", "io.cozy.oauth.clients", "io.cozy.jobs",
                  "io.cozy.triggers", "io.cozy.permissions", "io.cozy.sharings", "com.bitwarden.ciphers",
                  "io.cozy.sessions.logins", "io.cozy.notifications", "io.cozy.contacts", "io.cozy.settings")
# writeInstanceDoc: what the instance document loses in the archive.
INSTANCE_SECRETS = ("passphrase_hash", "passphrase_reset_token", "passphrase_reset_time", "register_token",
                    "session_secret", "oauth_secret", "cli_secret", "swift_layout", "couch_cluster",
                    "indexes_version")
# importer.importZip: doctypes never imported as documents (without a move between two stacks).
SKIPPED = {"io.cozy.exports", "io.cozy.sessions", "com.bitwarden.ciphers", "com.bitwarden.folders",
           "com.bitwarden.profiles", "com.bitwarden.organizations", "com.bitwarden.contacts", "io.cozy.sharings",
           "io.cozy.shared", "io.cozy.permissions"}
SKIPPED_SETTINGS = {"io.cozy.settings.instance", "io.cozy.settings.bitwarden"}


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


# --- the MAC of the link (pkg/crypto/mac.go EncodeAuthMessage / DecodeAuthMessage)
def encode_mac(inst: dict, export_id: str, at: float | None = None) -> str:
    key = unb64(inst.get("session_secret"))
    stamp = struct.pack(">Q", int(time.time() if at is None else at))
    message = MAC_NAME + stamp + export_id.encode()
    inner = base64.urlsafe_b64encode(stamp + export_id.encode() + hmac.new(key, message, hashlib.sha256).digest())
    return base64.urlsafe_b64encode(inner.rstrip(b"=")).decode()  # GenerateLink: URLEncoding, padded


def decode_mac(inst: dict, code: str) -> str | None:
    """The export id in ``code``, or None when it does not verify (``ErrMACInvalid``) or has expired."""
    try:
        inner = base64.urlsafe_b64decode(code.encode())
        if len(inner) > MAC_MAX_LEN:
            return None
        raw = base64.urlsafe_b64decode(inner + b"=" * (-len(inner) % 4))
    except (ValueError, TypeError):
        return None
    if len(raw) < 8 + 32:
        return None
    stamp, value, got = raw[:8], raw[8:-32], raw[-32:]
    key = unb64(inst.get("session_secret"))
    if not hmac.compare_digest(hmac.new(key, MAC_NAME + stamp + value, hashlib.sha256).digest(), got):
        return None
    if struct.unpack(">Q", stamp)[0] + MAX_AGE < time.time():
        return None
    return value.decode(errors="replace")


def export_links(stack, inst: dict, export_id: str) -> dict:
    code = encode_mac(inst, export_id)
    domain = inst["domain"]
    if stack.flat:
        first, _, rest = domain.partition(".")
        settings = f"https://{first}-settings.{rest}/#/exports/{code}"
    else:
        settings = f"https://settings.{domain}/#/exports/{code}"
    return {"link": settings, "manifest": f"https://{domain}/move/exports/{code}"}


# --- jobs
def _job(inst: dict, worker: str, message: dict) -> dict:
    return {"_id": uuid.uuid4().hex, "domain": inst["domain"], "prefix": inst["prefix"], "worker": worker,
            "message": message, "event": None, "state": "queued", "queued_at": now(), "started_at": ZERO_TIME,
            "finished_at": ZERO_TIME}


def _save_job(stack, inst: dict, job: dict) -> None:
    jobs_db = db_name(inst["prefix"], JOBS)
    stack.couch.create_db(jobs_db)
    current = stack.couch.get(jobs_db, job["_id"])
    job.pop("_rev", None)
    if current is not None:
        job["_rev"] = current["_rev"]
    stack.couch.put(jobs_db, job)
    stack.hub.publish(inst["prefix"], realtime.UPDATED if current else realtime.CREATED, JOBS, dict(job))


def _run_job(stack, inst: dict, job: dict, work) -> None:
    time.sleep(QUEUE_DELAY)
    job.update({"state": "running", "started_at": now()})
    _save_job(stack, inst, job)
    try:
        work()
        job.update({"state": "done", "finished_at": now()})
    except Exception as error:  # the job records the failure, as cozy-stack's workers do
        log(f"[jobs] {job['worker']} of {inst['domain']} failed: {type(error).__name__}: {error}")
        job.update({"state": "errored", "error": str(error), "finished_at": now()})
    _save_job(stack, inst, job)


# --- export
def start_export(stack, inst: dict, admin_req: bool) -> dict:
    """``web/instances/move.go exporter``: push the job; the answer is the job as queued."""
    message = {"parts_size": 0, "max_age": 0, "contextual_domain": inst["domain"]}
    if admin_req:
        message["admin_req"] = True
    job = _job(inst, "export", message)
    _save_job(stack, inst, job)
    answer = dict(job)
    threading.Thread(target=_run_job, args=(stack, inst, job, lambda: create_export(stack, inst, admin_req)),
                     daemon=True).start()
    return answer


def archive_path(stack, doc: dict) -> Path:
    return stack.config.fs_root / "exports" / doc["domain"] / (doc["_id"] + "tar.gz")


def exports_of(stack, domain: str) -> list[dict]:
    return [d for d in stack.couch.all_docs(GLOBAL_EXPORTS)
            if not d["_id"].startswith("_design/") and d.get("domain") == domain]


def create_export(stack, inst: dict, admin_req: bool) -> dict:
    started = time.time()
    stack.couch.create_db(GLOBAL_EXPORTS)
    previous = exports_of(stack, inst["domain"])
    for old in previous:  # CleanPreviousExports
        if old.get("state") == "exporting" and old.get("created_at", "") > _iso(started - 24 * 3600):
            raise StackError(409, "Conflict", "export: an archive is already being created")
    for old in previous:
        archive_path(stack, old).unlink(missing_ok=True)
    used, _, _ = stack.vfs(inst).usage()
    parts_size = MIN_PARTS_SIZE
    if used > parts_size:
        parts_size = int((used / MIN_PARTS_SIZE) ** 0.5 * MIN_PARTS_SIZE)
    doc = {"_id": uuid.uuid4().hex, "domain": inst["domain"], "parts_size": parts_size, "parts_cursors": [],
           "state": "exporting", "created_at": _iso(started), "expires_at": _iso(started + MAX_AGE),
           "total_size": -1}
    stack.couch.put(GLOBAL_EXPORTS, doc)
    stack.hub.publish(inst["prefix"], realtime.CREATED, EXPORTS, dict(doc))
    try:
        size = _write_archive(stack, inst, doc)
        doc.update({"state": "done", "total_size": size})
        error = None
    except Exception as failure:
        doc.update({"state": "error", "error": str(failure)})
        error = failure
    doc["creation_duration"] = int((time.time() - started) * 1e9)
    stack.couch.put(GLOBAL_EXPORTS, doc)
    stack.hub.publish(inst["prefix"], realtime.UPDATED, EXPORTS, dict(doc))
    if error is not None:
        raise error
    if admin_req:
        stack.hub.publish(None, realtime.CREATED, EXPORTS, dict(doc))
    return doc


def _documents(stack, inst: dict):
    """(tar name, JSON bytes) of ``writeDocuments``: the instance, the databases, the directories."""
    clean = {k: v for k, v in inst.items() if k not in INSTANCE_SECRETS}
    yield "instance.json", json.dumps(clean).encode()
    for name, doctype in sorted(stack.couch.instance_dbs(inst["prefix"]), key=lambda d: d[1]):
        if doctype in (FILES, "io.cozy.files.versions"):
            continue
        for doc in stack.couch.all_docs(name):
            if not doc["_id"].startswith("_design/"):
                yield f"{quote(doctype, safe='')}/{doc['_id']}.json", json.dumps(doc).encode()
    dirs = [d for d in stack.couch.all_docs(db_name(inst["prefix"], FILES)) if d.get("type") == "directory"]
    for doc in sorted(dirs, key=lambda d: d.get("path", "")):  # vfs.Walk: a parent before its children
        if doc:
            yield f"{FILES}/{doc['_id']}.json", json.dumps(doc).encode()


def _write_archive(stack, inst: dict, doc: dict) -> int:
    path = archive_path(stack, doc)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    size = 0
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as out, tarfile.open(fileobj=out, mode="w:gz", compresslevel=9) as tar:
        stamp = time.time()
        for name, raw in _documents(stack, inst):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(raw), 0o640, stamp
            tar.addfile(info, io.BytesIO(raw))
            size += len(raw)
    return size


def part_zip(stack, inst: dict, doc: dict) -> bytes:
    """``ExportCopyData`` of part 0: the archive's documents, then each file's document and content."""
    buffer = io.BytesIO()
    vfs = stack.vfs(inst)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with tarfile.open(archive_path(stack, doc), "r:gz") as tar:
            for member in tar:
                if member.isreg():
                    archive.writestr("My Cozy/Data/" + member.name, tar.extractfile(member).read())
        files = [d for d in stack.couch.all_docs(vfs.db) if d.get("type") == "file"]
        for file_doc in sorted(files, key=lambda d: d["_id"]):
            archive.writestr(f"My Cozy/Data/{FILES}/{file_doc['_id']}.json", json.dumps(file_doc))
            path = vfs.path_of(file_doc)
            source = vfs.disk_path(path)
            if source.is_file():
                archive.write(source, "My Cozy/Files" + path)
    return buffer.getvalue()


def find_export(stack, export_id: str) -> dict:
    """The export document, or 404 ``exports: not found`` / ``exports: has expired``."""
    doc = stack.couch.get(GLOBAL_EXPORTS, export_id) if export_id else None
    if doc is None:
        raise ExportError(404, "exports: not found")
    if doc.get("expires_at", "") <= _iso(time.time()):
        raise ExportError(404, "exports: has expired")
    return doc


class ExportError(Exception):
    """An ``echo.HTTPError`` of ``model/move/errors.go``: rendered as ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _cursor(doc: dict, cursor: str) -> int:
    if not cursor:
        return 0
    cursors = doc.get("parts_cursors") or []
    if cursor not in cursors:
        raise ExportError(400, "export: cursor is invalid")
    return cursors.index(cursor) + 1


def admin_part(stack, inst: dict, export_id: str, cursor: str) -> Response:
    """``web/instances/move.go dataExporter``: ``attachment; filename="<domain>.zip"``."""
    doc = find_export(stack, export_id)
    number = _cursor(doc, cursor)
    filename = inst["domain"] + ".zip"
    if doc.get("parts_cursors"):
        filename = f"{inst['domain']} - part{number:03d}.zip"
    return Response(200, part_zip(stack, inst, doc), "application/zip",
                    [("Content-Disposition", f'attachment; filename="{filename}"')])


def _by_mac(stack, inst: dict, code: str) -> dict:
    try:
        base64.urlsafe_b64decode(code.encode())
    except ValueError as error:
        raise ExportError(400, str(error)) from None
    export_id = decode_mac(inst, code)
    if export_id is None:
        raise ExportError(401, "exports: invalid mac")
    return find_export(stack, export_id)


def export_resource(doc: dict) -> dict:
    attrs = {k: v for k, v in doc.items() if not k.startswith("_")}
    return {"data": {"type": EXPORTS, "id": doc["_id"], "attributes": attrs, "meta": {"rev": doc.get("_rev")},
                     "links": {"self": f"/{EXPORTS}/{doc['_id']}"}}}


# The public /move routes (web/move) call these three; an ExportError goes out as the HTTPError it is.
def find_export_by_mac(stack, inst: dict, code: str) -> dict:
    try:
        return _by_mac(stack, inst, code)
    except ExportError as error:
        raise HTTPError(json_response(error.status, {"error": error.message})) from None


def _part_response(stack, inst: dict, doc: dict, cursor: str) -> Response:
    try:
        return _public_part(stack, inst, doc, cursor)
    except ExportError as error:
        raise HTTPError(json_response(error.status, {"error": error.message})) from None


def public_manifest(stack, inst: dict, code: str) -> dict:
    """``web/move exportHandler``: the export document as JSON:API."""
    return export_resource(_by_mac(stack, inst, code))


def public_part(stack, inst: dict, code: str, cursor: str) -> Response:
    """``web/move exportDataHandler``: ``attachment; filename=My Cozy.zip`` (no quotes there)."""
    return _public_part(stack, inst, _by_mac(stack, inst, code), cursor)


def _public_part(stack, inst: dict, doc: dict, cursor: str) -> Response:
    number = _cursor(doc, cursor)
    filename = "My Cozy.zip" if not doc.get("parts_cursors") else f"My Cozy - part{number:03d}.zip"
    return Response(200, part_zip(stack, inst, doc), "application/zip",
                    [("Content-Disposition", f"attachment; filename={filename}")])


# --- import
def _allowed(stack, host: str) -> None:
    """safe_http: private and loopback addresses are refused unless trusted (§7 step 4)."""
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as error:
        raise OSError(f"cannot resolve {host}: {error}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address.is_private or address.is_loopback or address.is_link_local:
            if not any(address in net for net in stack.config.trusted_private_networks):
                raise OSError(f"{host} resolves to the private address {address}, which is not trusted")


def _fetch(stack, url: str) -> bytes:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OSError(f"not an http(s) URL: {parts.scheme}://…")
    _allowed(stack, parts.hostname)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "*/*"}), timeout=60) as resp:
            return resp.read()
    except urllib.error.HTTPError as error:
        raise OSError("exports: not found") from error


def start_import(stack, inst: dict, manifest_url: str) -> None:
    """``web/instances/move.go importer``: push an ``import`` job (the answer is 204)."""
    job = _job(inst, "import", {"manifest_url": manifest_url})
    _save_job(stack, inst, job)
    threading.Thread(target=_run_job, args=(stack, inst, job, lambda: import_worker(stack, inst, manifest_url)),
                     daemon=True).start()


def _set_blocked(stack, domain: str, reason: str | None) -> dict:
    with stack.instances.lock:
        doc = stack.instances.require(domain)
        if reason:
            doc.update({"blocked": True, "blocking_reason": reason})
        else:
            doc.pop("blocked", None)
            doc.pop("blocking_reason", None)
        stack.instances.save(doc)
    return doc


def import_worker(stack, inst: dict, manifest_url: str) -> None:
    """``ImportWorker``: blocked (IMPORTING) while ``move.Import`` runs, unblocked after, even on failure."""
    inst = _set_blocked(stack, inst["domain"], "IMPORTING")
    try:
        manifest = json.loads(_fetch(stack, manifest_url))
        attrs = manifest.get("data", {}).get("attributes", {})
        parts = urlsplit(manifest_url)
        data_url = parts._replace(path=parts.path.replace("/move/exports/", "/move/exports/data/", 1), query="")
        reset(stack, inst)
        for cursor in ["", *(attrs.get("parts_cursors") or [])]:
            query = "cursor=" + quote(cursor, safe="") if cursor else ""
            _import_part(stack, inst, _fetch(stack, data_url._replace(query=query).geturl()))
    finally:
        _set_blocked(stack, inst["domain"], None)


def reset(stack, inst: dict) -> None:
    """``lifecycle.Reset``: files and databases go; the instance's settings document, the databases
    Reset lists, root and trash, and the apps home, store and settings come back."""
    settings_db = db_name(inst["prefix"], "io.cozy.settings")
    settings = stack.couch.get(settings_db, "io.cozy.settings.instance")
    vfs = stack.vfs(inst)
    vfs.destroy_all()
    for name, _ in stack.couch.instance_dbs(inst["prefix"]):
        stack.couch.delete_db(name)
    for doctype in RESET_DOCTYPES:
        stack.couch.create_db(db_name(inst["prefix"], doctype))
    if settings is not None:
        settings.pop("_rev", None)
        stack.couch.put(settings_db, settings)
    vfs.init_root()
    apps = stack.apps(inst)
    for slug in ("home", "store", "settings"):
        try:
            apps.install(slug, None)
        except StackError as error:
            log(f"[move] Failed to install {slug}: {error.detail}")


def _import_part(stack, inst: dict, raw: bytes) -> None:
    """``importer.importZip``."""
    vfs: VFS = stack.vfs(inst)
    apps = stack.apps(inst)
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        entries = archive.infolist()
        for index, entry in enumerate(entries):
            if not entry.filename.startswith("My Cozy/Data/"):
                continue
            doctype, sep, rest = entry.filename[len("My Cozy/Data/"):].partition("/")
            if not sep:
                continue  # instance.json
            doc_id = rest.removesuffix(".json")
            if doctype in SKIPPED or (doctype == "io.cozy.settings" and doc_id in SKIPPED_SETTINGS):
                continue
            if doctype in ("io.cozy.apps", "io.cozy.konnectors"):
                slug = doc_id.split("/", 1)[-1]
                if doctype == "io.cozy.apps" and apps.get(slug) is None:
                    try:
                        apps.install(slug, None)
                    except StackError as error:
                        log(f"[move] cannot install {slug}: {error.detail}")
                continue
            if doctype == "io.cozy.files.versions":
                continue
            doc = json.loads(archive.read(entry))
            doc.pop("_rev", None)
            if doctype == FILES:
                following = entries[index + 1] if index + 1 < len(entries) else None
                _import_file(vfs, doc, archive, following)
                continue
            if doctype == "io.cozy.triggers" and doc.get("worker") in ("share-track", "share-replicate",
                                                                        "share-upload"):
                continue
            db = db_name(inst["prefix"], doctype)
            stack.couch.create_db(db)
            existing = stack.couch.get(db, doc["_id"])
            if existing is not None:
                doc["_rev"] = existing["_rev"]
            stack.couch.put(db, doc)


def _import_file(vfs: VFS, doc: dict, archive: zipfile.ZipFile, content) -> None:
    if doc.get("type") == "directory":
        if doc["_id"] in (ROOT, TRASH):
            return
        vfs.disk_path(doc["path"]).mkdir(parents=True, exist_ok=True)
        vfs.put(doc)
        return
    if content is None or not content.filename.startswith("My Cozy/Files/"):
        raise ValueError("No content for file")
    for key in ("carbon_copy", "electronic_safe"):
        (doc.get("metadata") or {}).pop(key, None)
    target = vfs.disk_path(vfs.path_of(doc))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(archive.read(content))
    vfs.put(doc)
