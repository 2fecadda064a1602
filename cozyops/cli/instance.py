"""`cozyops instance`: the fleet's instances, recorded in instances.yml (comments kept) and
applied one at a time: created through cozy-stack's admin API, DNS records, certificate, site."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from cozyops import inventory
from cozyops.cli.instance_move import move
from cozyops.cli.render import emit_json, err_console
from cozyops.errors import ConfigError, CozyopsError

app = typer.Typer(
    help="""The fleet's instances. `add`, `modify` and `rm` edit instances.yml (its comments and
order kept) and apply that instance alone: cozy-stack (admin API), DNS records, certificate, nginx
site. `ls` and `show` ask the servers. An instance is the fleet's when it created or adopted it
(`adopt`); others on its servers are listed as "not in the fleet" and never touched.""",
    no_args_is_help=True,
)
apps_app = typer.Typer(help="Install or update an app on instances of the fleet.", no_args_is_help=True)
app.add_typer(apps_app, name="apps")

FleetOption = typer.Option(None, "--fleet", envvar="COZYOPS_FLEET", file_okay=False,
                           help="The fleet directory (default: $COZYOPS_FLEET).")
JsonOption = typer.Option(False, "--json", help="Print JSON (and only JSON) on standard output.")


def _say(text: str) -> None:
    err_console.print(text, markup=False, soft_wrap=True)


def _load(fleet: Path | None):
    root = inventory.fleet_dir(fleet)
    return root, inventory.load(root)


def _domain(value: str) -> str:
    return inventory.check_domain(value, "DOMAIN", "the argument")


def _apply_one(root: Path, domains: set[str], json: bool, what: str):
    """Plan and apply ``domains`` alone on the freshly loaded fleet."""
    from cozyops.fleet.orchestrator import Orchestrator

    model = inventory.load(root)
    orchestrator = Orchestrator(model)
    try:
        with orchestrator.locked(f"cozyops instance {what}"):
            plan = orchestrator.plan(only=domains)
            orchestrator.approve(plan, None, force=True)  # one instance: the operator named it
            report = orchestrator.apply(plan)
    finally:
        orchestrator.close()
    for domain, link in sorted(report.onboarding.items()):  # shown once, never logged
        _say(f"{domain}: onboarding link {link}")
    if json:
        emit_json(report.to_json())
    for kind, item, why in report.failed:
        _say(f"failed: {kind} {item}: {why}")
    if not json:
        _say(f"{', '.join(sorted(domains))}: {len(report.done)} step(s) done, {len(report.failed)} failed")
    if report.failed:
        sys.exit(1)


@app.command("add")
def add(
    domain: str = typer.Argument(..., help="The instance's domain (in the fleet's zone)."),
    server: str = typer.Option(None, "--server", help="The server (default: the one with the most room, "
                               "cozy_capacity)."),
    apps: str = typer.Option(None, "--apps", help="Apps to install, comma-separated (default: home, drive, photos, "
                             "settings, store)."),
    email: str = typer.Option(None, "--email"),
    locale: str = typer.Option(None, "--locale"),
    tz: str = typer.Option(None, "--tz", help="Time zone, e.g. Europe/Paris."),
    quota: str = typer.Option(None, "--quota", help="Disk quota: 5GB, 500MiB, or bytes."),
    context: str = typer.Option(None, "--context", help="cozy-stack's context."),
    fleet: Path = FleetOption,
    json: bool = JsonOption,
) -> None:
    """Add an instance: recorded in instances.yml, then created on its server with its DNS
    records, certificate and nginx site. Prints the onboarding link once (never logged)."""
    from cozyops.instances import fleetfile, placement

    root, model = _load(fleet)
    name = _domain(domain)
    if any(i.domain == name for i in model.instances):
        raise ConfigError("instances.yml", f"{name} is already an instance of the fleet")
    if server is not None and server not in model.servers:
        raise ConfigError("--server", f"{server!r} is not a server of the fleet ({', '.join(sorted(model.servers))})")
    chosen = server or placement.place(model)
    entry = {"domain": name, "server": chosen, "apps": [a.strip() for a in apps.split(",") if a.strip()]
             if apps else None, "email": email, "locale": locale, "tz": tz, "quota": quota, "context": context}
    fleetfile.add(root, entry)
    try:
        inventory.load(root)
    except ConfigError:
        fleetfile.remove(root, name)  # the file as it was
        raise
    if not json:
        _say(f"{name}: on server {chosen}")
    _apply_one(root, {name}, json, "add")


@app.command("rm")
def rm(
    domain: str = typer.Argument(...),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    fleet: Path = FleetOption,
    json: bool = JsonOption,
) -> None:
    """Remove an instance of the fleet: the instance and its data on its server, its DNS records,
    its certificate's deployment and its nginx site, and its entry in instances.yml."""
    from cozyops import state
    from cozyops.instances import fleetfile, site

    root, model = _load(fleet)
    name = _domain(domain)
    instance = next((i for i in model.instances if i.domain == name), None)
    with state.Owned(model.state_dir) as owned:
        record = owned.get("instance", name)
    if instance is None and record is None:
        raise ConfigError(f"instance {name}", "is not an instance of the fleet")
    if record is None:
        raise CozyopsError(f"instance {name}", "is not the fleet's (neither created nor adopted by it): not removed",
                           "remove it from instances.yml by hand, or adopt it first")
    server = record["server"]
    site_name = site.site_name(model, name)
    shared = any(i.server == server and i.domain != name and site.site_name(model, i.domain) == site_name
                 for i in model.instances)
    _say(f"This removes, for good: the instance {name} and all its data on server {server}; its DNS records "
         f"({name}, *.{name} or its app hosts); "
         + ("" if shared else f"its nginx site cozy-{site_name} and its certificate's deployment; ")
         + "its entry in instances.yml.")
    if not yes:
        if not sys.stdin.isatty():
            raise typer.BadParameter("confirm with --yes", param_hint="--yes")
        typer.confirm(f"Remove {name}?", abort=True, err=True)
    fleetfile.remove(root, name)
    _apply_one(root, {name}, json, "rm")


@app.command("modify")
def modify(
    domain: str = typer.Argument(...),
    quota: str = typer.Option(None, "--quota", help="Disk quota: 5GB, 500MiB, bytes; 0: none."),
    locale: str = typer.Option(None, "--locale"),
    email: str = typer.Option(None, "--email"),
    tz: str = typer.Option(None, "--tz"),
    blocked: bool = typer.Option(None, "--blocked/--unblocked", help="Block (or unblock) the instance."),
    reason: str = typer.Option(None, "--reason", help="Why it is blocked (with --blocked)."),
    fleet: Path = FleetOption,
    json: bool = JsonOption,
) -> None:
    """Change an instance: instances.yml first (comments kept), then its server."""
    from cozyops.instances import fleetfile

    root, model = _load(fleet)
    name = _domain(domain)
    if not any(i.domain == name for i in model.instances):
        raise ConfigError(f"instance {name}", "is not an instance of the fleet")
    changes = {key: value for key, value in (("quota", quota), ("locale", locale), ("email", email), ("tz", tz))
               if value is not None}
    if blocked is not None:
        changes["blocked"] = blocked
        changes["blocking_reason"] = reason if blocked else None
    elif reason is not None:
        raise typer.BadParameter("--reason goes with --blocked", param_hint="--reason")
    if not changes:
        raise typer.BadParameter("nothing to change (--quota, --locale, --email, --tz, --blocked/--unblocked)")
    fleetfile.update(root, name, changes)
    inventory.load(root)
    _apply_one(root, {name}, json, "modify")


@app.command("adopt")
def adopt(
    domain: str = typer.Argument(...),
    server: str = typer.Option(None, "--server", help="Its server (default: found by asking every server)."),
    fleet: Path = FleetOption,
    json: bool = JsonOption,
) -> None:
    """Make an instance that exists on a fleet server the fleet's: recorded in instances.yml (if
    not there) and in the fleet's state; from then on plan and apply manage it."""
    from cozyops import state
    from cozyops.fleet.orchestrator import observe
    from cozyops.instances import fleetfile

    root, model = _load(fleet)
    name = _domain(domain)
    views = observe(model, [server] if server else None)
    where = [view.name for view in views.values() if name in view.instances]
    if not where:
        problems = [f"{v.name}: {v.error}" for v in views.values() if v.error]
        raise CozyopsError(f"instance {name}", "is on none of the fleet's servers"
                           + (f" (unreachable: {'; '.join(problems)})" if problems else ""))
    found = views[where[0]].instances[name]
    if not any(i.domain == name for i in model.instances):
        fleetfile.add(root, {"domain": name, "server": where[0], "locale": found.locale})
        inventory.load(root)
    with state.Owned(model.state_dir) as owned:
        owned.put("instance", name, where[0], "adopted", {})
    if json:
        emit_json({"domain": name, "server": where[0], "origin": "adopted"})
    else:
        _say(f"{name}: adopted (on server {where[0]}); `cozyops plan` shows what the fleet would change")


def _rows(model, views, owned, records, usage: bool = True) -> list[dict]:
    import datetime

    from cozyops.instances import lifecycle, site
    from cozyops.stack.connect import connect

    now = datetime.datetime.now(datetime.UTC)
    wanted = {i.domain: i for i in model.instances}
    rows: dict[str, dict] = {}
    for instance in model.instances:
        view = views.get(instance.server)
        found = view.instances.get(instance.domain) if view and not view.error else None
        if view is None or view.error:
            status = "unknown (server unreachable)"
        elif found is None:
            status = "missing"
        elif found.blocked:
            status = f"blocked ({found.blocking_reason or 'no reason given'})"
        else:
            status = "present"
        rows[instance.domain] = {"domain": instance.domain, "server": instance.server, "state": status,
                                 "owned": owned.get(instance.domain, {}).get("origin"), "quota": found.quota
                                 if found else None, "used": None, "apps": None, "cert_days_left": None}
    for name, view in views.items():
        for domain, found in view.instances.items():
            if domain not in wanted:
                rows[domain] = {"domain": domain, "server": name,
                                "state": "not in the fleet" if domain not in owned else "owned, not in instances.yml",
                                "owned": owned.get(domain, {}).get("origin"), "quota": found.quota, "used": None,
                                "apps": None, "cert_days_left": None}
    for row in rows.values():
        record = records.get(site.site_name(model, row["domain"]))
        if record is not None and row["domain"] in wanted:
            row["cert_days_left"] = max(0, (record.not_after - now).days)
    if usage:
        from concurrent.futures import ThreadPoolExecutor

        def per_server(name: str) -> None:
            mine = [row for row in rows.values() if row["server"] == name and row["state"] not in
                    ("missing", "unknown (server unreachable)")]
            if not mine:
                return
            try:
                with connect(model, model.servers[name]) as stack:
                    for row in mine:
                        try:
                            row["used"], quota = lifecycle.disk_usage(stack, row["domain"])
                            row["quota"] = quota or row["quota"]
                            if row["state"] != "not in the fleet":
                                row["apps"] = sorted(a["slug"] for a in lifecycle.apps(stack, row["domain"]))
                        except CozyopsError:
                            pass
            except CozyopsError:
                pass

        with ThreadPoolExecutor(max_workers=max(1, len(views))) as pool:
            list(pool.map(per_server, sorted(views)))
    return sorted(rows.values(), key=lambda r: (r["server"], r["domain"]))


def _size(value) -> str:
    if value is None:
        return "-"
    if not value:
        return "0"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1000
    return f"{value:.1f}PB"


@app.command("ls")
def ls(fleet: Path = FleetOption, json: bool = JsonOption) -> None:
    """The fleet's instances and the others on its servers: server, state (present, missing,
    blocked and why, not in the fleet), disk used and quota, certificate days left, apps. The
    servers are asked in parallel."""
    from cozyops import state
    from cozyops.fleet.orchestrator import observe
    from cozyops.tls.store import CertStore

    _, model = _load(fleet)
    views = observe(model)
    with state.Owned(model.state_dir) as owned_db:
        owned = owned_db.all("instance")
    store = CertStore(model.state_dir)
    try:
        records = store.records()
    finally:
        store.close()
    rows = _rows(model, views, owned, records)
    unreachable = {name: view.error for name, view in views.items() if view.error}
    if json:
        emit_json({"instances": rows, "unreachable": unreachable})
        return
    from rich.table import Table

    table = Table("domain", "server", "state", "fleet's", "used", "quota", "cert days", "apps", box=None)
    for row in rows:
        table.add_row(row["domain"], row["server"], row["state"], row["owned"] or "-", _size(row["used"]),
                      _size(row["quota"]) if row["quota"] else "none", str(row["cert_days_left"] or "-"),
                      ",".join(row["apps"] or []) or "-")
    err_console.print(table)
    for name, why in unreachable.items():
        _say(f"server {name}: {why}")


@app.command("show")
def show(domain: str = typer.Argument(...), fleet: Path = FleetOption, json: bool = JsonOption) -> None:
    """One instance: the fleet's settings, what its server shows, disk usage, apps, certificate."""
    from cozyops import state
    from cozyops.fleet.orchestrator import observe
    from cozyops.tls.store import CertStore

    _, model = _load(fleet)
    name = _domain(domain)
    instance = next((i for i in model.instances if i.domain == name), None)
    with state.Owned(model.state_dir) as owned_db:
        record = owned_db.get("instance", name)
    servers = [instance.server] if instance else ([record["server"]] if record else None)
    views = observe(model, servers)
    if not any(name in v.instances for v in views.values()) and instance is None:
        raise ConfigError(f"instance {name}", "is neither in the fleet nor on its servers")
    store = CertStore(model.state_dir)
    try:
        records = store.records()
    finally:
        store.close()
    rows = [row for row in _rows(model, views, {name: record} if record else {}, records) if row["domain"] == name]
    data = rows[0] if rows else {"domain": name, "state": "missing"}
    if instance is not None:
        data["fleet"] = {"server": instance.server, "apps": list(instance.apps), **instance.settings()}
    found = next((v.instances[name] for v in views.values() if name in v.instances), None)
    if found is not None:
        data["stack"] = {k: v for k, v in found.attributes.items() if k in (
            "domain", "locale", "context", "blocked", "blocking_reason", "onboarding_finished", "disk_quota",
            "prefix", "domain_aliases")}
    if json:
        emit_json(data)
        return
    for key, value in data.items():
        _say(f"{key}: {value}")


def _targets(model, instance: str | None, server: str | None, every: bool) -> list:
    chosen = [flag for flag in (instance, server, every or None) if flag]
    if len(chosen) != 1:
        raise typer.BadParameter("name one of --instance, --server, --all")
    if instance:
        name = _domain(instance)
        found = [i for i in model.instances if i.domain == name]
        if not found:
            raise ConfigError(f"instance {name}", "is not an instance of the fleet")
        return found
    if server:
        if server not in model.servers:
            raise ConfigError("--server", f"{server!r} is not a server of the fleet")
        return [i for i in model.instances if i.server == server]
    return list(model.instances)


def _apps(verb: str, slug: str, source: str | None, instance: str | None, server: str | None, every: bool,
          batch: int, pause: float, fleet: Path | None, json: bool) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from cozyops.instances import lifecycle
    from cozyops.stack.connect import connect

    _, model = _load(fleet)
    targets = _targets(model, instance, server, every)
    results: list[lifecycle.AppResult] = []
    size = batch or len(targets) or 1
    batches = [targets[i:i + size] for i in range(0, len(targets), size)]
    stopped = None
    for number, group in enumerate(batches, 1):
        by_server: dict[str, list] = {}
        for item in group:
            by_server.setdefault(item.server, []).append(item)

        def per_server(name: str, by_server=by_server) -> list:
            try:
                with connect(model, model.servers[name]) as stack:
                    return [lifecycle.app(stack, i.domain, slug, source, update=verb == "update")
                            for i in by_server[name]]
            except CozyopsError as error:
                return [lifecycle.AppResult(i.domain, slug, False, str(error)) for i in by_server[name]]

        with ThreadPoolExecutor(max_workers=max(1, len(by_server))) as pool:
            found = [r for rs in pool.map(per_server, sorted(by_server)) for r in rs]
        results += found
        if not json:
            for r in found:
                _say(f"{r.domain}: {'ok' if r.ok else 'failed'}: {r.message}")
        if batch and any(not r.ok for r in found) and number < len(batches):
            stopped = number
            break
        if batch and pause and number < len(batches):
            time.sleep(pause)
    failures = [r for r in results if not r.ok]
    if json:
        emit_json({"results": [{"domain": r.domain, "slug": r.slug, "ok": r.ok, "message": r.message}
                               for r in results], "stopped_after_batch": stopped})
    if stopped is not None:
        _say(f"stopped after batch {stopped} of {len(batches)}: it had failures; "
             f"{sum(len(b) for b in batches[stopped:])} instance(s) not attempted")
    if failures:
        _say(f"failed on {len(failures)} instance(s): {', '.join(r.domain for r in failures)}")
        sys.exit(1)


SlugArgument = typer.Argument(..., help="The app's slug (drive, photos, ...).")
SourceArgument = typer.Argument(None, help="Its source (default: registry://SLUG/stable).")
InstanceOption = typer.Option(None, "--instance", help="One instance.")
ServerOption = typer.Option(None, "--server", help="Every instance of one server.")
AllOption = typer.Option(False, "--all", help="Every instance of the fleet.")
BatchOption = typer.Option(0, "--batch", min=0, help="Instances per batch (0: all at once); stop at the first "
                           "batch with a failure.")
PauseOption = typer.Option(0.0, "--pause", min=0.0, help="Seconds to wait between batches.")


@apps_app.command("install")
def apps_install(slug: str = SlugArgument, source: str = SourceArgument, instance: str = InstanceOption,
                 server: str = ServerOption, every: bool = AllOption, batch: int = BatchOption,
                 pause: float = PauseOption, fleet: Path = FleetOption, json: bool = JsonOption) -> None:
    """Install an app: each instance's result; a failure on one does not stop the others (unless
    --batch: then the batches after a failed one are not started); exit 1 listing the failures."""
    _apps("install", slug, source, instance, server, every, batch, pause, fleet, json)


@apps_app.command("update")
def apps_update(slug: str = SlugArgument, source: str = SourceArgument, instance: str = InstanceOption,
                server: str = ServerOption, every: bool = AllOption, batch: int = BatchOption,
                pause: float = PauseOption, fleet: Path = FleetOption, json: bool = JsonOption) -> None:
    """Update an app, rolling by batches of instances with --batch N --pause S (stops at the first
    failed batch); exit 1 listing the failures."""
    _apps("update", slug, source, instance, server, every, batch, pause, fleet, json)

app.command("move")(move)  # issue 21: in its own module
