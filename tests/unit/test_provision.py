"""The pure parts of provisioning: runner events to results, the summary, the runs' retention."""

from __future__ import annotations

from cozyops.servers import provision as prov


def event(kind: str, host: str = "h1", task: str = "Install nginx", **res) -> dict:
    return {"event": kind, "event_data": {"host": host, "task": task, "res": res}}


def test_events_become_task_results():
    table = [
        (event("runner_on_ok"), ("h1", "Install nginx", "ok", "")),
        (event("runner_on_ok", changed=True), ("h1", "Install nginx", "changed", "")),
        (event("runner_on_failed", msg="No package matching 'couchdb' is available"),
         ("h1", "Install nginx", "failed", "No package matching 'couchdb' is available")),
        (event("runner_on_unreachable", msg="Failed to connect to the host via ssh"),
         ("h1", "Install nginx", "unreachable", "Failed to connect to the host via ssh")),
        (event("runner_on_failed", censored="the output has been hidden"),
         ("h1", "Install nginx", "failed", "the output has been hidden")),
        (event("runner_on_failed", results=[{"failed": False}, {"failed": True, "msg": "item 2 broke"}]),
         ("h1", "Install nginx", "failed", "item 2 broke")),
        (event("runner_on_skipped"), ("h1", "Install nginx", "skipped", "")),
    ]
    for raw, (host, task, status, message) in table:
        assert prov.task_result(raw) == prov.TaskResult(host, task, status, message), raw
    assert prov.task_result({"event": "playbook_on_task_start", "event_data": {"task": "x"}}) is None
    ignored = {"event": "runner_on_failed", "event_data": {"host": "h1", "task": "t", "ignore_errors": True, "res": {}}}
    assert prov.task_result(ignored).status == "ok"


def test_summary_counts_from_stats_and_failures_from_events():
    stats = {"ok": {"h1": 20, "h2": 3}, "changed": {"h1": 4}, "failures": {"h2": 1}, "dark": {}, "skipped": {"h1": 2}}
    failure = prov.TaskResult("h2", "Install couchdb", "failed", "boom")
    summary = prov.summarize(stats, [prov.TaskResult("h1", "x", "ok"), failure], ["h1", "h2", "h3"])
    assert summary["h1"].to_json() == {"ok": 20, "changed": 4, "failed": 0, "unreachable": 0}
    assert summary["h2"].to_json() == {"ok": 3, "changed": 0, "failed": 1, "unreachable": 0}
    assert summary["h2"].failures == [failure]
    assert summary["h3"].to_json() == {"ok": 0, "changed": 0, "failed": 0, "unreachable": 0}
    result = prov.ProvisionResult("r1", summary, None, 1.0, "failed")
    assert result.failed
    assert result.to_json()["hosts"]["h1"]["changed"] == 4 and result.to_json()["run"] == "r1"
    assert not prov.ProvisionResult("r2", {"h1": summary["h1"]}, None, 1.0, "successful").failed


def test_runs_beyond_the_retention_are_removed(tmp_path):
    names = [f"20261204T1500{second:02d}Z-abc" for second in range(5)]
    for name in names:
        (tmp_path / name).mkdir()
    removed = prov.prune_runs(tmp_path, 2)
    assert sorted(p.name for p in removed) == names[:3]
    assert sorted(p.name for p in tmp_path.iterdir()) == names[3:]
    assert prov.prune_runs(tmp_path / "absent", 2) == []
