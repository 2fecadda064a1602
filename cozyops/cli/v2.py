"""`cozyops v2`: leaving Cozy v2 (a cozy-monitor export into a v3 instance)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn

from cozyops import inventory, paths
from cozyops.cli.render import emit_json, err_console
from cozyops.errors import ConfigError, CozyopsError
from cozyops.state import Ledger, fleet_lock
from cozyops.v2 import importer
from cozyops.v2.tarball import Limits

app = typer.Typer(
    help="""Leaving Cozy v2: a `cozy-monitor export` tarball into a v3 instance, nothing lost that v3 can
hold. `inspect` reads the export and writes nothing; `import` writes it through cozy-stack's public
API over SSH, with a ledger in the fleet's state database so that `--resume` continues after a
crash and a second run adds nothing.""",
    no_args_is_help=True,
)

ExportArg = typer.Argument(None, exists=False, dir_okay=False, show_default=False,
                           help="The cozy-monitor export (.tar.gz); or --couchdb instead.")
CouchOption = typer.Option(None, "--couchdb", metavar="URL", show_default=False,
                           help="Read the live v2 CouchDB instead of an export: http://user:password@host:5984/ "
                           "(database `cozy`, or the URL's last path part); http://user@host:5984/ takes the password "
                           "from $COZYOPS_COUCHDB_PASSWORD. The password is never printed.")
JsonOption = typer.Option(False, "--json", help="Print JSON (and only JSON) on standard output.")
MaxSize = typer.Option(1 << 40, "--max-size", help="Refuse an export that decompresses past this many bytes.")
MaxRatio = typer.Option(200.0, "--max-ratio", help="Refuse an export whose decompression ratio passes this.")


def _limits(max_size: int, max_ratio: float) -> Limits:
    try:
        return Limits(max_bytes=max_size, max_ratio=max_ratio)
    except ValueError as error:
        raise ConfigError("--max-size/--max-ratio", str(error)) from None


def _progress(total: int, what: str) -> Progress:
    return Progress(TextColumn(what), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TextColumn("{task.fields[items]} items"), TimeElapsedColumn(), console=err_console.rich,
                    transient=True)


def _inspect(export: Path, limits: Limits) -> importer.Inspection:
    size = export.stat().st_size if export.exists() else 0
    with _progress(size, f"reading {export.name}") as bar:
        task = bar.add_task("read", total=None, items=0)
        count = [0]

        def step(nbytes: int) -> None:
            count[0] += 1
            bar.update(task, advance=nbytes, items=count[0])

        return importer.inspect(export, limits, step)


def _one_source(export: Path | None, couchdb: str | None) -> None:
    if (export is None) == (couchdb is None):
        raise ConfigError("cozyops v2", "give exactly one source: an EXPORT or --couchdb URL")


def _inspect_couch(source):
    from cozyops.v2 import couchimport

    with _progress(0, f"reading {source.display}") as bar:
        task = bar.add_task("read", total=None, items=0)
        count = [0]

        def step(nbytes: int) -> None:
            count[0] += 1
            bar.update(task, advance=nbytes, items=count[0])

        return couchimport.inspect_couch(source, step)


@app.command()
def inspect(export: Path = ExportArg, couchdb: str = CouchOption, json: bool = JsonOption, max_size: int = MaxSize,
            max_ratio: float = MaxRatio) -> None:
    """Read the export (or the live v2 CouchDB) and say what it holds (counts, sizes, doctypes,
    problems). Writes nothing."""
    _one_source(export, couchdb)
    if couchdb is not None:
        from cozyops.v2.couchdb import CouchSource

        with CouchSource(couchdb) as source:
            found = _inspect_couch(source).inspection
        label = source.display
    else:
        found = _inspect(export, _limits(max_size, max_ratio))
    if json:
        emit_json(found.to_json())
        return
    if couchdb:
        print(f"{label}: {found.members} documents: {found.folders} folders, {found.files} files, "
              f"{found.photos} photos ({found.file_bytes} bytes of contents), {found.contacts} contacts, "
              f"{found.albums_lines} albums, {found.duplicates} repeated paths")
    else:
        print(f"{export}: {found.members} members: {found.folders} folders, {found.files} files "
              f"({found.file_bytes} bytes), {found.photos} photos, {found.contacts} contact files, "
              f"{found.albums_lines} album lines, {found.references_lines} reference lines, "
              f"{found.duplicates} repeated paths")
    for doctype, count in sorted(found.doctypes.items()):
        print(f"  archived {doctype}: {count}")
    for problem in found.problems:
        print(f"  ! {problem['member']}: {problem['problem']}")


def _print_report(report: importer.Report) -> None:
    counts = report.counts()
    for item in report.items:
        if item.outcome in (importer.SKIPPED, importer.RENAMED, importer.KEPT) or item.reason:
            line = f"{item.outcome:<16} {item.kind:<9} {item.source}"
            if item.target:
                line += f" -> {item.target}"
            if item.reason:
                line += f" ({item.reason})"
            print(line)
    summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items()))
    verb = "would import" if report.dry_run else "imported"
    err_console.print(f"{report.export} {verb} into {report.domain}:{report.directory}: {report.members} members; "
                      f"{summary}", highlight=False, markup=False, soft_wrap=True)


@app.command("import")
def import_(
    export: Path = ExportArg,
    couchdb: str = CouchOption,
    to: str = typer.Option(..., "--to", help="The v3 instance's domain."),
    server: str = typer.Option(None, "--server", help="The fleet server (default: the instance's, or the one "
                               "whose cozy-stack knows DOMAIN)."),
    directory: str = typer.Option("/", "--directory", help="Where in the Drive (default: its root)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an import that stopped."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be done; write nothing."),
    json: bool = JsonOption,
    fleet: Path = typer.Option(None, "--fleet", envvar="COZYOPS_FLEET", file_okay=False,
                               help="The fleet directory (default: $COZYOPS_FLEET)."),
    max_size: int = MaxSize,
    max_ratio: float = MaxRatio,
) -> None:
    """Import the export (or the live v2 CouchDB, --couchdb) into DOMAIN. Exit 0 when everything
    was imported or reported as skipped, 1 when the source was refused (a truncated archive, a
    decompression bomb, a database that cannot be read as v2) or the instance cannot take it."""
    from cozyops.v2 import convert

    _one_source(export, couchdb)
    limits = _limits(max_size, max_ratio)
    try:
        convert.destination_parts(directory)
    except ValueError as error:
        raise ConfigError("--directory", str(error)) from None
    if couchdb is not None:
        _import_couch(couchdb, to, server, directory, resume, dry_run, json, fleet)
        return
    found = _inspect(export, limits)  # refuses a bad archive before anything is written
    report = importer.Report(str(export), to, directory, dry_run=dry_run)
    if dry_run:
        importer.Importer(export, None, None, report, directory=directory, limits=limits,
                          scratch=importer.scratch_dir()).run()
        _render(report, json)
        return
    the_fleet = inventory.load(inventory.fleet_dir(fleet))
    export_id = importer.fingerprint(export)
    state = paths.fleet_state_dir(the_fleet.root)
    with fleet_lock(state, the_fleet.name, f"v2 import {export.name} --to {to}"):
        ledger = Ledger(state, export_id, to)
        try:
            status = ledger.status()
            if status == "started" and not resume:
                raise CozyopsError(f"import of {export} into {to}", "was started and did not finish",
                                   "pass --resume to continue it")

            def run(target, step) -> None:
                importer.Importer(export, target, ledger, report, directory=directory, limits=limits,
                                  scratch=importer.scratch_dir(), progress=step, export_id=export_id,
                                  checksums=found.checksums).run()

            _import(the_fleet, server, str(export), found.file_bytes, report, ledger, run)
        finally:
            ledger.close()
    _render(report, json)


def _import_couch(url: str, to: str, server: str | None, directory: str, resume: bool, dry_run: bool, json: bool,
                  fleet: Path | None) -> None:
    from cozyops.v2 import couchimport
    from cozyops.v2.couchdb import CouchSource

    with CouchSource(url) as source:
        plan = _inspect_couch(source)  # refuses a database that cannot be read as v2 before anything is written
        report = importer.Report(source.display, to, directory, dry_run=dry_run)
        if dry_run:
            couchimport.CouchImporter(source, plan, None, None, report, directory=directory,
                                      scratch=importer.scratch_dir()).run()
            _render(report, json)
            return
        the_fleet = inventory.load(inventory.fleet_dir(fleet))
        state = paths.fleet_state_dir(the_fleet.root)
        with fleet_lock(state, the_fleet.name, f"v2 import {source.display} --to {to}"):
            ledger = Ledger(state, source.url.source_id, to)
            try:
                if ledger.status() == "started" and not resume:
                    raise CozyopsError(f"import of {source.display} into {to}", "was started and did not finish",
                                       "pass --resume to continue it")

                def run(target, step) -> None:
                    couchimport.CouchImporter(source, plan, target, ledger, report, directory=directory,
                                              scratch=importer.scratch_dir(), progress=step).run()

                _import(the_fleet, server, source.display, plan.inspection.file_bytes, report, ledger, run)
            finally:
                ledger.close()
    _render(report, json)


def _render(report: importer.Report, json: bool) -> None:
    if json:
        emit_json(report.to_json())
    else:
        _print_report(report)


def _servers(the_fleet, to: str, server: str | None) -> list[str]:
    if server:
        if server not in the_fleet.servers:
            raise ConfigError(f"--server {server}", "is not a server of the fleet")
        return [server]
    for instance in the_fleet.instances:
        if instance.domain == to:
            return [instance.server]
    return list(the_fleet.servers)


def _import(the_fleet, server: str | None, source: str, needed: int, report: importer.Report,
            ledger: Ledger, run) -> None:
    """Import on the instance's server; ``run(target, progress)`` does the import, ``needed``
    bytes are checked against the quota first."""
    candidates = _servers(the_fleet, report.domain, server)
    for name in candidates:
        if _import_on(the_fleet, the_fleet.servers[name], len(candidates) > 1, source, needed, report, ledger, run):
            return
    raise CozyopsError(f"instance {report.domain}", "no server of the fleet knows it", "pass --server")


def _import_on(the_fleet, server, searching: bool, source: str, needed: int, report: importer.Report,
               ledger: Ledger, run) -> bool:
    from cozyops.stack import StackError
    from cozyops.stack.connect import connect, stack_problem

    with connect(the_fleet, server) as stack:
        try:
            stack.admin.instance(report.domain)
        except StackError as error:
            if error.status == 404 and searching:
                return False
            raise stack_problem(error, server.name, report.domain) from None
        try:
            usage = stack.admin.disk_usage(report.domain)
        except StackError as error:
            raise stack_problem(error, server.name, report.domain) from None
        importer.check_quota(usage, max(needed - ledger.imported_bytes(), 0), report.domain)
        public = stack.public(report.domain)
        admin = stack.admin
        target = importer.Target(report.domain, public, lambda: admin.token(report.domain, importer.SCOPE))
        ledger.start(source)
        with _progress(needed, f"importing into {report.domain}") as bar:
            task = bar.add_task("import", total=needed, items=0)
            done = [0]

            def step(nbytes: int, items: int) -> None:
                done[0] += items
                bar.update(task, advance=nbytes, items=done[0])

            run(target, step)
        ledger.finish()
        return True
