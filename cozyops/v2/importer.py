"""Importing a cozy-monitor export into a v3 instance, through cozy-stack's public API.

Two passes over the export, each streaming:

1. ``inspect``: every member read and checked (a truncated archive or a decompression bomb is
   refused here, before anything is written), counts and sizes for the quota check and the report;
2. the import: folders merged into, files uploaded with Content-MD5 (spooled to the importer's
   scratch space to hash them first, memory bounded), albums and contacts created with fixed ids
   (a re-run finds them: no duplicates even after a crash between the write and the ledger entry),
   references added once, events written as one iCalendar file per v2 calendar.

Every item goes to the ledger (``cozyops.state.Ledger``) as soon as it is written, and to the
report (converted, renamed, kept as a file, skipped, with the reason).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import posixpath
import secrets
import shutil
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cozyops.errors import CozyopsError
from cozyops.stack import ROOT_ID, StackError
from cozyops.v2 import convert
from cozyops.v2.tarball import Limits, Member, Skipped, printable, read_export

log = logging.getLogger(__name__)

CHUNK = 1 << 20
SPOOL_IN_MEMORY = 8 << 20
# A stack answers a name conflict (409) before reading the body, and drops the connection when
# much of it is left unread (Go's net/http past 256 KiB, the double past 1 MiB): the client sees a
# broken connection, not the 409. A larger file's name is looked up before it is sent.
CHECK_FIRST_ABOVE = 256 << 10
STREAM_ABOVE = SPOOL_IN_MEMORY  # larger files go from the archive to the stack without a copy (checksum known)
SCOPE = "io.cozy.files io.cozy.contacts io.cozy.contacts.groups io.cozy.photos.albums"
TOKEN_LIFETIME = 25 * 60  # CLI tokens last 30 minutes: renew well before
MAX_CONFLICTS = 1000
MAX_VCF = 16 << 20  # a .vcf larger than this is skipped (reported)
MAX_EVENT = 16 << 20  # an event document larger than this stays a file only
# Uploads in flight at once. One at a time, each file paid the whole round trip through the SSH
# tunnel and the stack's work (about 85 ms); cozy-stack serves uploads side by side. The ledger
# is still written by one thread, for each upload once the stack has confirmed it, in archive order.
UPLOADS_IN_FLIGHT = 4

CONVERTED, RENAMED, KEPT, SKIPPED, ALREADY = "converted", "renamed", "kept as file", "skipped", "already imported"


@dataclass
class Item:
    source: str  # the member name (or "albums.json line 3", ...)
    kind: str  # directory, file, photo, album, reference, contact, event, calendar, archive, member
    outcome: str
    target: str = ""
    reason: str = ""


@dataclass
class Report:
    export: str
    domain: str = ""
    directory: str = "/"
    dry_run: bool = False
    items: list[Item] = field(default_factory=list)
    members: int = 0
    bytes: int = 0

    def add(self, source: str, kind: str, outcome: str, target: str = "", reason: str = "") -> None:
        self.items.append(Item(source, kind, outcome, target, reason))

    def counts(self) -> dict[str, int]:
        return dict(Counter(item.outcome for item in self.items))

    def to_json(self) -> dict:
        return {"export": self.export, "domain": self.domain, "directory": self.directory, "dry_run": self.dry_run,
                "members": self.members, "bytes": self.bytes, "counts": self.counts(),
                "items": [asdict(item) for item in self.items]}


# -- inspect --------------------------------------------------------------------------------


@dataclass
class Inspection:
    export: str
    members: int = 0
    folders: int = 0
    files: int = 0
    file_bytes: int = 0
    photos: int = 0
    contacts: int = 0
    albums_lines: int = 0
    references_lines: int = 0
    doctypes: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    problems: list[dict] = field(default_factory=list)
    # The base64 MD5 of each file member larger than STREAM_ABOVE (by member key): the import
    # streams those straight from the archive to the stack with their Content-MD5 known, instead of
    # copying them to the scratch space first. Not part of the report.
    checksums: dict[str, str] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        found = asdict(self)
        del found["checksums"]
        return found


def inspect(path: Path, limits: Limits | None = None, progress: Callable[[int], None] | None = None) -> Inspection:
    """Read the whole export once, writing nothing: counts, sizes, doctypes, problems (``ArchiveRefused``)."""
    result = Inspection(str(path))
    seen: Counter[str] = Counter()
    doctypes: Counter[str] = Counter()
    for item in read_export(path, limits):
        result.members += 1
        if isinstance(item, Skipped):
            result.problems.append({"member": printable(item.name), "problem": item.reason})
            continue
        seen[item.path + ("/" if item.kind == "dir" else "")] += 1
        if seen[item.path + ("/" if item.kind == "dir" else "")] == 2 and item.kind == "file":
            result.duplicates += 1
        if item.kind == "dir":
            result.folders += item.parts[0] == "files"
            continue
        top = item.parts[0]
        read = False
        if top == "files":
            result.files += 1
            result.file_bytes += item.size
            if item.size > STREAM_ABOVE and item.stream is not None:
                md5 = hashlib.md5()
                for chunk in _chunks(item):
                    md5.update(chunk)
                result.checksums[convert.member_key(item.path, seen[item.path])] = \
                    base64.b64encode(md5.digest()).decode()
                read = True
            if len(item.parts) > 2 and item.parts[1] == "Photos" and len(item.parts) == 4:
                result.photos += 1
            if len(item.parts) == 4 and item.parts[1] == "Archive":
                doctypes[item.parts[2]] += 1
        elif top == "contacts" and item.parts[-1].endswith(".vcf"):
            result.contacts += 1
        elif item.path in ("albums/albums.json", "albums/references.json"):
            read = True
            for _, value in convert.ndjson(_chunks(item)):
                if item.path.endswith("albums.json"):
                    result.albums_lines += 1
                else:
                    result.references_lines += 1
                if isinstance(value, convert.BadLine):
                    result.problems.append({"member": item.path, "problem": f"line {value.line}: {value.reason}"})
        if not read and item.stream is not None:
            _drain(item)
        if progress:
            progress(item.size)
    result.doctypes = dict(doctypes)
    return result


def _read_all(item: Member, limit: int = 256 << 20) -> bytes:
    if item.size > limit:
        raise CozyopsError(f"member {printable(item.name)}", f"larger than {limit} bytes")
    assert item.stream is not None
    return item.stream.read()


def _chunks(item: Member) -> Iterator[bytes]:
    assert item.stream is not None
    while chunk := item.stream.read(CHUNK):
        yield chunk


def _drain(item: Member) -> None:
    assert item.stream is not None
    while item.stream.read(CHUNK):
        pass


def fingerprint(path: Path) -> str:
    """Identifies an export (size, first MiB, last 64 KiB), cheaply, for the ledger and the fixed ids."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as raw:
        digest.update(raw.read(1 << 20))
        if size > (1 << 20):
            raw.seek(max(size - (64 << 10), 1 << 20))
            digest.update(raw.read())
    return digest.hexdigest()[:32]


# -- the target -----------------------------------------------------------------------------


class Target:
    """The instance written to: the public client, with the CLI token renewed before it expires."""

    def __init__(self, domain: str, public, mint: Callable[[], str], clock: Callable[[], float] = time.monotonic):
        self.domain = domain
        self.public = public
        self.mint = mint
        self.clock = clock
        self.minted = -1e18

    def client(self):
        if self.clock() - self.minted > TOKEN_LIFETIME:
            self.public.set_token(self.mint())
            self.minted = self.clock()
        return self.public


# -- the import -----------------------------------------------------------------------------


class _Spool:
    """A member's content copied to the scratch space (memory above 8 MiB goes to disk), hashed."""

    def __init__(self, item: Member, scratch: Path, progress: Callable[[int], None]) -> None:
        self.file = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, dir=scratch)  # noqa: SIM115
        md5 = hashlib.md5()
        assert item.stream is not None
        while chunk := item.stream.read(CHUNK):
            md5.update(chunk)
            self.file.write(chunk)
            progress(len(chunk))
        self.size = item.size
        self.md5 = base64.b64encode(md5.digest()).decode()
        self.file.seek(0)

    def close(self) -> None:
        self.file.close()


class _Body:
    """A member's stream as a request body: its length known (no chunked encoding), read in
    large blocks, the bytes counted for the progress bar."""

    def __init__(self, stream, size: int, progress: Callable[[int], None]) -> None:
        self.stream, self.size, self.progress = stream, size, progress

    def __len__(self) -> int:
        return self.size

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size if size and size > 0 else CHUNK)
        self.progress(len(data))
        return data


@dataclass
class _InFlight:
    """A file upload started in the pool, waiting for the stack's answer."""

    future: Future | None
    key: str  # its ledger key
    parent: str  # the v3 path of its folder
    name: str
    spool: _Spool | None
    source: str  # for the report
    kind: str
    archive: str  # the archived doctype, for a document kept as JSON


class Importer:
    def __init__(self, export: Path, target: Target | None, ledger, report: Report, *, directory: str = "/",
                 limits: Limits | None = None, scratch: Path | None = None,
                 progress: Callable[[int, int], None] | None = None, export_id: str = "",
                 checksums: dict[str, str] | None = None) -> None:
        self.export = export
        self.target = target  # None: dry run
        self.ledger = ledger
        self.report = report
        self.dest = convert.destination_parts(directory)
        self.limits = limits
        self.scratch = scratch or Path(tempfile.gettempdir())
        self.progress = progress or (lambda _bytes, _items: None)
        self.export_id = export_id or fingerprint(export)
        self.checksums = checksums or {}  # Inspection.checksums: these files are streamed, not spooled
        self.dirs: dict[str, str] = {"/": ROOT_ID}
        self.claimed: set[str] = set()  # dry run: paths taken
        self.reused: set[str] = set()  # folders found in the ledger (a resumed or repeated import)
        self.occurrences: Counter[str] = Counter()
        self.albums: dict[str, str] = {}
        self.references: list[tuple[str, convert.Reference]] = []
        self.calendars: dict[str, Any] = {}
        self.dir_options: dict[str, dict] = {}  # path -> created_at, updated_at, tags (a source that has them)
        self.pool: ThreadPoolExecutor | None = None
        self.inflight: deque[_InFlight] = deque()
        self.inflight_paths: set[str] = set()

    @property
    def dry(self) -> bool:
        return self.target is None

    def fixed_id(self, kind: str, key: str) -> str:
        return "v2" + hashlib.sha256(f"{self.export_id}\0{self.report.domain}\0{kind}\0{key}".encode()).hexdigest()[:30]

    # -- the pass ---------------------------------------------------------------------------

    def run(self) -> Report:
        with own_scratch(self.scratch) as scratch:
            self.scratch = scratch
            if not self.dry:
                self.pool = ThreadPoolExecutor(UPLOADS_IN_FLIGHT, thread_name_prefix="v2-upload")
            try:
                if self.dest:
                    self.ensure_dir(self.dest)
                for item in read_export(self.export, self.limits):
                    self.report.members += 1
                    if isinstance(item, Skipped):
                        self.report.add(printable(item.name), "member", SKIPPED, reason=item.reason)
                    else:
                        self.member(item)
                    self.progress(0, 1)
                self.drain()  # the references need every photo's id from the ledger
            finally:
                self._abandon()
            self.apply_references()
            self.write_calendars()
            for handle in self.calendars.values():
                handle.close()
        return self.report

    def member(self, item: Member) -> None:
        top = item.parts[0]
        name = printable(item.name)
        if item.kind == "dir":
            if top == "files":
                path = self.ensure_dir(self.dest + item.parts[1:], source=name)
                if path:
                    self.report.add(name, "directory", ALREADY if path in self.reused else CONVERTED, path)
            else:
                self.report.add(name, "directory", SKIPPED, reason=f"layout directory of {top}/ (nothing to import)")
            return
        if top == "files":
            self.file(item, name)
        elif top == "contacts" and item.parts[-1].endswith(".vcf") and len(item.parts) == 2:
            self.contacts(item, name)
        elif item.path == "albums/albums.json":
            self.albums_file(item, name)
        elif item.path == "albums/references.json":
            for number, line in convert.ndjson(_chunks(item)):
                source = f"{name} line {number}"
                ref = line if isinstance(line, convert.BadLine) else convert.reference_from(line)
                if isinstance(ref, convert.Reference):
                    self.references.append((source, ref))
                else:
                    self.report.add(source, "reference", SKIPPED,
                                    reason=ref.reason if isinstance(ref, convert.BadLine) else ref)
        else:
            _drain(item)
            self.report.add(name, "member", SKIPPED, reason=f"not a file cozy-monitor writes in {top}/")

    # -- folders ----------------------------------------------------------------------------

    def ensure_dir(self, parts: tuple[str, ...], source: str = "") -> str | None:
        """The v3 id of the directory at ``parts`` (created or merged into, parents first); None if impossible."""
        path = "/" + "/".join(parts)
        if path in self.dirs:
            return path
        if path in self.inflight_paths:
            self.drain()  # a file of that name is being uploaded: it came first, it keeps the name
        parent = "/" + "/".join(parts[:-1])
        if parent not in self.dirs and self.ensure_dir(parts[:-1], source) is None:
            return None
        if self.dry:
            self.dirs[path] = "dry"
            return path
        key = "dir:" + path
        done = self.ledger.get(key)
        if done:
            self.dirs[path] = done["id"]
            self.reused.add(path)
            return path
        public = self.target.client()
        try:
            doc = public.mkdir(self.dirs[parent], parts[-1], **self.dir_options.get(path, {}))
        except StackError as error:
            if error.status != 409:
                self._fail(source or path, "directory", error)
                return None
            doc = self._existing(public, parent, parts[-1])
            if doc is None or not doc.is_dir:
                self.report.add(source or path, "directory", SKIPPED, path,
                                "a file of the instance has this name: the folder and what it holds are skipped")
                return None
        self.ledger.put(key, doc.id, path)
        self.dirs[path] = doc.id
        return path

    def _existing(self, public, parent: str, name: str):
        """The entry named exactly ``name`` (bytes compared) in directory ``parent``, if any."""
        path = posixpath.join(parent, name)
        try:
            doc = public.stat(path)
            if doc.name == name:
                return doc
        except StackError as error:
            if error.status != 404:
                raise
            return None  # nothing under any form of the name
        for child in public.children(self.dirs[parent]):  # path lookups fold NFC/NFD: compare bytes
            if child.name == name:
                return child
        return None

    # -- files ------------------------------------------------------------------------------

    def file(self, item: Member, name: str) -> None:
        parts = self.dest + item.parts[1:]
        self.occurrences[item.path] += 1
        occurrence = self.occurrences[item.path]
        key = convert.member_key(item.path, occurrence)
        archive = len(item.parts) == 4 and item.parts[1] == "Archive"
        kind = "photo" if item.parts[1] == "Photos" else ("archive" if archive else "file")
        done = None if self.dry else self.ledger.get(key)
        if done:
            if archive and item.parts[2] == "event" and item.size <= MAX_EVENT:
                self._event_seen(item, name, _read_all(item, limit=MAX_EVENT))  # its calendar is written again
            else:
                _drain(item)
            self.progress(item.size, 0)
            self.report.add(name, kind, ALREADY, done["path"])
            return
        parent = self.ensure_dir(parts[:-1], source=name)
        if parent is None:
            _drain(item)
            if not any(i.source == name for i in self.report.items[-1:]):
                self.report.add(name, kind, SKIPPED, reason="its folder could not be created")
            return
        md5 = self.checksums.get(key)
        if md5 and not self.dry and item.size > STREAM_ABOVE and not (archive and item.parts[2] == "event"):
            final = self._stream(item, key, parent, parts[-1], md5, name, kind)
            if final is not False:
                self._report_file(_InFlight(None, key, parent, parts[-1], None, name, kind,
                                            item.parts[2] if archive else ""), final)
                return
        spool = _Spool(item, self.scratch, lambda n: self.progress(n, 0))
        what = _InFlight(None, key, parent, parts[-1], spool, name, kind, item.parts[2] if archive else "")
        try:
            if archive and item.parts[2] == "event":
                spool.file.seek(0)
                self._event_seen(item, name, spool.file.read(MAX_EVENT + 1))
                spool.file.seek(0)
            if self._start(what):
                return  # in flight: reported and put in the ledger when the stack has answered
            final = self.upload(key, parent, parts[-1], spool, name, kind)
        finally:
            if what.future is None:
                spool.close()
        self._report_file(what, final)

    def _report_file(self, what: _InFlight, final: tuple[str, bool] | None) -> None:
        if final is None:
            return
        path, renamed = final
        name, kind = what.source, what.kind
        if what.archive:
            self.report.add(name, kind, KEPT, path, f"{what.archive} documents have no v3 app: kept as JSON")
        elif renamed:
            self.report.add(name, kind, RENAMED, path, "the name was taken (a repeated path or an existing file)")
        else:
            self.report.add(name, kind, CONVERTED, path)

    def _stream(self, item: Member, key: str, parent: str, name: str, md5: str, source: str, kind: str):
        """Upload a large member straight from the archive, its MD5 known from the inspection (the
        stack refuses it if the archive changed since: 412, reported). False when its name is taken:
        the spooled way then (checksum comparison, conflict names), the stream still unread."""
        path = posixpath.join(parent, name)
        if path in self.inflight_paths:
            self.drain()
        if self.ledger.owner(path) not in (None, key):
            return False
        public = self.target.client()
        try:
            public.stat(path)
            return False
        except StackError as error:
            if error.status != 404:
                raise
        assert item.stream is not None
        body = _Body(item.stream, item.size, lambda n: self.progress(n, 0))
        try:
            doc = public.upload_stream(self.dirs[parent], name, body, item.size, md5)
        except StackError as error:
            self._fail(source, kind, error)
            return None
        self.ledger.put(key, doc.id, path, md5, item.size)
        return path, False

    # -- uploads in flight ------------------------------------------------------------------

    def _start(self, what: _InFlight) -> bool:
        """Start the upload under its own name in the pool; False when it must go the slow way
        (a dry run, or the name belongs to another item of the ledger)."""
        if self.pool is None or what.spool is None or what.spool.size > CHECK_FIRST_ABOVE:
            return False
        path = posixpath.join(what.parent, what.name)
        if path in self.inflight_paths:
            self.drain()  # a repeated path: the first copy gets the name, whatever the timing
        if self.ledger.owner(path) not in (None, what.key):
            return False
        public = self.target.client()
        spool = what.spool
        spool.file.seek(0)
        what.future = self.pool.submit(public.upload_stream, self.dirs[what.parent], what.name, spool.file,
                                       spool.size, spool.md5)
        self.inflight.append(what)
        self.inflight_paths.add(path)
        while len(self.inflight) > UPLOADS_IN_FLIGHT:
            self._complete(self.inflight.popleft())
        return True

    def _complete(self, what: _InFlight) -> None:
        """The stack's answer to an upload in flight: into the ledger (only now) and the report."""
        path = posixpath.join(what.parent, what.name)
        try:
            assert what.future is not None
            try:
                doc = what.future.result()
            except StackError as error:
                if error.status != 409:
                    self._fail(what.source, what.kind, error)
                    return
                # Taken (a resumed import's own upload not yet in the ledger, or an existing file):
                # the one-at-a-time way, with its checksum comparison and conflict names.
                final = self.upload(what.key, what.parent, what.name, what.spool, what.source, what.kind)
            else:
                self.ledger.put(what.key, doc.id, path, what.spool.md5, what.spool.size)
                final = (path, False)
        finally:
            what.spool.close()
            self.inflight_paths.discard(path)
        self._report_file(what, final)

    def drain(self) -> None:
        """Wait for every upload in flight, oldest first."""
        while self.inflight:
            self._complete(self.inflight.popleft())

    def _abandon(self) -> None:
        """On the way out (done, or an error): what the stack confirmed still goes to the ledger."""
        while self.inflight:
            what = self.inflight.popleft()
            try:
                assert what.future is not None
                doc = what.future.result()
                self.ledger.put(what.key, doc.id, posixpath.join(what.parent, what.name), what.spool.md5,
                                what.spool.size)
            except Exception as error:  # noqa: BLE001 - the error that stopped the import is the one raised
                log.debug("upload of %s abandoned: %s", what.source, error)
            finally:
                what.spool.close()
        self.inflight_paths.clear()
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None

    def upload(self, key: str, parent: str, name: str, spool: _Spool, source: str, kind: str,
               options: dict | None = None):
        """Upload under ``name`` or the first free conflict name; (path, renamed) or None (reported).
        ``options``: created_at, updated_at, tags (a source that has them)."""
        for n in range(1, MAX_CONFLICTS + 1):
            candidate = convert.conflict_name(name, n)
            path = posixpath.join(parent, candidate)
            if self.dry:
                if path in self.claimed:
                    continue
                self.claimed.add(path)
                return path, n > 1
            if self.ledger.owner(path) not in (None, key):
                continue
            public = self.target.client()
            spool.file.seek(0)
            existing = self._existing(public, parent, candidate) if spool.size > CHECK_FIRST_ABOVE else None
            if existing is None:
                try:
                    doc = public.upload_stream(self.dirs[parent], candidate, spool.file, spool.size, spool.md5,
                                               **(options or {}))
                except StackError as error:
                    if error.status != 409:
                        self._fail(source, kind, error)
                        return None
                    existing = self._existing(public, parent, candidate)
                    if existing is None:
                        continue
            if existing is not None:
                if existing.is_dir or existing.md5sum != spool.md5:
                    continue
                doc = existing  # ours, written before a crash and not yet in the ledger (or identical)
            self.ledger.put(key, doc.id, path, spool.md5, spool.size)
            return path, n > 1
        self.report.add(source, kind, SKIPPED, reason=f"no free name after {MAX_CONFLICTS} conflict names")
        return None

    def _fail(self, source: str, kind: str, error: StackError) -> None:
        if error.status in (400, 401, 403):
            raise error  # the token or the permissions: nothing else would work either
        if error.status == 413:
            raise CozyopsError(f"instance {self.report.domain}", "disk quota exceeded during the import",
                               "raise the quota, then --resume") from None
        self.report.add(source, kind, SKIPPED, reason=f"cozy-stack refused it: {error.reason}")

    # -- calendar events --------------------------------------------------------------------

    def _event_seen(self, item: Member, name: str, data: bytes) -> None:
        """Keep an event for its calendar (spooled to the scratch space as JSON lines)."""
        if len(data) > MAX_EVENT:
            self.report.add(name, "event", SKIPPED, reason=f"larger than {MAX_EVENT} bytes: kept as a file only")
            return
        try:
            event = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            self.report.add(name, "event", SKIPPED, reason="not valid JSON: kept as a file only")
            return
        problem = convert.event_problem(event) if isinstance(event, dict) else "not a JSON object"
        if problem:
            self.report.add(name, "event", SKIPPED, reason=f"{problem}: kept as a file only")
            return
        calendar = convert.calendar_name(event)
        if calendar not in self.calendars:
            self.calendars[calendar] = open(self.scratch / f"calendar-{len(self.calendars)}.jsonl", "w+b")  # noqa: SIM115
        self.calendars[calendar].write(json.dumps(event).encode() + b"\n")
        self.report.add(name, "event", CONVERTED, f"calendar {calendar}")

    def write_calendars(self) -> None:
        if not self.calendars:
            return
        folder = self.dest + (convert.CALENDAR_DIR,)
        for calendar, handle in self.calendars.items():
            handle.seek(0)
            events = (json.loads(line) for line in handle)
            data = convert.calendar_ics(calendar, events)
            source = f"calendar {calendar}"
            key = "calendar:" + calendar
            if not self.dry and self.ledger.get(key):
                self.report.add(source, "calendar", ALREADY, self.ledger.get(key)["path"])
                continue
            parent = self.ensure_dir(folder, source)
            if parent is None:
                continue
            spool_file = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, dir=self.scratch)  # noqa: SIM115
            spool_file.write(data)
            spool = _Spool.__new__(_Spool)
            spool.file, spool.size = spool_file, len(data)
            spool.md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
            try:
                final = self.upload(key, parent, convert.calendar_file_name(calendar), spool, source, "calendar")
            finally:
                spool.close()
            if final:
                self.report.add(source, "calendar", RENAMED if final[1] else CONVERTED, final[0],
                                "iCalendar file of the v2 calendar's events")

    # -- albums -----------------------------------------------------------------------------

    def albums_file(self, item: Member, name: str) -> None:
        for number, line in convert.ndjson(_chunks(item)):
            source = f"{name} line {number}"
            album = line if isinstance(line, convert.BadLine) else convert.album_from(line)
            if not isinstance(album, convert.Album):
                self.report.add(source, "album", SKIPPED,
                                reason=album.reason if isinstance(album, convert.BadLine) else album)
                continue
            if album.v2_id in self.albums:
                self.report.add(source, "album", SKIPPED, reason=f"album {album.v2_id} listed twice")
                continue
            doc_id = self.fixed_id("album", album.v2_id)
            self.albums[album.v2_id] = doc_id
            outcome = self._create(convert.ALBUMS, doc_id, album.doc(), "album:" + album.v2_id, source)
            if outcome:
                self.report.add(source, "album", outcome, f"{convert.ALBUMS}/{doc_id}", album.name)

    def _create(self, doctype: str, doc_id: str, doc: dict, key: str, source: str) -> str | None:
        if self.dry:
            return CONVERTED
        if self.ledger.get(key):
            return ALREADY
        try:
            self.target.client().create_doc_with_id(doctype, doc_id, doc)
        except StackError as error:
            if error.status != 409:  # 409: created before a crash, not yet in the ledger
                self._fail(source, doctype, error)
                return None
        self.ledger.put(key, doc_id)
        return CONVERTED

    def apply_references(self) -> None:
        for source, ref in self.references:
            if ref.albumid is None:
                self.report.add(source, "reference", SKIPPED, reason="the photo is in no album")
                continue
            album = self.albums.get(ref.albumid)
            if album is None:
                self.report.add(source, "reference", SKIPPED, reason=f"album {ref.albumid} is not in albums.json")
                continue
            photo_key = convert.member_key("/".join(ref.parts), 1)  # a repeated path: the first copy, as v2's own
            photo = None if self.dry else self.ledger.get(photo_key)
            if self.dry:
                if self.occurrences["/".join(ref.parts)] == 0:
                    photo = None
                else:
                    photo = {"id": "dry", "path": "/" + "/".join(self.dest + ref.parts[1:])}
            if photo is None:
                self.report.add(source, "reference", SKIPPED, reason="the photo is not in the export (or was skipped)")
                continue
            key = f"ref:{ref.albumid}:{photo_key}"
            if not self.dry and self.ledger.get(key):
                self.report.add(source, "reference", ALREADY, photo["path"])
                continue
            if not self.dry:
                try:
                    self.target.client().add_referenced_by(photo["id"], [{"type": convert.ALBUMS, "id": album}])
                except StackError as error:
                    self._fail(source, "reference", error)
                    continue
                self.ledger.put(key, photo["id"])
            self.report.add(source, "reference", CONVERTED, photo["path"], f"in album {convert.ALBUMS}/{album}")

    # -- contacts ---------------------------------------------------------------------------

    def contacts(self, item: Member, name: str) -> None:
        self.occurrences[item.path] += 1
        key = convert.member_key(item.path, self.occurrences[item.path])
        if item.size > MAX_VCF:
            _drain(item)
            self.report.add(name, "contact", SKIPPED, reason=f"larger than {MAX_VCF} bytes")
            return
        found = convert.contacts_from_vcf(_read_all(item, limit=MAX_VCF))
        if isinstance(found, str):
            self.report.add(name, "contact", SKIPPED, reason=found)
            return
        for index, contact in enumerate(found):
            doc = self.with_groups(contact, name)
            card_key = f"contact:{key}:{index}"
            doc_id = self.fixed_id("contact", card_key)
            outcome = self._create(convert.CONTACTS, doc_id, doc, card_key, name)
            if outcome:
                reason = ("no v3 field for: " + "; ".join(contact.dropped)) if contact.dropped else ""
                self.report.add(name + (f" card {index + 1}" if len(found) > 1 else ""), "contact", outcome,
                                f"{convert.CONTACTS}/{doc_id}", reason)

    def with_groups(self, contact: convert.Contact, source: str) -> dict:
        """The contact's doc, its groups created (fixed ids) and linked in ``relationships.groups``."""
        doc = dict(contact.doc)
        groups = []
        for group in contact.groups:
            group_id = convert.group_id(group)
            if self._create(convert.GROUPS, group_id, {"name": group, "metadata": {"version": 1}},
                            "group:" + group, f"{source} group {group}"):
                groups.append({"_id": group_id, "_type": convert.GROUPS})
        if groups:
            doc["relationships"] = {"groups": {"data": groups}}
        return doc


def check_quota(usage: dict, needed: int, domain: str) -> None:
    """Refuse before writing when the export's files do not fit the instance's quota."""
    quota = int(usage.get("quota") or 0)
    used = int(usage.get("used") or 0)
    if quota and used + needed > quota:
        raise CozyopsError(f"instance {domain}", f"the export needs {needed} bytes, the instance has "
                           f"{max(quota - used, 0)} free of its {quota}-byte quota", "raise its quota first")


SCRATCH_PREFIX = "cozyops-v2-"
UNLOCKED_SCRATCH_AGE = 24 * 3600  # a scratch folder without a lock file (older importers) is removed past this


@contextlib.contextmanager
def own_scratch(base: Path) -> Iterator[Path]:
    """This importer's scratch folder under ``base`` (``cozyops-v2-<pid>-<random>``), removed at
    the end. Its lock file beside it (``<folder>.lock``) is locked (flock) before the folder is
    made and for as long as the import runs: the kernel lets go of the lock when the process dies
    however it dies, so a folder whose lock can be taken belongs to an importer that is gone.
    Those are removed first (``sweep_scratch``)."""
    base.mkdir(parents=True, exist_ok=True)
    sweep_scratch(base)
    name = f"{SCRATCH_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    lock_path = base / f"{name}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        folder = base / name
        folder.mkdir(mode=0o700)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        lock_path.unlink(missing_ok=True)
        os.close(fd)


def sweep_scratch(base: Path) -> list[Path]:
    """Remove the scratch that importers killed before their end left in ``base`` (their spooled
    members, calendars); a running importer's is left alone. Returns what was removed."""
    removed: list[Path] = []
    for entry in sorted(base.glob(SCRATCH_PREFIX + "*")):
        lock_path = entry.with_name(entry.name + ".lock")
        if entry.name.endswith(".lock") or entry.is_symlink() or not entry.is_dir():
            continue
        if not lock_path.exists():
            with contextlib.suppress(FileNotFoundError):
                if time.time() - entry.stat().st_mtime > UNLOCKED_SCRATCH_AGE:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry)
            continue
        if _take(lock_path, functools.partial(shutil.rmtree, entry, ignore_errors=True)):
            removed.append(entry)
    for lock_path in sorted(base.glob(SCRATCH_PREFIX + "*.lock")):  # killed between the lock and the folder
        if not lock_path.with_name(lock_path.name[: -len(".lock")]).exists():
            _take(lock_path, lambda: None)
    return removed


def _take(lock_path: Path, then: Callable[[], None]) -> bool:
    """If nobody holds ``lock_path``: ``then()``, remove the lock file, True."""
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return False  # gone meanwhile (its importer ended), or not ours to touch
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its importer is running
        then()
        lock_path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


def scratch_dir() -> Path:
    """The importer's own scratch space (spooled members, calendars), under the user's cache."""
    from cozyops import paths

    base = paths.cache_dir() / "v2"
    base.mkdir(parents=True, exist_ok=True)
    return base
