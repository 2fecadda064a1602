"""Moving an instance between two servers of a fleet, staged on cozy-stack's own export and import
(cozy-stack.md §7), every step journaled (``state.Steps("move", domain)``) so that a run killed at
any point continues with the same command. docs/moves.md tells the steps and what an interruption
leaves.

Steps, in order (``STEPS``):

1. ``checks``: the target is a server of the fleet, answers on its admin API (provisioned), has room
   (``cozy_capacity``; free disk against the instance's usage), runs a stack at least as new as the
   source's, does not have the instance already; the source has it. What was found is recorded.
2. ``create``: the instance on the target (``POST /instances``), with the source's locale and email.
3. ``block``: the source blocked, reason ``MOVING`` (cozy-stack's ``instance.BlockedMoving``): from
   now on nobody writes to it, so the export is the instance as it stays.
4. ``export``: ``cozy-stack instances export --domain D --path DIR`` on the source (the stack's own
   CLI: it waits for the export on the admin realtime socket and downloads the parts from the admin
   API). The parts' names, sizes and SHA-256 are recorded.
5. ``import``: cozyops carries the parts: a local HTTP server serves the manifest and the parts,
   streamed from the source over SFTP; a reverse SSH forward puts it on the target's loopback; the
   target's stack imports from ``http://127.0.0.1:PORT/move/exports/TOKEN`` (``POST
   /instances/D/import``). The import worker resets the target first, so a repeated import leaves
   no duplicate. Why this path rather than the target fetching ``https://D/move/exports/MAC`` from
   the source itself: the target need not reach the source (private networks, firewalls, a name
   that will soon point at the target), and a blocked source never serves its data publicly. What
   it needs: the target's ``safe_http.trusted_private_networks`` includes ``127.0.0.1/32``.
6. ``verify``: the parts (the source's stack's own serialisation of the blocked source) against the
   target through its public API: per doctype, every document id present and the count equal
   (doctypes the stack writes itself during an import: ids only); the file tree: every path, with
   its type, size and MD5.
7. ``switch``: ``instances.yml`` says the target (comments kept: ruamel.yaml), the target's site
   and certificate (the ``site`` hook: provisioning of the target), the instance's DNS records to
   the target, propagation checked on every authoritative server.
8. ``unblock``: the target answers (unblocked).
9. ``moved``: the source stays, blocked with reason ``MOVED``, until ``keep_until``; then
   ``remove_moved_sources`` (run by ``cozyops apply``) destroys it.

``abort`` (before ``switch``): the source unblocked, the target copy destroyed, the parts removed,
the journal forgotten.

Tests kill the run at a point with ``COZYOPS_MOVE_KILL_AT=<point>`` (``KILL_ENV``): ``<step>`` right
after the step is journaled, ``<step>:acted`` after the step's action and before its journal entry,
``import:middle`` halfway through sending a part to the target.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import http.server
import io
import json
import os
import posixpath
import secrets
import shlex
import signal
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from cozyops import state
from cozyops.errors import CozyopsError
from cozyops.model import Fleet, Instance, SubdomainMode
from cozyops.stack.admin import AdminClient
from cozyops.stack.connect import StackClients, admin_passphrase, connect
from cozyops.stack.public import ROOT_ID, TRASH_ID, PublicClient, md5_base64
from cozyops.transport.base import Transport

KIND = "move"
STEPS = ("checks", "create", "block", "export", "import", "verify", "switch", "unblock", "moved")
BEFORE_SWITCH = STEPS[:STEPS.index("switch")]
KILL_ENV = "COZYOPS_MOVE_KILL_AT"
MOVING = "MOVING"  # model/instance/tos.go BlockedMoving
MOVED = "MOVED"
IMPORTING = "IMPORTING"  # BlockedImporting: the import worker's own block
DEFAULT_KEEP_DAYS = 7
PARTS_DIR = "/var/lib/cozyops/moves"
TRUSTED_LOOPBACK = "127.0.0.1/32"
IMPORT_START_TIMEOUT = 180.0
IMPORT_TIMEOUT = 3600.0
# importer.importZip: doctypes never imported (no sharing move between two stacks), and the
# settings documents it leaves out.
SKIPPED = {"io.cozy.exports", "io.cozy.sessions", "com.bitwarden.ciphers", "com.bitwarden.folders",
           "com.bitwarden.profiles", "com.bitwarden.organizations", "com.bitwarden.contacts", "io.cozy.sharings",
           "io.cozy.shared", "io.cozy.permissions"}
SKIPPED_SETTINGS = {"io.cozy.settings.instance", "io.cozy.settings.bitwarden"}
# Written by the stack itself around an import (lifecycle.Reset, the import job, the apps it
# installs again): their ids are checked, not their counts.
STACK_WRITTEN = {"io.cozy.jobs", "io.cozy.triggers", "io.cozy.settings", "io.cozy.apps", "io.cozy.konnectors",
                 "io.cozy.notifications", "io.cozy.sessions.logins", "io.cozy.oauth.clients"}
NOT_VIA_DATA = {"io.cozy.files", "io.cozy.files.versions", "io.cozy.apps", "io.cozy.konnectors", "io.cozy.jobs",
                "io.cozy.triggers", "io.cozy.settings", "io.cozy.notifications", "io.cozy.sessions.logins",
                "io.cozy.oauth.clients"}


class MoveError(CozyopsError):
    """A move cannot start, go on, or be aborted; names the instance and the step."""


def kill_point(point: str) -> None:
    """The test hook: SIGKILL this very process at ``point`` when ``COZYOPS_MOVE_KILL_AT`` names it."""
    if os.environ.get(KILL_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# --- pure parts (tables in tests/unit/test_move.py) -------------------------------------------------

def plan_steps(done: list[str]) -> list[tuple[str, str]]:
    """Every step with its status: ``done`` or ``todo`` (what ``move`` shows before it starts)."""
    return [(step, "done" if step in done else "todo") for step in STEPS]


def parts_dir(domain: str) -> str:
    return posixpath.join(PARTS_DIR, domain)


def part_names(domain: str, count: int) -> list[str]:
    """The files ``instances export --path`` writes (cmd/instances.go exportCmd)."""
    return [f"{domain} - part{number:03d}.zip" for number in range(count)]


def cursors(count: int) -> list[str]:
    """The manifest's ``parts_cursors`` of ``count`` parts (part 0 has none): cozyops' own names."""
    return [f"part{number:03d}" for number in range(1, count)]


def manifest(domain: str, token: str, parts: list[dict]) -> dict:
    """The export document as ``web/move exportHandler`` gives it (JSON:API), for the parts carried."""
    attributes = {"domain": domain, "state": "done", "parts_cursors": cursors(len(parts)),
                  "total_size": sum(part["size"] for part in parts), "parts_size": max(
                      [part["size"] for part in parts] or [0])}
    return {"data": {"type": "io.cozy.exports", "id": token, "attributes": attributes,
                     "links": {"self": f"/io.cozy.exports/{token}"}}}


def part_for_cursor(parts: list[dict], cursor: str) -> dict | None:
    if not cursor:
        return parts[0] if parts else None
    names = cursors(len(parts))
    return parts[names.index(cursor) + 1] if cursor in names else None


@dataclasses.dataclass
class Content:
    """An instance's content: per doctype its document ids; the file tree, path -> (type, size, md5)."""

    docs: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    tree: dict[str, tuple[str, int, str]] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)


def read_part(archive: zipfile.ZipFile, content: Content) -> None:
    """What one export part holds (``ExportCopyData``): documents under ``My Cozy/Data/<doctype>/``,
    file contents under ``My Cozy/Files/<path>``, each file's document just before its content."""
    entries = archive.infolist()
    for index, entry in enumerate(entries):
        name = entry.filename
        if not name.startswith("My Cozy/Data/"):
            continue
        doctype, sep, rest = name[len("My Cozy/Data/"):].partition("/")
        if not sep:
            continue  # instance.json
        doctype = unquote(doctype)
        doc_id = rest.removesuffix(".json")
        if doctype == "io.cozy.files":
            doc = json.loads(archive.read(entry))
            if doc.get("type") == "directory":
                if doc_id not in (ROOT_ID, TRASH_ID) and doc.get("path"):
                    content.tree[doc["path"]] = ("directory", 0, "")
                continue
            following = entries[index + 1] if index + 1 < len(entries) else None
            if following is None or not following.filename.startswith("My Cozy/Files/"):
                content.problems.append(f"file {doc_id} ({doc.get('name')}) has no content in the export")
                continue
            data = archive.read(following)
            path = following.filename[len("My Cozy/Files"):]
            md5 = md5_base64(data)
            if doc.get("md5sum") and doc["md5sum"] != md5:
                content.problems.append(f"{path}: its content's MD5 is not its document's in the export")
            content.tree[path] = ("file", len(data), md5)
            continue
        content.docs.setdefault(doctype, set()).add(doc_id)


def expected_docs(source: dict[str, set[str]]) -> dict[str, set[str]]:
    """The documents the importer writes of those exported (importer.importZip's skips)."""
    expected = {}
    for doctype, ids in source.items():
        if doctype in SKIPPED or doctype in ("io.cozy.files", "io.cozy.files.versions"):
            continue
        if doctype == "io.cozy.settings":
            ids = ids - SKIPPED_SETTINGS
        if doctype in ("io.cozy.apps", "io.cozy.konnectors"):
            continue  # installed again from the registries, not copied
        expected[doctype] = set(ids)
    return expected


def compare(source: Content, target: Content) -> list[str]:
    """The differences a user could see, one line each (empty: the same content)."""
    problems = list(source.problems)
    for doctype, ids in sorted(expected_docs(source.docs).items()):
        if doctype not in target.docs:
            continue  # not readable on the target's side (reported by the caller)
        there = target.docs[doctype]
        missing = ids - there
        if missing:
            problems.append(f"{doctype}: {len(missing)} of {len(ids)} documents missing on the target "
                            f"(e.g. {sorted(missing)[0]})")
        elif doctype not in STACK_WRITTEN and len(there) != len(ids):
            problems.append(f"{doctype}: {len(there)} documents on the target, {len(ids)} on the source")
    for path in sorted(set(source.tree) | set(target.tree)):
        mine, theirs = source.tree.get(path), target.tree.get(path)
        if mine == theirs:
            continue
        if theirs is None:
            problems.append(f"{path}: missing on the target")
        elif mine is None:
            problems.append(f"{path}: on the target only")
        else:
            problems.append(f"{path}: {mine[0]} of {mine[1]} bytes (MD5 {mine[2]}) on the source, "
                            f"{theirs[0]} of {theirs[1]} bytes (MD5 {theirs[2]}) on the target")
    return problems


def moved_fleet(fleet: Fleet, domain: str, target: str) -> Fleet:
    """The fleet with the instance on ``target`` (what instances.yml says after the switch)."""
    instances = tuple(dataclasses.replace(i, server=target) if i.domain == domain else i for i in fleet.instances)
    return dataclasses.replace(fleet, instances=instances)


def instance_names(domain: str, zone: str) -> set[str]:
    """The names of the instance's DNS records relative to the zone (nested mode): itself and its wildcard."""
    relative = domain[: -len(zone) - 1] if domain.endswith("." + zone) else ("@" if domain == zone else domain)
    return {relative, f"*.{relative}" if relative != "@" else "*"}


# --- instances.yml (round trip, comments kept) ----------------------------------------------------

def set_server_in_file(root: Path, domain: str, server: str) -> bool:
    """Write ``server`` as the instance's server in the fleet's ``instances.yml`` (h17's
    ``fleetfile.update``: comments and order kept). False when it already said so."""
    from ruamel.yaml import YAML

    from cozyops.instances import fleetfile

    data = YAML(typ="safe").load((root / "instances.yml").read_text()) or {}
    for entry in data.get("instances") or []:
        if str(entry.get("domain", "")).lower() == domain and entry.get("server") == server:
            return False
    fleetfile.update(root, domain, {"server": server})
    return True


# --- the carrier: manifest and parts to the target ---------------------------------------------------

class Carrier:
    """A local HTTP server giving the target's import worker the manifest and the parts, each part
    streamed from the source over SFTP as it is asked for. Knows what was served."""

    def __init__(self, source: Transport, domain: str, directory: str, parts: list[dict]) -> None:
        self.source, self.domain, self.directory, self.parts = source, domain, directory, parts
        self.token = secrets.token_urlsafe(24)
        self.manifest_served = threading.Event()
        self.served: set[str] = set()
        self.failures: list[str] = []
        carrier = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # never print; the token is in the path
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                carrier.handle(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]

    def handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        url = urlsplit(request.path)
        if url.path == f"/move/exports/{self.token}":
            body = json.dumps(manifest(self.domain, self.token, self.parts)).encode()
            request.send_response(200)
            request.send_header("Content-Type", "application/vnd.api+json")
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            request.wfile.write(body)
            self.manifest_served.set()
            return
        if url.path != f"/move/exports/data/{self.token}":
            request.send_error(404)
            return
        cursor = (parse_qs(url.query).get("cursor") or [""])[0]
        part = part_for_cursor(self.parts, cursor)
        if part is None:
            request.send_error(400, "export: cursor is invalid")
            return
        digest = hashlib.sha256()
        sent = 0
        try:
            with self.source.open_read(posixpath.join(self.directory, part["name"])) as handle:
                request.send_response(200)
                request.send_header("Content-Type", "application/zip")
                request.send_header("Content-Length", str(part["size"]))
                request.end_headers()
                while chunk := handle.read(256 * 1024):
                    digest.update(chunk)
                    request.wfile.write(chunk)
                    sent += len(chunk)
                    if sent * 2 >= part["size"]:
                        request.wfile.flush()
                        kill_point("import:middle")
        except (OSError, CozyopsError) as error:
            self.failures.append(f"{part['name']}: {error}")
            return
        if sent != part["size"] or digest.hexdigest() != part["sha256"]:
            self.failures.append(f"{part['name']}: the source's file changed since the export")
            return
        self.served.add(part["name"])

    @contextlib.contextmanager
    def running(self) -> Iterator[Carrier]:
        thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.httpd.shutdown()
            self.httpd.server_close()
            thread.join(timeout=5)


# --- the move --------------------------------------------------------------------------------------

Report = Callable[[str, str], None]  # (step, what happened)


def _quiet(step: str, message: str) -> None:
    pass


@dataclasses.dataclass
class MoveParams:
    domain: str
    source: str
    target: str
    keep_days: int = DEFAULT_KEEP_DAYS


class Move:
    """One instance's move, continued from its journal. ``site(fleet, server)`` puts the instance's
    nginx site and certificate on ``server`` (the CLI passes provisioning: instances/ does not call
    servers/, a sibling layer)."""

    def __init__(self, fleet: Fleet, domain: str, target: str | None = None, keep_days: int = DEFAULT_KEEP_DAYS,
                 site: Callable[[Fleet, str], None] | None = None, report: Report = _quiet) -> None:
        self.fleet = fleet
        self.domain = domain.rstrip(".").lower()
        self.site = site
        self.report = report
        self.steps = state.Steps(fleet.state_dir, KIND, self.domain)
        self._stack = contextlib.ExitStack()
        self._clients: dict[str, StackClients] = {}
        existing = self.steps.params() if self.steps.status() == "started" else None
        if existing is not None:
            self.params = MoveParams(**existing)
            if target is not None and target != self.params.target:
                raise MoveError(f"instance {self.domain}",
                                f"a move to {self.params.target} is under way (not to {target})",
                                "run it again with --to " + self.params.target + ", or --abort it")
        else:
            instance = self.instance()
            if target is None:
                raise MoveError(f"instance {self.domain}", "no move under way", "say where with --to SERVER")
            if target not in fleet.servers:
                raise MoveError(f"server {target}", f"is not a server of fleet {fleet.name}")
            if target == instance.server:
                raise MoveError(f"instance {self.domain}", f"is on {target} already")
            if keep_days < 0:
                raise MoveError(f"--keep-days {keep_days}", "cannot be negative")
            self.params = MoveParams(self.domain, instance.server, target, keep_days)

    # -- plumbing
    def close(self) -> None:
        self._stack.close()
        self.steps.close()

    def __enter__(self) -> Move:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def instance(self) -> Instance:
        for instance in self.fleet.instances:
            if instance.domain == self.domain:
                return instance
        raise MoveError(f"instance {self.domain}", f"is not in fleet {self.fleet.name}'s instances.yml")

    def clients(self, server: str) -> StackClients:
        if server not in self._clients:
            self._clients[server] = self._stack.enter_context(connect(self.fleet, self.fleet.servers[server]))
        return self._clients[server]

    def admin(self, server: str) -> AdminClient:
        return self.clients(server).admin

    def transport(self, server: str) -> Transport:
        return self.clients(server).transport

    def status(self) -> str:
        return self.steps.status()

    def plan(self) -> list[tuple[str, str]]:
        return plan_steps([step for step, _ in self.steps.steps()] if self.steps.status() == "started" else [])

    def _instance_on(self, server: str):
        from cozyops.stack.http import StackError

        try:
            return self.admin(server).instance(self.domain)
        except StackError as error:
            if error.status == 404:
                return None
            raise

    def _shell(self, server: str, command: str) -> str:
        if self.fleet.servers[server].become:
            return "sudo -n sh -c " + shlex.quote(command)
        return command

    # -- running
    def run(self) -> dict:
        """Every step not done yet, in order; the outcome (what the last steps recorded)."""
        p = self.params
        self.steps.start(dataclasses.asdict(p))
        for step in STEPS:
            if self.steps.done(step):
                continue
            self.report(step, "starting")
            result = getattr(self, "step_" + step.replace("-", "_"))()
            kill_point(f"{step}:acted")
            self.steps.record(step, result)
            self.report(step, "done")
            kill_point(step)
        self.steps.finish("moved")
        return {"domain": self.domain, "from": p.source, "to": p.target, **(self.steps.result("moved") or {})}

    def step_checks(self) -> dict:
        p = self.params
        source = self._instance_on(p.source)
        if source is None:
            raise MoveError(f"instance {self.domain}", f"not found on its server {p.source}")
        found_on_target = self._instance_on(p.target)
        if found_on_target is not None:
            raise MoveError(f"instance {self.domain}", f"already exists on {p.target}",
                            "remove it there first (or this is not a move)")
        versions = {name: self.admin(name).version().get("version", "") for name in (p.source, p.target)}
        if _version_key(versions[p.target]) < _version_key(versions[p.source]):
            raise MoveError(f"server {p.target}", f"runs cozy-stack {versions[p.target]}, older than the source's "
                            f"{versions[p.source]}", "upgrade it first (`cozyops server upgrade`)")
        target_server = self.fleet.servers[p.target]
        on_target = [i for i in self.fleet.instances if i.server == p.target]
        capacity = target_server.capacity
        if capacity is not None and len(on_target) + 1 > capacity:
            raise MoveError(f"server {p.target}", f"has {len(on_target)} instances, cozy_capacity {capacity}")
        used = int(self.admin(p.source).disk_usage(self.domain).get("used") or 0)
        free = self._free_bytes(p.target, "/var/lib/cozy")
        if free < 2 * used:  # the import's data, and room to breathe
            raise MoveError(f"server {p.target}", f"has {free} bytes free in /var/lib/cozy, the instance uses {used}")
        if self.fleet.subdomains is SubdomainMode.FLAT:
            ips = {(self.fleet.servers[n].ipv4, self.fleet.servers[n].ipv6) for n in (p.source, p.target)}
            if len(ips) > 1:
                raise MoveError(f"instance {self.domain}", "flat subdomains: the zone's wildcard serves every "
                                "instance from one address; a move between servers of different addresses "
                                "cannot switch one instance")
        target_config = self._stack_config(p.target)  # read once, for both checks
        self._check_trust(p.target, target_config)
        self._check_registries(target_config, source.attributes.get("context") or None)
        return {"versions": versions, "used": used, "free": free, "locale": source.locale,
                "email": source.attributes.get("email") or "", "apps": list(self.instance().apps)}

    def _free_bytes(self, server: str, path: str) -> int:
        result = self.transport(server).run(["df", "-B1", "--output=avail", path]).check(server)
        return int(result.text.split()[-1])

    def _stack_config(self, server: str) -> list[dict]:
        """The YAML documents of the server's cozy.yml and cozy.yml.local (what it can parse)."""
        command = self._shell(server, "cat /etc/cozy/cozy.yml /etc/cozy/cozy.yml.local 2>/dev/null")
        return config_documents(self.transport(server).run(command).text)

    def _check_trust(self, server: str, config: list[dict]) -> None:
        """The target's stack must trust its loopback for the import (safe_http, §7 step 4)."""
        trusted = [str(n) for data in config
                   for n in ((data.get("safe_http") or {}).get("trusted_private_networks") or [])]
        import ipaddress

        loopback = ipaddress.ip_address("127.0.0.1")
        if not any(loopback in ipaddress.ip_network(n, strict=False) for n in trusted if _is_network(n)):
            raise MoveError(f"server {server}", "its cozy-stack does not trust 127.0.0.1 "
                            "(safe_http.trusted_private_networks), where cozyops hands it the export",
                            f"add {TRUSTED_LOOPBACK} there (cozy_stack_trusted_networks, docs/moves.md)")

    def _check_registries(self, target_config: list[dict], context: str | None) -> None:
        """The import installs the instance's apps again from the target's registries
        (importer.installApp: ``registry://<slug>/stable``): the target must know every registry
        the source installs them from, for the instance's context."""
        p = self.params
        missing = missing_registries(self._stack_config(p.source), target_config, context)
        if missing:
            raise MoveError(f"server {p.target}", "its cozy-stack lacks registries the source's has for context "
                            f"{context or 'default'}: {', '.join(missing)} (the import installs the apps from them)",
                            "give both the same cozy_stack_registries and provision")

    def step_create(self) -> dict:
        p = self.params
        checks = self.steps.result("checks") or {}
        existing = self._instance_on(p.target)
        if existing is None:  # else: ours, created by the interrupted run (checks saw none there)
            self.admin(p.target).create_instance(self.domain, locale=checks.get("locale") or "en",
                                                 email=checks.get("email") or "")
        return {"server": p.target}

    def step_block(self) -> dict:
        self.admin(self.params.source).block(self.domain, MOVING)
        return {"reason": MOVING}

    def step_export(self) -> dict:
        p = self.params
        folder = parts_dir(self.domain)
        transport = self.transport(p.source)
        passphrase = admin_passphrase(self.fleet.servers[p.source], transport)
        export = (f"rm -rf {shlex.quote(folder)} && mkdir -p -m 0700 {shlex.quote(folder)} && "
                  "IFS= read -r COZY_ADMIN_PASSPHRASE && export COZY_ADMIN_PASSPHRASE && "
                  f"cozy-stack instances export --domain {shlex.quote(self.domain)} --path {shlex.quote(folder)}")
        transport.run(self._shell(p.source, export), stdin=(passphrase + "\n").encode(),
                      timeout=IMPORT_TIMEOUT).check(p.source)
        listing = transport.run(self._shell(p.source, f"cd {shlex.quote(folder)} && for f in *.zip; do "
                                            "printf '%s\\t%s\\t%s\\n' \"$(stat -c %s \"$f\")\" "
                                            "\"$(sha256sum < \"$f\" | cut -d' ' -f1)\" \"$f\"; done")).check(p.source)
        parts = []
        for line in listing.text.splitlines():
            size, sha, name = line.split("\t", 2)
            parts.append({"name": name, "size": int(size), "sha256": sha})
        parts.sort(key=lambda part: part["name"])
        if [part["name"] for part in parts] != part_names(self.domain, len(parts)) or not parts:
            raise MoveError(f"server {p.source}: {folder}", f"unexpected export parts: {[x['name'] for x in parts]}")
        return {"dir": folder, "parts": parts}

    def _wait_unblocked(self, server: str, reason: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            inst = self.admin(server).instance(self.domain)
            if inst.attributes.get("blocking_reason") != reason or not inst.blocked:
                return
            if time.monotonic() > deadline:
                raise MoveError(f"instance {self.domain} on {server}",
                                f"still blocked ({reason}) after {timeout:.0f} s")
            time.sleep(0.5)

    def step_import(self) -> dict:
        p = self.params
        export = self.steps.result("export") or {}
        # An import an interrupted run started may still be running there: let it end first.
        self._wait_unblocked(p.target, IMPORTING, IMPORT_TIMEOUT)
        carrier = Carrier(self.transport(p.source), self.domain, export["dir"], export["parts"])
        target = self.transport(p.target)
        with carrier.running(), target.reverse_forward(carrier.port) as tunnel:
            url = f"http://127.0.0.1:{tunnel.local_port}/move/exports/{carrier.token}"
            self.admin(p.target).http.request("POST", f"/instances/{self.domain}/import",
                                              f"import into {self.domain}", (204,), params={"manifest_url": url})
            if not carrier.manifest_served.wait(IMPORT_START_TIMEOUT):
                raise MoveError(f"server {p.target}", "its cozy-stack did not fetch the export's manifest",
                                f"is {TRUSTED_LOOPBACK} in its safe_http.trusted_private_networks?")
            deadline = time.monotonic() + IMPORT_TIMEOUT
            while True:
                inst = self.admin(p.target).instance(self.domain)
                importing = inst.blocked and inst.attributes.get("blocking_reason") == IMPORTING
                if not importing and len(carrier.served) == len(export["parts"]):
                    break
                if not importing and time.monotonic() > deadline - IMPORT_TIMEOUT + 5 and not carrier.served:
                    # the worker ended (unblocked) without taking every part
                    problems = "; ".join(carrier.failures) or "it took the manifest, not the parts"
                    raise MoveError(f"import into {self.domain} on {p.target}", f"failed: {problems}")
                if time.monotonic() > deadline:
                    raise MoveError(f"import into {self.domain} on {p.target}", "no end after an hour")
                time.sleep(0.5)
            if carrier.failures:
                raise MoveError(f"import into {self.domain} on {p.target}", "; ".join(carrier.failures))
        return {"parts": len(export["parts"]), "bytes": sum(part["size"] for part in export["parts"])}

    def source_content(self) -> Content:
        export = self.steps.result("export") or {}
        content = Content()
        transport = self.transport(self.params.source)
        for part in export["parts"]:
            with transport.open_read(posixpath.join(export["dir"], part["name"])) as handle:
                data = handle.read()
            if hashlib.sha256(data).hexdigest() != part["sha256"]:
                content.problems.append(f"{part['name']}: changed since the export")
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                read_part(archive, content)
        return content

    def target_content(self, doctypes: set[str]) -> tuple[Content, list[str]]:
        p = self.params
        readable = sorted(d for d in doctypes if d not in NOT_VIA_DATA)
        admin = self.admin(p.target)
        token = admin.token(self.domain, scope=" ".join(["io.cozy.files", *readable]))
        public: PublicClient = self.clients(p.target).public(self.domain, token)
        content = Content()
        unread = []
        for doctype in readable:
            try:
                content.docs[doctype] = {row["id"] for row in public.all_docs(doctype, include_docs=False)
                                         if not row["id"].startswith("_design/")}
            except CozyopsError as error:
                unread.append(f"{doctype}: {error}")
        stack = [(ROOT_ID, "")]
        while stack:
            dir_id, path = stack.pop()
            for child in public.children(dir_id):
                child_path = f"{path}/{child.name}"
                if child.id == TRASH_ID:
                    child_path = "/.cozy_trash"
                if child.is_dir:
                    content.tree[child_path] = ("directory", 0, "")
                    stack.append((child.id, child_path))
                else:
                    content.tree[child_path] = ("file", child.size, child.md5sum)
        return content, unread

    def step_verify(self) -> dict:
        source = self.source_content()
        target, unread = self.target_content(set(source.docs))
        problems = compare(source, target)
        if unread:
            problems += [f"not readable on the target: {line}" for line in unread]
        if problems:
            shown = "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
            raise MoveError(f"instance {self.domain}", f"the target's content is not the source's: {shown}",
                            "the source is kept, blocked: `cozyops instance move --abort` to give it back, "
                            "or run the move again to import once more")
        counts = {doctype: len(ids) for doctype, ids in sorted(expected_docs(source.docs).items())}
        files = [v for v in source.tree.values() if v[0] == "file"]
        return {"documents": counts, "files": len(files), "bytes": sum(v[1] for v in files),
                "directories": len(source.tree) - len(files)}

    def step_switch(self) -> dict:
        p = self.params
        changed = set_server_in_file(self.fleet.root, self.domain, p.target)
        with state.Owned(self.fleet.state_dir) as owned:  # the fleet's instance is now the target's
            record = owned.get("instance", self.domain)
            if record is not None and record["server"] != p.target:
                owned.put("instance", self.domain, p.target, record["origin"], record["settings"])
        fleet = moved_fleet(self.fleet, self.domain, p.target)
        if self.site is not None:
            self.site(fleet, p.target)
        dns = self._switch_dns(fleet)
        return {"instances_yml": changed, **dns}

    def _switch_dns(self, fleet: Fleet) -> dict:
        from cozyops.dns.manager import DnsManager

        manager = DnsManager(fleet)
        plan = manager.plan()
        names = instance_names(self.domain, fleet.zone)
        mine = [c for c in plan.changes if c.name in names or (c.mark and c.group in names)]
        plan = dataclasses.replace(plan, changes=mine, _checksum=None)
        if manager.manual:
            reports = manager.check()
        else:
            with manager.locked("instance move"):
                reports = manager.apply_and_wait(plan).propagation if mine else manager.check()
        bad = [r.summary() for r in reports if not r.ok]
        if bad:
            raise MoveError(f"instance {self.domain}: DNS", "not served everywhere yet: " + "; ".join(bad[:3]),
                            "run the move again to check once more")
        return {"dns_changes": len(mine), "dns_servers": len(reports)}

    def step_unblock(self) -> dict:
        target = self.admin(self.params.target).instance(self.domain)
        if target.blocked:
            self.admin(self.params.target).unblock(self.domain)
        return {}

    def step_moved(self) -> dict:
        self.admin(self.params.source).block(self.domain, MOVED)
        until = now() + datetime.timedelta(days=self.params.keep_days)
        self.transport(self.params.source).run(self._shell(
            self.params.source, f"rm -rf {shlex.quote(parts_dir(self.domain))}"))
        return {"source": self.params.source, "keep_until": until.isoformat(timespec="seconds")}

    # -- abort
    def abort(self) -> dict:
        p = self.params
        if self.steps.status() != "started":
            raise MoveError(f"instance {self.domain}", "no move under way to abort")
        if self.steps.done("switch"):
            raise MoveError(f"instance {self.domain}", "its move switched to the target already: too late to abort",
                            "run the move again to finish it")
        done = [step for step, _ in self.steps.steps()]
        removed = False
        if "create" in done or self._created_by_us():
            self._wait_unblocked(p.target, IMPORTING, IMPORT_TIMEOUT)
            if self._instance_on(p.target) is not None:
                self.admin(p.target).destroy(self.domain)
                removed = True
        kill_point("abort:target-removed")
        source = self._instance_on(p.source)
        if source is not None and source.blocked and source.attributes.get("blocking_reason") in (MOVING, MOVED):
            self.admin(p.source).unblock(self.domain)
        self.transport(p.source).run(self._shell(p.source, f"rm -rf {shlex.quote(parts_dir(self.domain))}"))
        self.steps.forget()
        return {"domain": self.domain, "source": p.source, "target": p.target, "target_removed": removed}

    def _created_by_us(self) -> bool:
        """``checks`` saw no instance on the target: one there now is the interrupted create's."""
        return self.steps.done("checks") and self._instance_on(self.params.target) is not None


def config_documents(text: str) -> list[dict]:
    """The YAML mappings in cozy.yml files' text (several files, or ``---`` documents, joined)."""
    import yaml

    found = []
    for document in text.split("\n---"):
        with contextlib.suppress(yaml.YAMLError):
            data = yaml.safe_load(document)
            if isinstance(data, dict):
                found.append(data)
    return found


def registries_for(documents: list[dict], context: str | None) -> list[str]:
    """The registries cozy-stack uses for an instance of ``context``: that context's list, else
    ``default`` (config: ``registries: {default: [...], <context>: [...]}``); the last file wins."""
    chosen: list[str] = []
    for data in documents:
        table = data.get("registries")
        if isinstance(table, dict):
            entry = table.get(context) if context and context in table else table.get("default")
            if entry is not None:
                chosen = [str(url).rstrip("/") for url in entry]
    return chosen


def missing_registries(source: list[dict], target: list[dict], context: str | None) -> list[str]:
    have = set(registries_for(target, context))
    return [url for url in registries_for(source, context) if url not in have]


def _is_network(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _version_key(version: str) -> tuple:
    parts = []
    for piece in version.lstrip("v").split("-")[0].split("."):
        parts.append(int(piece) if piece.isdigit() else 0)
    return tuple(parts)


# --- after the keep days ---------------------------------------------------------------------------

def moves(fleet: Fleet) -> list[dict]:
    """Every move journaled in the fleet's state: domain, params, status, steps done, keep_until."""
    db = state.connect(fleet.state_dir)
    try:
        rows = db.execute("SELECT subject, params, finished, outcome FROM operations WHERE kind = ?",
                          (KIND,)).fetchall()
        found = []
        for subject, params, finished, outcome in rows:
            steps = [row[0] for row in db.execute(
                "SELECT step FROM operation_steps WHERE kind = ? AND subject = ? ORDER BY at, rowid", (KIND, subject))]
            moved = db.execute("SELECT result FROM operation_steps WHERE kind = ? AND subject = ? AND step = 'moved'",
                               (KIND, subject)).fetchone()
            keep_until = json.loads(moved[0]).get("keep_until") if moved and moved[0] else None
            found.append({"domain": subject, **json.loads(params), "status": "finished" if finished else "started",
                          "outcome": outcome, "steps": steps, "keep_until": keep_until})
        return found
    finally:
        db.close()


def due_removals(fleet: Fleet, at: datetime.datetime | None = None) -> list[dict]:
    """Moved sources whose keep days are over: what ``cozyops apply`` removes."""
    at = at or now()
    return [m for m in moves(fleet) if m["outcome"] == "moved" and m["keep_until"]
            and datetime.datetime.fromisoformat(m["keep_until"]) <= at]


def remove_moved_source(fleet: Fleet, move: dict) -> None:
    """Destroy a moved source (still blocked ``MOVED``, on the server the move left) and close the journal."""
    server = fleet.servers.get(move["source"])
    if server is None:
        raise MoveError(f"server {move['source']}", f"is not a server of fleet {fleet.name} any more")
    with connect(fleet, server) as clients:
        from cozyops.stack.http import StackError

        try:
            inst = clients.admin.instance(move["domain"])
        except StackError as error:
            if error.status != 404:
                raise
            inst = None
        if inst is not None:
            if inst.attributes.get("blocking_reason") != MOVED:
                raise MoveError(f"instance {move['domain']} on {move['source']}",
                                "is not blocked as MOVED: left as it is")
            clients.admin.destroy(move["domain"])
    with state.Steps(fleet.state_dir, KIND, move["domain"]) as steps:
        steps.forget()
