"""The fleet's status as data (pure): what `cozyops status` collected, as JSON, as node_exporter
textfile metrics, and the geometry of the HTML page's charts.

Nothing here does I/O; :mod:`cozyops.status.collect` fills a :class:`Report`.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import asdict, dataclass, field

# An instance's state: ready (onboarded), onboarding (created, its owner has not set a password),
# blocked, missing (the fleet places it on a server whose cozy-stack does not know it), unknown
# (on a server, not in the fleet), unreachable (its server could not be asked).
STATES = ("ready", "onboarding", "blocked", "missing", "unknown", "unreachable")
# Certificates by days left: the page's colours and the metrics' buckets.
CERT_BANDS = ((0, "expired"), (7, "critical"), (30, "soon"), (math.inf, "fine"))


@dataclass
class ServerState:
    name: str
    reachable: bool
    error: str = ""
    status: str = ""  # /status's message ("OK")
    version: str = ""  # /version
    package: str = ""  # the cozy-stack package installed
    instances: int | None = None  # what its admin API lists
    disk: dict | None = None  # {"path", "size", "used", "available"} in bytes

    @property
    def healthy(self) -> bool:
        return self.reachable and self.status == "OK" and not self.error


@dataclass
class InstanceState:
    domain: str
    server: str
    state: str  # one of STATES
    in_fleet: bool = True
    quota: int | None = None  # bytes (None: no quota)
    used: int | None = None  # bytes

    @property
    def quota_use(self) -> float | None:
        return self.used / self.quota if self.quota and self.used is not None else None


@dataclass
class CertState:
    name: str
    domains: list[str]
    status: str  # missing, valid, due, expired
    not_before: str | None = None
    not_after: str | None = None
    days_left: float | None = None
    next_renewal: str | None = None

    @property
    def band(self) -> str:
        return band(self.days_left)


@dataclass
class DnsDrift:
    checked: bool
    error: str = ""
    changes: list[dict] = field(default_factory=list)  # {"action", "name", "type"}
    conflicts: int = 0

    @property
    def drifted(self) -> bool:
        return bool(self.changes or self.conflicts)


@dataclass
class RunState:
    id: str
    kind: str  # provision, upgrade, dns-batch, ... (a run's playbook, or the journal's kind)
    at: str  # ISO time (UTC)
    outcome: str  # successful / failed / ok / ...
    hosts: list[str] = field(default_factory=list)
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome in ("successful", "ok")


@dataclass
class Report:
    fleet: str
    zone: str
    generated: str  # ISO time (UTC)
    servers: list[ServerState] = field(default_factory=list)
    instances: list[InstanceState] = field(default_factory=list)
    certificates: list[CertState] = field(default_factory=list)
    dns: DnsDrift = field(default_factory=lambda: DnsDrift(False, "not checked"))
    runs: list[RunState] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # parts that could not be collected

    def summary(self) -> dict:
        states = dict.fromkeys(STATES, 0)
        for instance in self.instances:
            states[instance.state] += 1
        bands = {name: 0 for _, name in CERT_BANDS}
        for cert in self.certificates:
            if cert.days_left is not None:
                bands[cert.band] += 1
        return {
            "servers": len(self.servers),
            "servers_healthy": sum(s.healthy for s in self.servers),
            "instances": states,
            "certificates": {**bands, "missing": sum(c.days_left is None for c in self.certificates)},
            "dns_changes": len(self.dns.changes),
            "last_run_ok": self.runs[0].ok if self.runs else None,
        }

    @property
    def ok(self) -> bool:
        """Everything fine: servers healthy, instances ready or onboarding, no certificate within
        7 days of expiry or missing, no DNS drift, the last run successful."""
        summary = self.summary()
        states = summary["instances"]
        certs = summary["certificates"]
        return (summary["servers_healthy"] == summary["servers"]
                and not any(states[s] for s in ("blocked", "missing", "unknown", "unreachable"))
                and not (certs["expired"] or certs["critical"] or certs["missing"])
                and self.dns.checked and not self.dns.drifted
                and summary["last_run_ok"] is not False and not self.problems)

    def to_json(self) -> dict:
        return {
            "fleet": self.fleet, "zone": self.zone, "generated": self.generated, "ok": self.ok,
            "summary": self.summary(),
            "servers": [{**asdict(s), "healthy": s.healthy} for s in self.servers],
            "instances": [{**asdict(i), "quota_use": i.quota_use} for i in self.instances],
            "certificates": [{**asdict(c), "band": c.band} for c in self.certificates],
            "dns": {**asdict(self.dns), "drifted": self.dns.drifted},
            "runs": [{**asdict(r), "ok": r.ok} for r in self.runs],
            "problems": self.problems,
        }


def band(days_left: float | None) -> str:
    if days_left is None:
        return "missing"
    for limit, name in CERT_BANDS:
        if days_left < limit:
            return name
    return "fine"


def iso(moment: datetime.datetime | None) -> str | None:
    return moment.astimezone(datetime.UTC).isoformat(timespec="seconds") if moment else None


def parse_iso(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    moment = datetime.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


# -- node_exporter textfile metrics ------------------------------------------------------------------


def _label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metrics:
    def __init__(self, fleet: str) -> None:
        self.fleet = fleet
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: list[tuple[dict, float]]) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            text = ",".join(f'{key}="{_label(val)}"' for key, val in {"fleet": self.fleet, **labels}.items())
            self.lines.append(f"{name}{{{text}}} {_number(value)}")


def prometheus(report: Report) -> str:
    """The report as node_exporter textfile metrics (the text exposition format, one family each)."""
    m = _Metrics(report.fleet)
    generated = parse_iso(report.generated)
    m.family("cozyops_status_generated_timestamp_seconds", "gauge", "When cozyops status collected these metrics.",
             [({}, generated.timestamp() if generated else 0)])
    m.family("cozyops_server_up", "gauge", "1 when the server answered and cozy-stack's /status is OK.",
             [({"server": s.name}, 1 if s.healthy else 0) for s in report.servers])
    m.family("cozyops_server_info", "gauge", "The cozy-stack version each server runs (1).",
             [({"server": s.name, "version": s.version, "package": s.package}, 1)
              for s in report.servers if s.reachable])
    m.family("cozyops_server_instances", "gauge", "Instances the server's cozy-stack lists.",
             [({"server": s.name}, s.instances) for s in report.servers if s.instances is not None])
    disks = [s for s in report.servers if s.disk]
    m.family("cozyops_server_disk_size_bytes", "gauge", "Size of the file system of cozy-stack's data.",
             [({"server": s.name, "path": s.disk["path"]}, s.disk["size"]) for s in disks])
    m.family("cozyops_server_disk_available_bytes", "gauge", "Space left on the file system of cozy-stack's data.",
             [({"server": s.name, "path": s.disk["path"]}, s.disk["available"]) for s in disks])
    states = report.summary()["instances"]
    m.family("cozyops_instances", "gauge", "The fleet's instances by state.",
             [({"state": state}, count) for state, count in states.items()])
    m.family("cozyops_instance_disk_used_bytes", "gauge", "Disk used by each instance.",
             [({"instance": i.domain, "server": i.server}, i.used) for i in report.instances if i.used is not None])
    m.family("cozyops_instance_disk_quota_bytes", "gauge", "Each instance's disk quota (instances with one).",
             [({"instance": i.domain, "server": i.server}, i.quota) for i in report.instances if i.quota])
    dated = [c for c in report.certificates if c.not_after]
    m.family("cozyops_certificate_expiry_timestamp_seconds", "gauge", "When each certificate expires.",
             [({"certificate": c.name}, parse_iso(c.not_after).timestamp()) for c in dated])
    m.family("cozyops_certificate_days_left", "gauge", "Days until each certificate expires.",
             [({"certificate": c.name}, round(c.days_left, 2)) for c in dated if c.days_left is not None])
    m.family("cozyops_certificates_missing", "gauge", "Certificates the fleet needs and does not have.",
             [({}, sum(1 for c in report.certificates if not c.not_after))])
    m.family("cozyops_dns_drift_records", "gauge", "Record changes the DNS plan would make (-1: not checked).",
             [({}, len(report.dns.changes) if report.dns.checked else -1)])
    latest: dict[str, RunState] = {}
    for run in report.runs:  # newest first
        latest.setdefault(run.kind, run)
    m.family("cozyops_last_run_success", "gauge", "1 when the newest run of its kind succeeded.",
             [({"kind": kind}, 1 if run.ok else 0) for kind, run in sorted(latest.items())])
    m.family("cozyops_last_run_timestamp_seconds", "gauge", "When the newest run of its kind started.",
             [({"kind": kind}, parse_iso(run.at).timestamp()) for kind, run in sorted(latest.items())])
    return "\n".join(m.lines) + "\n"


# -- the page's charts (geometry only; templates/status/status.html.j2 draws them) -------------------


@dataclass
class Bar:
    label: str
    x: float
    y: float
    width: float
    height: float
    value: str
    css: str  # the colour's class
    title: str = ""
    show_label: bool = True  # the row's label (a stacked row labels its first segment)
    show_value: bool = True  # the value after the bar (its last segment)


@dataclass
class Chart:
    width: int
    height: int
    bars: list[Bar] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)  # (x, label)
    marker: tuple[float, str] | None = None  # (x, label): "now"


def cert_timeline(certs: list[CertState], now: datetime.datetime, width: int = 1020, row: int = 24,
                  label_width: int = 250) -> Chart:
    """Certificate expiry over time: one row per certificate (soonest expiry first), a bar from
    issuance to expiry on a common time axis, ``now`` marked, the colour its band."""
    dated = sorted((c for c in certs if c.not_after), key=lambda c: c.not_after)
    top, bottom = 8, 26
    chart = Chart(width, top + bottom + row * max(len(dated), 1))
    if not dated:
        return chart
    starts = [parse_iso(c.not_before) or now for c in dated]
    ends = [parse_iso(c.not_after) for c in dated]
    lo = min([*starts, now])
    hi = max([*ends, now + datetime.timedelta(days=1)])
    span = (hi - lo).total_seconds() or 1.0
    plot = width - label_width - 70

    def x(moment: datetime.datetime) -> float:
        return round(label_width + plot * (moment - lo).total_seconds() / span, 1)

    for index, (cert, start, end) in enumerate(zip(dated, starts, ends, strict=True)):
        left = x(start)
        days = f"{cert.days_left:.0f} d" if cert.days_left is not None else ""
        chart.bars.append(Bar(cert.name, left, top + index * row + 3, max(x(end) - left, 2.0), row - 8, days,
                              f"band-{cert.band}", f"{cert.name}: {cert.not_before} to {cert.not_after}"))
    day = datetime.timedelta(days=1)
    step = max(1, math.ceil(span / 86400 / 6))
    tick = lo.replace(hour=0, minute=0, second=0, microsecond=0) + day
    label = "%b %Y" if span > 300 * 86400 else "%d %b"
    while tick < hi:
        chart.ticks.append((x(tick), tick.strftime(label)))
        tick += day * step
    chart.marker = (x(now), "now")
    return chart


def instances_per_server(report: Report, width: int = 1020, row: int = 28, label_width: int = 120) -> Chart:
    """Instances per server: a bar per server, stacked by state (the fleet's view and the server's)."""
    counts: dict[str, dict[str, int]] = {s.name: dict.fromkeys(STATES, 0) for s in report.servers}
    for instance in report.instances:
        counts.setdefault(instance.server, dict.fromkeys(STATES, 0))[instance.state] += 1
    top = 6
    chart = Chart(width, top * 2 + row * max(len(counts), 1))
    most = max((sum(c.values()) for c in counts.values()), default=0) or 1
    plot = width - label_width - 60
    for index, (server, by_state) in enumerate(sorted(counts.items())):
        left = float(label_width)
        total = sum(by_state.values())
        segments = []
        for state in STATES:
            if not by_state[state]:
                continue
            size = round(plot * by_state[state] / most, 1)
            segments.append(Bar(server, left, top + index * row + 3, size, row - 8, str(total), f"state-{state}",
                                f"{server}: {by_state[state]} {state}"))
            left += size
        if not segments:
            segments.append(Bar(server, left, top + index * row + 3, 0.0, row - 8, "0", "state-none",
                                f"{server}: no instances"))
        for position, bar in enumerate(segments):
            bar.show_label = position == 0
            bar.show_value = position == len(segments) - 1
        chart.bars += segments
    return chart
