"""The status page: one self-contained HTML file (no external assets: inline CSS, inline SVG
charts), rendered from ``templates/status/status.html.j2`` with Jinja2 (autoescaped)."""

from __future__ import annotations

import datetime

import jinja2

from cozyops import paths
from cozyops.status.report import STATES, Report, cert_timeline, instances_per_server, parse_iso


def human_bytes(value: int | None) -> str:
    if value is None:
        return "–"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def when(text: str | None) -> str:
    """An ISO time as "2026-12-05 05:10 UTC" (the page's tables)."""
    moment = parse_iso(text) if text else None
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "–"


def render(report: Report, now: datetime.datetime | None = None) -> str:
    now = now or parse_iso(report.generated) or datetime.datetime.now(datetime.UTC)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(paths.data_dir("templates") / "status"),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["bytes"] = human_bytes
    env.filters["when"] = when
    return env.get_template("status.html.j2").render(
        r=report, summary=report.summary(), states=STATES,
        certs_chart=cert_timeline(report.certificates, now), servers_chart=instances_per_server(report),
    )
