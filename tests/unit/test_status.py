"""`cozyops status` without a fleet's servers: the report's JSON, node_exporter metrics, the page
(self-contained, with its charts), the charts' geometry and the runs read from artifacts."""

from __future__ import annotations

import datetime
import json
import re
from html.parser import HTMLParser

from cozyops.status import collect, html, report
from cozyops.status.report import CertState, DnsDrift, InstanceState, Report, RunState, ServerState

NOW = datetime.datetime(2026, 12, 5, 12, 0, tzinfo=datetime.UTC)


def cert(name: str, days_left: float | None, lifetime: int = 90) -> CertState:
    if days_left is None:
        return CertState(name, [name, f"*.{name}"], "missing")
    end = NOW + datetime.timedelta(days=days_left)
    start = end - datetime.timedelta(days=lifetime)
    return CertState(name, [name, f"*.{name}"], "valid" if days_left > 30 else "due",
                     report.iso(start), report.iso(end), days_left, report.iso(start + datetime.timedelta(days=60)))


def sample() -> Report:
    disk = {"path": "/var/lib/cozy", "size": 10 * 2**30, "used": 4 * 2**30, "available": 6 * 2**30}
    return Report(
        "lab-x", "lab.example", report.iso(NOW),
        servers=[ServerState("h1", True, "", "OK", "1.6.41", "1.6.41", 2, disk),
                 ServerState("h2", False, "h2: SSH: connection refused")],
        instances=[InstanceState("alice.lab.example", "h1", "ready", True, 2**30, 2**29),
                   InstanceState("bob.lab.example", "h1", "onboarding", True, None, 1024),
                   InstanceState("eve.lab.example", "h1", "unknown", False),
                   InstanceState("carol.lab.example", "h2", "unreachable")],
        certificates=[cert("alice.lab.example", 80.5), cert("bob.lab.example", 3.2), cert("carol.lab.example", None)],
        dns=DnsDrift(True, "", [{"action": "create", "name": "carol.lab.example.", "type": "A"}]),
        runs=[RunState("20261205T110000Z-abcdef", "upgrade", "2026-12-05T11:00:00+00:00", "failed", ["h1", "h2"],
                       "h1: instances: 1 before the upgrade, 0 after"),
              RunState("20261204T110000Z-abcdef", "provision", "2026-12-04T11:00:00+00:00", "successful", ["h1"])],
    )


def test_days_left_bands():
    table = [(None, "missing"), (-1, "expired"), (0.5, "critical"), (6.9, "critical"), (7, "soon"), (29.9, "soon"),
             (30, "fine"), (89, "fine")]
    for days, expected in table:
        assert report.band(days) == expected, days


def test_the_report_as_json():
    data = json.loads(json.dumps(sample().to_json()))
    assert data["ok"] is False
    assert data["summary"] == {
        "servers": 2, "servers_healthy": 1,
        "instances": {"ready": 1, "onboarding": 1, "blocked": 0, "missing": 0, "unknown": 1, "unreachable": 1},
        "certificates": {"expired": 0, "critical": 1, "soon": 0, "fine": 1, "missing": 1},
        "dns_changes": 1, "last_run_ok": False,
    }
    assert data["servers"][0]["healthy"] and not data["servers"][1]["healthy"]
    assert data["instances"][0]["quota_use"] == 0.5 and data["instances"][1]["quota_use"] is None
    assert [c["band"] for c in data["certificates"]] == ["fine", "critical", "missing"]
    assert data["dns"]["drifted"] and data["runs"][0]["ok"] is False


def test_a_fleet_in_good_shape_is_ok():
    good = sample()
    good.servers = good.servers[:1]
    good.instances = good.instances[:2]
    good.certificates = [cert("alice.lab.example", 80.5), cert("bob.lab.example", 50)]
    good.dns = DnsDrift(True)
    good.runs = good.runs[1:]
    assert good.ok
    good.dns = DnsDrift(False, "timed out")
    assert not good.ok


LINE = re.compile(r'^([a-z_]+)\{((?:[a-z_]+="(?:[^"\\]|\\.)*",?)*)\} (-?[0-9.e+]+)$')


def test_node_exporter_metrics():
    text = report.prometheus(sample())
    samples = {}
    for line in text.splitlines():
        if line.startswith("# "):
            assert re.match(r"^# (HELP|TYPE) cozyops_[a-z_]+ .+$", line), line
            continue
        match = LINE.match(line)
        assert match, line
        samples[(match[1], match[2])] = float(match[3])
    assert samples[("cozyops_server_up", 'fleet="lab-x",server="h1"')] == 1
    assert samples[("cozyops_server_up", 'fleet="lab-x",server="h2"')] == 0
    assert samples[("cozyops_server_instances", 'fleet="lab-x",server="h1"')] == 2
    assert samples[("cozyops_instances", 'fleet="lab-x",state="unreachable"')] == 1
    expiry = (NOW + datetime.timedelta(days=3.2)).timestamp()
    assert samples[("cozyops_certificate_expiry_timestamp_seconds",
                    'fleet="lab-x",certificate="bob.lab.example"')] == expiry
    assert samples[("cozyops_certificate_days_left", 'fleet="lab-x",certificate="bob.lab.example"')] == 3.2
    assert samples[("cozyops_certificates_missing", 'fleet="lab-x"')] == 1
    assert samples[("cozyops_dns_drift_records", 'fleet="lab-x"')] == 1
    assert samples[("cozyops_last_run_success", 'fleet="lab-x",kind="upgrade"')] == 0
    assert samples[("cozyops_last_run_success", 'fleet="lab-x",kind="provision"')] == 1
    assert text.endswith("\n") and text.count("# TYPE cozyops_server_up gauge") == 1


def test_metric_labels_are_escaped():
    odd = Report('we"ird\\fleet', "z", report.iso(NOW), servers=[ServerState("h\n1", False, "x")])
    assert 'cozyops_server_up{fleet="we\\"ird\\\\fleet",server="h\\n1"} 0' in report.prometheus(odd)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags, self.external, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for key, value in attrs:
            if key in ("src", "href") or (key == "style" and "url(" in (value or "")):
                self.external.append((tag, key, value))

    def handle_data(self, data):
        self.text.append(data)


def test_the_page_is_self_contained_and_shows_the_fleet():
    page = html.render(sample())
    parser = _Page()
    parser.feed(page)
    assert parser.external == []  # no links, scripts, images or fonts from elsewhere
    assert "script" not in parser.tags and parser.tags.count("svg") == 2
    text = " ".join(parser.text)
    for seen in ("h1", "h2", "alice.lab.example", "carol.lab.example", "unreachable", "needs attention",
                 "carol.lab.example.", "1 before the upgrade"):
        assert seen in text, seen
    assert 'aria-label="certificate expiry over time"' in page and 'aria-label="instances per server"' in page
    assert "<script" not in page and "@import" not in page


def test_the_page_escapes_what_it_shows():
    odd = sample()
    odd.servers[1].error = "<script>alert(1)</script>"
    page = html.render(odd)
    assert "<script>alert" not in page and "&lt;script&gt;" in page


def test_the_certificate_chart():
    chart = report.cert_timeline(sample().certificates, NOW)
    assert [b.label for b in chart.bars] == ["bob.lab.example", "alice.lab.example"]  # soonest expiry first
    assert [b.css for b in chart.bars] == ["band-critical", "band-fine"]
    assert chart.marker is not None and chart.marker[1] == "now"
    now_x = chart.marker[0]
    for bar in chart.bars:
        assert bar.x < now_x < bar.x + bar.width  # both issued before now, expiring after
        assert 0 <= bar.x and bar.x + bar.width <= chart.width
    assert chart.ticks and all(0 <= x <= chart.width for x, _ in chart.ticks)
    assert report.cert_timeline([], NOW).bars == []


def test_the_instances_per_server_chart():
    chart = report.instances_per_server(sample())
    h1 = [b for b in chart.bars if b.label == "h1"]
    assert [b.css for b in h1] == ["state-ready", "state-onboarding", "state-unknown"]
    assert [b.show_label for b in h1] == [True, False, False] and [b.show_value for b in h1] == [False, False, True]
    assert h1[-1].value == "3" and abs(h1[1].x - (h1[0].x + h1[0].width)) < 0.01
    empty = Report("f", "z", report.iso(NOW), servers=[ServerState("h9", True, "", "OK")])
    (bar,) = report.instances_per_server(empty).bars
    assert bar.css == "state-none" and bar.value == "0"


def test_runs_read_from_ansible_runners_artifacts(tmp_path):
    for run_id, playbook, status in (("20261204T100000Z-aaaaaa", "site.yml", "successful"),
                                     ("20261205T100000Z-bbbbbb", "upgrade.yml", "failed")):
        folder = tmp_path / run_id
        folder.mkdir()
        (folder / "status").write_text(status)
        (folder / "command").write_text(json.dumps({"command": ["ansible-playbook", "-i", "hosts.yml", "--limit",
                                                                "h1,h2", playbook]}))
    (tmp_path / "20261205T110000Z-cccccc").mkdir()  # killed before its end: no status file
    runs = collect.playbook_runs(tmp_path)
    assert [(r.kind, r.outcome, r.hosts) for r in runs] == [
        ("ansible", "running or interrupted", []), ("upgrade", "failed", ["h1", "h2"]),
        ("provision", "successful", ["h1", "h2"])]
    assert runs[1].at == "2026-12-05T10:00:00+00:00"
    assert collect.playbook_runs(tmp_path / "absent") == []


def test_runs_read_from_the_journal(tmp_path):
    from cozyops import state

    journal = state.Journal(tmp_path)
    journal.record("upgrade", "h1 h2", "failed", 2, "h1: instances: 1 before the upgrade, 0 after",
                   {"batch": 1, "run": "20261205T100000Z-bbbbbb"})
    journal.record("dns-batch", "zone lab.example", "ok", 12)
    journal.close()
    newest, oldest = collect.journal_runs(tmp_path)
    assert (newest.kind, newest.outcome, newest.hosts, newest.detail) == ("dns-batch", "ok", [], "zone lab.example")
    assert (oldest.id, oldest.kind, oldest.ok) == ("20261205T100000Z-bbbbbb", "upgrade", False)
    assert oldest.hosts == ["h1", "h2"]
    assert oldest.detail.startswith("h1: instances") and report.parse_iso(oldest.at).tzinfo is not None
    assert collect.journal_runs(tmp_path / "none") == []
