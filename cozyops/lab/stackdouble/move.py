"""Moving an instance: export and import (cozy-stack.md §7, §2.5, §1.9).

Export: ``POST /instances/:domain/export`` queues a job (202 with the job); the job writes an
``io.cozy.exports`` document (state ``exporting`` then ``done``). The double gives the export the
job's id (cozy-stack's CLI learns the export through realtime events, which the double does not
have). The archive is served as ZIP parts: part 0 (cursor ``""``) holds every document as
``My Cozy/Data/<doctype>/<id>.json`` and every file as ``My Cozy/Files/<path>``; the double's
instances are small, so there is never a part 1 (``parts_cursors`` is empty).

Import: ``POST /instances/:domain/import?manifest_url=…`` (204) runs the import worker in the
background: manifest (``state`` must be ``done``), reset of the target, download of the parts,
documents and files written back, apps home, settings and store present.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import ipaddress
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from urllib.parse import quote, urlsplit

from .couch import db_name
from .httpd import Response, log
from .instances import DOCTYPES, StackError, unb64
from .vfs import FILES, ROOT, TRASH, VFS, now

EXPORTS = "io.cozy.exports"
JOBS = "io.cozy.jobs"
MAX_AGE = 7 * 24 * 3600
ZERO_TIME = "0001-01-01T00:00:00Z"
SKIPPED_ON_IMPORT = ("io.cozy.exports", "io.cozy.sessions", "io.cozy.sessions.logins", "com.bitwarden.ciphers",
                     "com.bitwarden.folders", "com.bitwarden.profiles", "io.cozy.sharings", "io.cozy.shared",
                     "io.cozy.jobs", "io.cozy.triggers")
PART_SIZE = 1_000_000_000


def mac(inst: dict, export_id: str) -> str:
    key = unb64(inst.get("session_secret"))
    return base64.urlsafe_b64encode(hmac.new(key, export_id.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()


def export_links(stack, inst: dict, export_id: str) -> dict:
    code = mac(inst, export_id)
    domain = inst["domain"]
    if stack.flat:
        first, _, rest = domain.partition(".")
        settings = f"https://{first}-settings.{rest}/#/exports/{code}"
    else:
        settings = f"https://settings.{domain}/#/exports/{code}"
    return {"link": settings, "manifest": f"https://{domain}/move/exports/{code}"}


def start_export(stack, inst: dict, admin_req: bool) -> dict:
    job_id = uuid.uuid4().hex
    jobs_db = db_name(inst["prefix"], JOBS)
    stack.couch.create_db(jobs_db)
    job = {"_id": job_id, "domain": inst["domain"], "prefix": inst["prefix"], "worker": "export",
           "message": {"parts_size": 0, "max_age": 0, "contextual_domain": inst["domain"], "admin_req": admin_req},
           "event": None, "state": "queued", "queued_at": now(), "started_at": ZERO_TIME, "finished_at": ZERO_TIME}
    stack.couch.put(jobs_db, job)
    answer = dict(job)
    threading.Thread(target=_run_export, args=(stack, inst, dict(job)), daemon=True).start()
    return answer


def _run_export(stack, inst: dict, job: dict) -> None:
    jobs_db = db_name(inst["prefix"], JOBS)
    exports_db = db_name(inst["prefix"], EXPORTS)
    started = time.time()
    try:
        stack.couch.create_db(exports_db)
        job.update({"state": "running", "started_at": now()})
        stack.couch.put(jobs_db, job)
        export = {"_id": job["_id"], "domain": inst["domain"], "parts_size": PART_SIZE, "parts_cursors": [],
                  "with_doctypes": [], "state": "exporting", "created_at": now(),
                  "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started + MAX_AGE)),
                  "total_size": 0, "creation_duration": 0}
        stack.couch.put(exports_db, export)
        used, _, _ = stack.vfs(inst).usage()
        export.update({"state": "done", "total_size": used, "creation_duration": int((time.time() - started) * 1e9)})
        stack.couch.put(exports_db, export)
        job.update({"state": "done", "finished_at": now()})
    except Exception as error:  # the job records the failure, as cozy-stack's workers do
        log(f"[jobs] export of {inst['domain']} failed: {type(error).__name__}: {error}")
        job.update({"state": "errored", "error": str(error), "finished_at": now()})
    stack.couch.put(jobs_db, job)


def find_export(stack, inst: dict, export_id: str) -> dict:
    doc = stack.couch.get(db_name(inst["prefix"], EXPORTS), export_id)
    if doc is None:
        raise StackError(404, "Not Found", "export not found")
    return doc


def find_export_by_mac(stack, inst: dict, code: str) -> dict | None:
    for doc in stack.couch.all_docs(db_name(inst["prefix"], EXPORTS)):
        if hmac.compare_digest(mac(inst, doc["_id"]), code):
            return doc
    return None


def export_resource(doc: dict) -> dict:
    attrs = {k: v for k, v in doc.items() if not k.startswith("_")}
    return {"data": {"type": EXPORTS, "id": doc["_id"], "attributes": attrs, "meta": {"rev": doc.get("_rev")}}}


def part_zip(stack, inst: dict) -> bytes:
    """Part 0 of an export: every document and every file of the instance."""
    buffer = io.BytesIO()
    prefix = inst["prefix"]
    vfs = stack.vfs(inst)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for db, doctype in sorted(stack.couch.instance_dbs(prefix)):
            if doctype in (EXPORTS, JOBS):
                continue
            for doc in stack.couch.all_docs(db):
                if doc["_id"].startswith("_design/"):
                    continue
                doc = {k: v for k, v in doc.items() if k != "_rev"}
                name = f"My Cozy/Data/{doctype}/{quote(doc['_id'], safe='')}.json"
                archive.writestr(name, json.dumps(doc))
                if doctype == FILES and doc.get("type") == "file" and not doc.get("trashed"):
                    path = vfs.path_of(doc)
                    source = vfs.disk_path(path)
                    if source.is_file():
                        archive.write(source, "My Cozy/Files" + path)
    return buffer.getvalue()


def serve_part(stack, inst: dict, export_id: str, cursor: str) -> Response:
    doc = find_export(stack, inst, export_id)
    return _part_response(stack, inst, doc, cursor)


def _part_response(stack, inst: dict, doc: dict, cursor: str) -> Response:
    if doc.get("state") != "done":
        raise StackError(404, "Not Found", "export is not done")
    if cursor and cursor not in (doc.get("parts_cursors") or []):
        raise StackError(404, "Not Found", "part not found")
    number = 0 if not cursor else doc["parts_cursors"].index(cursor) + 1
    data = part_zip(stack, inst)
    filename = f"{inst['domain']} - part{number:03d}.zip"
    return Response(200, data, "application/zip", [("Content-Disposition", f'attachment; filename="{filename}"')])


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
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "*/*"}), timeout=60) as resp:
        return resp.read()


def start_import(stack, inst: dict, manifest_url: str) -> None:
    jobs_db = db_name(inst["prefix"], JOBS)
    stack.couch.create_db(jobs_db)
    job = {"_id": uuid.uuid4().hex, "domain": inst["domain"], "prefix": inst["prefix"], "worker": "import",
           "message": {"manifest_url": "(hidden)"}, "event": None, "state": "queued", "queued_at": now(),
           "started_at": ZERO_TIME, "finished_at": ZERO_TIME}
    stack.couch.put(jobs_db, job)
    threading.Thread(target=_run_import, args=(stack, inst, job, manifest_url), daemon=True).start()


def _run_import(stack, inst: dict, job: dict, manifest_url: str) -> None:
    jobs_db = db_name(inst["prefix"], JOBS)
    try:
        job.update({"state": "running", "started_at": now()})
        stack.couch.put(jobs_db, job)
        manifest = json.loads(_fetch(stack, manifest_url))
        attrs = manifest.get("data", {}).get("attributes", {})
        if attrs.get("state") != "done":
            raise ValueError("the export is not done")
        data_url = manifest_url.replace("/move/exports/", "/move/exports/data/", 1)
        parts = [_fetch(stack, data_url + "?cursor=")]
        for cursor in attrs.get("parts_cursors") or []:
            parts.append(_fetch(stack, data_url + "?cursor=" + quote(cursor, safe="")))
        _reset(stack, inst)
        for raw in parts:
            _import_part(stack, inst, raw)
        apps = stack.apps(inst)
        for slug in ("home", "settings", "store"):
            if apps.get(slug) is None:
                apps.install(slug, None)
        job.update({"state": "done", "finished_at": now()})
    except Exception as error:
        log(f"[jobs] import into {inst['domain']} failed: {type(error).__name__}: {error}")
        job.update({"state": "errored", "error": f"{type(error).__name__}: {error}", "finished_at": now()})
    job.pop("_rev", None)
    current = stack.couch.get(jobs_db, job["_id"])
    if current is not None:
        job["_rev"] = current["_rev"]
    stack.couch.put(jobs_db, job)


def _reset(stack, inst: dict) -> None:
    """``lifecycle.Reset``: every database and file of the target go; empty databases, root and trash come back."""
    for name, doctype in stack.couch.instance_dbs(inst["prefix"]):
        if doctype != JOBS:
            stack.couch.delete_db(name)
    vfs = stack.vfs(inst)
    vfs.destroy_all()
    for doctype in DOCTYPES:
        stack.couch.create_db(db_name(inst["prefix"], doctype))
    vfs.init_root()


def _import_part(stack, inst: dict, raw: bytes) -> None:
    vfs: VFS = stack.vfs(inst)
    files: list[dict] = []
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        for name in archive.namelist():
            if not name.startswith("My Cozy/Data/") or not name.endswith(".json"):
                continue
            doctype = name[len("My Cozy/Data/"):].split("/")[0]
            if doctype in SKIPPED_ON_IMPORT:
                continue
            doc = json.loads(archive.read(name))
            if doctype == FILES:
                files.append(doc)
                continue
            db = db_name(inst["prefix"], doctype)
            stack.couch.create_db(db)
            existing = stack.couch.get(db, doc["_id"])
            if existing is not None:
                doc["_rev"] = existing["_rev"]
            stack.couch.put(db, doc)
        dirs = sorted((d for d in files if d.get("type") == "directory"), key=lambda d: d.get("path", ""))
        for doc in dirs:
            if doc["_id"] in (ROOT, TRASH) or doc.get("path", "").startswith("/.cozy_trash"):
                continue
            vfs.disk_path(doc["path"]).mkdir(parents=True, exist_ok=True)
            vfs.put(doc)
        for doc in files:
            if doc.get("type") != "file" or doc.get("trashed"):
                continue
            path = vfs.path_of(doc)
            target = vfs.disk_path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read("My Cozy/Files" + path))
            vfs.put(doc)
