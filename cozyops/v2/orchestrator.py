"""The v2 import's orchestration: the source read and checked, the server chosen, the instance and
its quota checked, the import run under the fleet's lock with its ledger.

The command line loads the fleet once and calls these with the model and a progress callback;
nothing here prints or exits. Every failure is a CozyopsError naming what failed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from cozyops import paths
from cozyops.errors import ConfigError, CozyopsError
from cozyops.model import Fleet
from cozyops.stack import StackError
from cozyops.stack.connect import connect, stack_problem
from cozyops.state import Ledger, fleet_lock
from cozyops.v2 import importer
from cozyops.v2.tarball import Limits

Step = Callable[[int, int], None]
"""``step(nbytes, items)``: that many more bytes and items done."""
Progress = Callable[[str, "int | None"], AbstractContextManager[Step]]
"""``progress(what, total_bytes)`` shows long work (``total_bytes`` None: not known ahead) for as
long as its context lasts, and gives the step to call as the work goes."""


@contextlib.contextmanager
def no_progress(what: str, total: int | None) -> Iterator[Step]:
    yield lambda nbytes, items: None


@dataclass(frozen=True)
class Destination:
    """Where an import goes and how: the instance's domain, the Drive directory, the server (None:
    the instance's in the fleet, else the one whose cozy-stack knows the domain)."""

    domain: str
    directory: str = "/"
    server: str | None = None
    resume: bool = False
    dry_run: bool = False


def inspect_export(export: Path, limits: Limits, progress: Progress = no_progress) -> importer.Inspection:
    """Read the export and say what it holds (refuses a truncated archive or a decompression bomb)."""
    with progress(f"reading {export.name}", None) as step:
        return importer.inspect(export, limits, lambda nbytes: step(nbytes, 1))


def _inspect_couch(source, progress: Progress):
    from cozyops.v2 import couchimport

    with progress(f"reading {source.display}", None) as step:
        return couchimport.inspect_couch(source, lambda nbytes: step(nbytes, 1))


def inspect_couch(url: str, progress: Progress = no_progress) -> tuple[str, importer.Inspection]:
    """Read the live v2 CouchDB at ``url``: its display name (no password) and what it holds."""
    from cozyops.v2.couchdb import CouchSource

    with CouchSource(url) as source:
        return source.display, _inspect_couch(source, progress).inspection


def import_export(fleet: Fleet | None, export: Path, destination: Destination, limits: Limits,
                  progress: Progress = no_progress) -> importer.Report:
    """Import the export into the destination (``fleet`` may be None for a dry run)."""
    found = inspect_export(export, limits, progress)  # refuses a bad archive before anything is written
    report = importer.Report(str(export), destination.domain, destination.directory, dry_run=destination.dry_run)
    if destination.dry_run:
        importer.Importer(export, None, None, report, directory=destination.directory, limits=limits,
                          scratch=importer.scratch_dir()).run()
        return report
    export_id = importer.fingerprint(export)

    def run(target: importer.Target, ledger: Ledger, step: Step) -> None:
        importer.Importer(export, target, ledger, report, directory=destination.directory, limits=limits,
                          scratch=importer.scratch_dir(), progress=step, export_id=export_id,
                          checksums=found.checksums).run()

    _locked_import(_needed(fleet), destination, export_id, export.name, str(export), found.file_bytes, report, run,
                   progress)
    return report


def import_couch(fleet: Fleet | None, url: str, destination: Destination,
                 progress: Progress = no_progress) -> importer.Report:
    """Import the live v2 CouchDB at ``url`` into the destination (``fleet`` may be None for a dry run)."""
    from cozyops.v2 import couchimport
    from cozyops.v2.couchdb import CouchSource

    with CouchSource(url) as source:
        plan = _inspect_couch(source, progress)  # refuses a database that cannot be read as v2 first
        report = importer.Report(source.display, destination.domain, destination.directory,
                                 dry_run=destination.dry_run)
        if destination.dry_run:
            couchimport.CouchImporter(source, plan, None, None, report, directory=destination.directory,
                                      scratch=importer.scratch_dir()).run()
            return report

        def run(target: importer.Target, ledger: Ledger, step: Step) -> None:
            couchimport.CouchImporter(source, plan, target, ledger, report, directory=destination.directory,
                                      scratch=importer.scratch_dir(), progress=step).run()

        _locked_import(_needed(fleet), destination, source.url.source_id, source.display, source.display,
                       plan.inspection.file_bytes, report, run, progress)
    return report


def _needed(fleet: Fleet | None) -> Fleet:
    if fleet is None:
        raise ValueError("an import that writes needs the fleet")
    return fleet


Run = Callable[[importer.Target, Ledger, Step], None]


def _locked_import(fleet: Fleet, destination: Destination, source_id: str, short: str, source: str, needed: int,
                   report: importer.Report, run: Run, progress: Progress) -> None:
    """Under the fleet's lock, with the source's ledger for the domain: refuse a started import
    without --resume, then import on the instance's server."""
    state_dir = paths.fleet_state_dir(fleet.root)
    with fleet_lock(state_dir, fleet.name, f"v2 import {short} --to {destination.domain}"):
        ledger = Ledger(state_dir, source_id, destination.domain)
        try:
            if ledger.status() == "started" and not destination.resume:
                raise CozyopsError(f"import of {source} into {destination.domain}", "was started and did not finish",
                                   "pass --resume to continue it")
            candidates = servers(fleet, destination.domain, destination.server)
            for name in candidates:
                if _import_on(fleet, name, len(candidates) > 1, source, needed, report, ledger, run, progress):
                    return
            raise CozyopsError(f"instance {destination.domain}", "no server of the fleet knows it", "pass --server")
        finally:
            ledger.close()


def servers(fleet: Fleet, domain: str, server: str | None) -> list[str]:
    """The servers to look for ``domain`` on: the one asked for, else the instance's in the fleet,
    else every server."""
    if server:
        if server not in fleet.servers:
            raise ConfigError(f"--server {server}", "is not a server of the fleet")
        return [server]
    for instance in fleet.instances:
        if instance.domain == domain:
            return [instance.server]
    return list(fleet.servers)


def _import_on(fleet: Fleet, name: str, searching: bool, source: str, needed: int, report: importer.Report,
               ledger: Ledger, run: Run, progress: Progress) -> bool:
    """Import on server ``name``; False when ``searching`` and its cozy-stack does not know the domain."""
    domain = report.domain
    with connect(fleet, fleet.servers[name]) as stack:
        admin = stack.admin
        try:
            admin.instance(domain)
            usage = admin.disk_usage(domain)
        except StackError as error:
            if error.status == 404 and searching:
                return False
            raise stack_problem(error, name, domain) from None
        importer.check_quota(usage, max(needed - ledger.imported_bytes(), 0), domain)
        target = importer.Target(domain, stack.public(domain), lambda: admin.token(domain, importer.SCOPE))
        ledger.start(source)
        with progress(f"importing into {domain}", needed) as step:
            run(target, ledger, step)
        ledger.finish()
        return True
