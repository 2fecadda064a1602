"""`cert issue` and `cert renew` killed with SIGKILL at several points, against a pebble of the
test's own (its log counts every certificate the CA issued) validating through the lab's BIND:
the next run leaves no challenge value in the zone (BIND and Knot asked), issues every
certificate, its rows match its files, and the budget counts exactly what the CA issued."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

from tests.integration.test_tls import tag, txt_values, write_fleet
from tests.integration.test_tls_ca import OwnPebble

pytestmark = pytest.mark.lab


@pytest.fixture
def pebble(lab, tmp_path):
    own = OwnPebble(lab, tmp_path / "pebble", nonce_reject=0)
    own.start()
    try:
        yield own
    finally:
        own.stop()


def cozyops(lab, fleet: Path, *args: str) -> subprocess.Popen:
    """``cozyops cert ARGS`` inside the lab's namespace (``ip netns exec`` execs it: the PID is cozyops')."""
    return subprocess.Popen(
        ["ip", "netns", "exec", lab.spec.netns, sys.executable, "-m", "cozyops", "cert", *args, "--json",
         "--fleet", str(fleet)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def finish(process: subprocess.Popen, timeout: float = 180) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def kill_when(process: subprocess.Popen, condition: Callable[[], bool], timeout: float = 120) -> None:
    """SIGKILL the run as soon as ``condition`` holds (polled every 5 ms)."""
    end = time.monotonic() + timeout
    try:
        while not condition():
            assert process.poll() is None, "the run ended before the kill point: " + process.stderr.read()[-2000:]
            assert time.monotonic() < end, "the kill point never came"
            time.sleep(0.005)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)


def db_rows(fleet: Path, query: str) -> list[tuple]:
    path = fleet / ".cozyops/state.db"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute(query).fetchall()
    except sqlite3.OperationalError:  # the table is not there yet
        return []
    finally:
        db.close()


def file_serials(fleet: Path) -> dict[str, str]:
    found = {}
    for path in sorted((fleet / ".cozyops/certs").glob("*/fullchain.pem")):
        found[path.parent.name] = f"{x509.load_pem_x509_certificate(path.read_bytes()).serial_number:x}"
    return found


def ca_issued(pebble: OwnPebble) -> int:
    """Certificates the CA issued: pebble logs each one."""
    return (pebble.root / "pebble.log").read_text().count("Issued certificate serial")


def stale_values(lab, domains: list[str]) -> dict[str, list[str]]:
    found = {}
    for domain in domains:
        values = txt_values(lab, f"_acme-challenge.{domain}")  # (Knot, secondary, given time to follow)
        if values:
            found[domain] = values
    return found


def served_values(lab, domains: list[str]) -> dict[str, list[str]]:
    """Challenge values BIND serves now (no waiting for them to go)."""
    import dns.message
    import dns.query

    from tests.integration.test_tls import inside

    def ask():
        found = {}
        for domain in domains:
            response = dns.query.udp(dns.message.make_query(f"_acme-challenge.{domain}", "TXT"),
                                     lab.spec.bind_address, timeout=2)
            values = [rdata.to_text() for rrset in response.answer for rdata in rrset]
            if values:
                found[domain] = values
        return found

    return inside(lab, ask)


def check_after_the_next_run(lab, pebble: OwnPebble, fleet: Path, domains: list[str], label: str) -> None:
    code, out, err = finish(cozyops(lab, fleet, "issue"))
    assert code == 0, f"{label}: {err}"
    assert json.loads(out)["failed"] == {}
    assert stale_values(lab, domains) == {}, f"{label}: challenge values left in the zone"
    assert db_rows(fleet, "SELECT COUNT(*) FROM challenges") == [(0,)]
    code, out, err = finish(cozyops(lab, fleet, "ls"))
    assert code == 0, err
    listing = {row["name"]: row for row in json.loads(out)}
    assert sorted(listing) == sorted(domains) and {row["status"] for row in listing.values()} == {"valid"}
    files = file_serials(fleet)
    rows = dict(db_rows(fleet, "SELECT name, serial FROM certificates"))
    assert rows == files, f"{label}: rows do not match files"
    assert {name: row["serial"] for name, row in listing.items()} == files
    issuances = db_rows(fleet, "SELECT COUNT(*) FROM issuances")[0][0]
    assert issuances == ca_issued(pebble), f"{label}: the budget counts {issuances}, the CA issued {ca_issued(pebble)}"


def test_cert_issue_killed_at_four_points_then_the_next_run_cleans_up_and_issues_everything(lab, tmp_path, pebble):
    t = tag()
    domains = [f"k{i}{t}.{lab.spec.zone}" for i in range(6)]
    fleet = write_fleet(tmp_path / "fleet", lab, domains, acme={
        "directory": pebble.directory, "ca_bundle": str(pebble.ca_bundle), "concurrency": 1})

    # 1. right after the values are journaled, before or while they are sent
    run = cozyops(lab, fleet, "issue")
    kill_when(run, lambda: bool(db_rows(fleet, "SELECT 1 FROM challenges LIMIT 1")))
    assert db_rows(fleet, "SELECT COUNT(*) FROM challenges")[0][0] == 2 * len(domains)
    check_after_the_next_run(lab, pebble, fleet, domains, "killed after journaling")

    # 2. while the CA validates: the values are in the zone when the run dies
    run = cozyops(lab, fleet, "issue", "--force")
    kill_when(run, lambda: bool(served_values(lab, domains[:1])))
    assert served_values(lab, domains), "the kill point is meant to leave values in the zone"
    check_after_the_next_run(lab, pebble, fleet, domains, "killed while validating")

    # 3. mid-chunk: some certificates of the chunk written, the others not yet
    before = file_serials(fleet)
    run = cozyops(lab, fleet, "issue", "--force")
    kill_when(run, lambda: 0 < sum(serial != before.get(name) for name, serial in file_serials(fleet).items()))
    changed = [name for name, serial in file_serials(fleet).items() if serial != before[name]]
    assert 0 < len(changed) < len(domains), f"not mid-chunk: {len(changed)} of {len(domains)} written"
    rows = dict(db_rows(fleet, "SELECT name, serial FROM certificates"))
    code, out, _ = finish(cozyops(lab, fleet, "ls"))  # cert ls never shows a replaced serial
    assert {row["name"]: row["serial"] for row in json.loads(out)} == file_serials(fleet)
    assert sum(rows[name] != before[name] for name in changed) >= len(changed) - 1  # at most one row behind
    check_after_the_next_run(lab, pebble, fleet, domains, "killed mid-chunk")

    # 4. an interrupted renewal: killed as its new files are moved into place
    victim = domains[2]
    db = sqlite3.connect(fleet / ".cozyops/state.db")
    with db:
        db.execute("UPDATE certificates SET not_after = ?, ari_start = NULL WHERE name = ?",
                   ("2000-01-01T00:00:00+00:00", victim))
    db.close()
    old = file_serials(fleet)[victim]
    run = cozyops(lab, fleet, "renew")
    kill_when(run, lambda: (fleet / ".cozyops/certs" / victim / "privkey.pem.next").exists()
              or file_serials(fleet)[victim] != old)
    code, out, err = finish(cozyops(lab, fleet, "ls"))
    assert code == 0, err
    row = next(row for row in json.loads(out) if row["name"] == victim)
    assert row["serial"] == file_serials(fleet)[victim]
    check_after_the_next_run(lab, pebble, fleet, domains, "killed renewing")
