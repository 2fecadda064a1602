"""`cozyops v2`: leaving Cozy v2 (a cozy-monitor export into a v3 instance)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn

from cozyops import inventory
from cozyops.cli.render import emit_json, err_console
from cozyops.errors import ConfigError
from cozyops.v2 import importer, orchestrator
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


@contextlib.contextmanager
def _progress(what: str, total: int | None) -> Iterator[orchestrator.Step]:
    """A progress bar on standard error while the work lasts (bytes, speed, items, time)."""
    columns = (TextColumn(what), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TextColumn("{task.fields[items]} items"), TimeElapsedColumn())
    with Progress(*columns, console=err_console.rich, transient=True) as bar:
        task = bar.add_task(what, total=total, items=0)
        done = [0]

        def step(nbytes: int, items: int) -> None:
            done[0] += items
            bar.update(task, advance=nbytes, items=done[0])

        yield step


def _one_source(export: Path | None, couchdb: str | None) -> None:
    if (export is None) == (couchdb is None):
        raise ConfigError("cozyops v2", "give exactly one source: an EXPORT or --couchdb URL")


@app.command()
def inspect(export: Path = ExportArg, couchdb: str = CouchOption, json: bool = JsonOption, max_size: int = MaxSize,
            max_ratio: float = MaxRatio) -> None:
    """Read the export (or the live v2 CouchDB) and say what it holds (counts, sizes, doctypes,
    problems). Writes nothing."""
    _one_source(export, couchdb)
    if couchdb is not None:
        label, found = orchestrator.inspect_couch(couchdb, _progress)
    else:
        found = orchestrator.inspect_export(export, _limits(max_size, max_ratio), _progress)
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
    destination = orchestrator.Destination(to, directory, server, resume, dry_run)
    the_fleet = None if dry_run else inventory.load(inventory.fleet_dir(fleet))
    if couchdb is not None:
        report = orchestrator.import_couch(the_fleet, couchdb, destination, _progress)
    else:
        report = orchestrator.import_export(the_fleet, export, destination, limits, _progress)
    if json:
        emit_json(report.to_json())
    else:
        _print_report(report)
