#!/usr/bin/env python3
"""Benchmark: DNS records for a fleet, cozyops against one `nsupdate` process per record.

Run as root, in a checkout, after `./dev venv` (or `sudo ./dev test` once) and `cozyops lab setup`:

    sudo .venv/bin/python benchmarks/dns_apply.py [--instances 10000] [--nsupdate 300] [--plan 100000]

In one run, on a lab of its own (brought up in a temporary directory and purged at the end):

1. nsupdate: one process per record, TSIG-signed, to the lab's BIND, for a sample of
   ``--nsupdate`` A records in a row: the per-record cost (mean, median, 90th percentile);
2. cozyops: ``cozyops dns apply --yes --no-wait`` (the command line, wall clock, process start
   included) for a fleet directory of ``--instances`` nested instances on a server with IPv4 and
   IPv6, CAA for Let's Encrypt: A and AAAA at ``alice`` and ``*.alice``, two CAA values; per
   record cost and the ratio to nsupdate's median per record. Records counted are the DNS records the instances
   need; the ownership marks cozyops writes beside them are not counted;
3. the second apply (nothing to change: the zone is read back by AXFR and planned), and the time
   until Knot, the secondary, serves the new serial;
3b. the same ``--instances`` through PowerDNS's HTTP API (the powerdns provider: RRset PATCHes of
   1,000 record sets) into the lab's third zone, PowerDNS's: end to end and per record, beside
   RFC 2136 into BIND, and the time until BIND and Knot (its secondaries) serve the new serial;
4. planning ``--plan`` instances, in memory: desired records, then the plan against a zone
   already holding them all with 1 % of the instances moved (the checksum included), median of
   three runs; loading the same fleet from its YAML files is timed apart.

Targets (issue 5): cozyops at least 300x nsupdate's per-record throughput end to end (plan and
apply), and the plan of 100,000 instances under 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from cozyops import files, inventory  # noqa: E402
from cozyops.dns import planner, records, tsig  # noqa: E402
from cozyops.dns.plan import DELETE  # noqa: E402
from cozyops.lab import netns, probe  # noqa: E402
from cozyops.lab.lab import Lab  # noqa: E402
from cozyops.model import (  # noqa: E402
    AcmeSettings,
    DnsProviderKind,
    DnsSettings,
    Fleet,
    Instance,
    Server,
    SubdomainMode,
)

TARGET_RATIO = 300
TARGET_PLAN_SECONDS = 2.0
TARGET_PROCESS_SECONDS = 5.0  # issue 16: `cozyops dns plan` of 100,000 instances, first run, as a process


def plan_process(count: int, workdir: Path, lab: Lab, env: dict) -> tuple[float, float]:
    """`cozyops dns plan` on a fleet of ``count`` instances as a whole process, its first run
    (instances.yml parsed, no cache), with the manual provider: no zone to read, so the figure is
    start-up, loading, the desired records, the plan and its output (issue 16: under 5 s at 100,000)."""
    root = write_fleet(workdir / "fleet-process", lab, count, provider="manual")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cozyops", "dns", "plan", "--fleet", str(root)], env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def write_fleet(root: Path, lab: Lab, count: int, provider: str = "rfc2136") -> Path:
    (root / "group_vars").mkdir(parents=True)
    tsig.write(root / "secrets/tsig.key", lab.key())
    zone = lab.spec.zone
    dns_settings = {"provider": "rfc2136", "server": lab.spec.bind_address, "tsig_key_file": "secrets/tsig.key"}
    if provider == "manual":
        dns_settings = {"provider": "manual"}
    if provider == "powerdns":
        zone = lab.spec.zone3
        files.write_private(root / "secrets/powerdns-api.key", lab.powerdns_api_key() + "\n")
        dns_settings = {"provider": "powerdns", "api_url": lab.spec.powerdns_api,
                        "api_key_file": "secrets/powerdns-api.key"}
    group_vars = {
        "cozy_fleet_name": "bench",
        "cozy_zone": zone,
        "cozy_subdomains": "nested",
        "cozy_dns": {**dns_settings, "ttl": 300, "unsafe_changes": 10**9},
        "cozy_acme": {"directory": "letsencrypt"},
    }
    (root / "group_vars/all.yml").write_text(yaml.safe_dump(group_vars))
    hosts = {"all": {"hosts": {"h1": {"ansible_host": "192.0.2.10", "cozy_public_ipv6": "2001:db8::10"}}}}
    (root / "hosts.yml").write_text(yaml.safe_dump(hosts))
    lines = ["instances:"]
    lines += [f"  - {{domain: i{i:06d}.{zone}, server: h1, apps: [home, drive, photos, settings, store]}}"
              for i in range(count)]
    (root / "instances.yml").write_text("\n".join(lines) + "\n")
    return root


def nsupdate_sample(lab: Lab, count: int, workdir: Path) -> list[float]:
    """Seconds per record, one nsupdate process per record, run from inside the lab's namespace."""
    scripts = []
    for i in range(count):
        path = workdir / f"ns{i}.txt"
        path.write_text(f"server {lab.spec.bind_address}\nzone {lab.spec.zone}\n"
                        f"update add nsu{i}.{lab.spec.zone}. 300 A 192.0.2.20\nsend\n")
        scripts.append(path)

    def run() -> list[float]:
        times = []
        for path in scripts:
            started = time.perf_counter()
            subprocess.run(["nsupdate", "-k", str(lab.key_file), str(path)], check=True)
            times.append(time.perf_counter() - started)
        return times

    return netns.inside(lab.spec.netns, run)


def cozyops_apply(lab: Lab, fleet: Path, env: dict) -> tuple[float, dict]:
    argv = [sys.executable, "-m", "cozyops", "dns", "apply", "--yes", "--no-wait", "--json", "--fleet", str(fleet)]

    def run() -> tuple[float, dict]:
        started = time.perf_counter()
        result = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"cozyops dns apply failed ({result.returncode}): {result.stderr.strip()}")
        return seconds, json.loads(result.stdout)

    return netns.inside(lab.spec.netns, run)


def catch_up(lab: Lab, zone: str, primary: str, secondaries: list[str]) -> float:
    """Seconds until every secondary serves the primary's serial of ``zone``."""
    def wait() -> float:
        started = time.perf_counter()
        target = probe.soa_serial(primary, zone, tcp=True)
        for secondary in secondaries:
            while probe.soa_serial(secondary, zone, tcp=True) < target:
                if time.perf_counter() - started > 120:
                    raise SystemExit(f"{secondary} did not catch up within 120 s")
                time.sleep(0.02)
        return time.perf_counter() - started

    return netns.inside(lab.spec.netns, wait)


def plan_in_memory(count: int) -> dict[str, float]:
    """Desired records and the plan for ``count`` instances, against a zone that holds them."""
    servers = {"h1": Server("h1", "192.0.2.10", "2001:db8::10"), "h2": Server("h2", "192.0.2.11")}
    instances = tuple(Instance(f"i{i:06d}.example.org", "h1") for i in range(count))
    settings = DnsSettings(DnsProviderKind.RFC2136)
    fleet = Fleet("bench", Path("/nowhere"), "example.org", SubdomainMode.NESTED, settings,
                  AcmeSettings("https://ca", caa=("letsencrypt.org",)), servers, instances)
    # The zone as AXFR would return it after the fleet was applied (not timed).
    applied = planner.plan_dns("bench", "example.org", "rfc2136", records.desired(fleet), {})
    observed = {(c.name, c.rtype): records.RRset(c.name, c.rtype, c.ttl, c.values) for c in applied.changes}
    marks = records.mark_index(observed)  # built by the reader as it parses the transfer
    # 1 % of the instances moved to h2.
    moved = tuple(instance if i % 100 else Instance(instance.domain, "h2") for i, instance in enumerate(instances))
    fleet = Fleet(fleet.name, fleet.root, fleet.zone, fleet.subdomains, settings, fleet.acme, servers, moved)
    started, cpu = time.perf_counter(), time.process_time()
    desired = records.desired(fleet)
    after_desired = time.perf_counter()
    plan = planner.plan_dns("bench", "example.org", "rfc2136", desired, observed, marks_index=marks)
    checksum = plan.checksum
    done = time.perf_counter()
    assert checksum and plan.counts()["update"] == count // 100 * 2 and plan.counts()[DELETE] == count // 100 * 2
    return {"desired": after_desired - started, "plan": done - after_desired, "total": done - started,
            "cpu": time.process_time() - cpu,
            "records": sum(len(r.values) for r in desired), "changes": len(plan.changes)}


def load_fleet_files(count: int, workdir: Path, lab: Lab) -> tuple[float, float]:
    """Seconds to load the fleet directory: parsing instances.yml, then from its cache."""
    root = write_fleet(workdir / "fleet-load", lab, count)
    times = []
    for _ in range(2):
        started = time.perf_counter()
        fleet = inventory.load(root)
        times.append(time.perf_counter() - started)
        assert len(fleet.instances) == count
    return times[0], times[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=10_000, help="nested instances applied (default 10000)")
    parser.add_argument("--nsupdate", type=int, default=300, help="records in the nsupdate sample (default 300)")
    parser.add_argument("--plan", type=int, default=100_000, help="instances planned in memory (default 100000)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the benchmark brings up a lab: run it as root", file=sys.stderr)
        return 1

    workdir = Path(tempfile.mkdtemp(prefix="cozyops-bench-"))
    env = {**os.environ, "XDG_STATE_HOME": str(workdir / "state"), "XDG_CACHE_HOME": str(workdir / "cache")}
    os.environ.update({key: env[key] for key in ("XDG_STATE_HOME", "XDG_CACHE_HOME")})
    lab = Lab.open(f"bench{secrets.token_hex(2)}", workdir / "lab")
    try:
        print(f"lab {lab.spec.id}: BIND {lab.spec.bind_address} (primary of {lab.spec.zone}), "
              f"Knot {lab.spec.knot_address} (secondary)", flush=True)
        lab.up(hosts_wanted=0)  # DNS only: no hosts to boot (their root filesystem is not in this cache)
        per_record = nsupdate_sample(lab, args.nsupdate, workdir)
        mean = statistics.fmean(per_record)
        median = statistics.median(per_record)
        p90 = statistics.quantiles(per_record, n=10)[-1]
        print(f"nsupdate, one process per record, {len(per_record)} records: mean {mean * 1000:.1f} ms, "
              f"median {median * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms per record "
              f"({1 / mean:.0f} records/s)", flush=True)

        fleet = write_fleet(workdir / "fleet", lab, args.instances)
        assert not (fleet / ".cozyops").exists()  # the apply parses instances.yml: no cache yet
        seconds, report = cozyops_apply(lab, fleet, env)
        wanted = sum(len(r.values) for r in records.desired(inventory.load(fleet)))
        assert report["summary"]["create"] > 0 and not report["failed"], report
        cost = seconds / wanted
        ratio = median / cost  # the median: steadier than the mean when a neighbour takes the CPU
        print(f"cozyops dns apply, {args.instances} nested instances, {wanted} records "
              f"({report['batches']} UPDATE messages): {seconds:.2f} s end to end (process start, fleet "
              f"loading, AXFR, plan, apply; the apply alone {report['seconds']['apply']:.2f} s)", flush=True)
        print(f"  {wanted / seconds:.0f} records/s, {cost * 1e6:.1f} us per record", flush=True)
        print(f"  ratio to nsupdate's median per record: {ratio:.0f}x (to its mean: {mean / cost:.0f}x; target >= "
              f"{TARGET_RATIO}x)", flush=True)
        knot = catch_up(lab, lab.spec.zone, lab.spec.bind_address, [lab.spec.knot_address])
        print(f"  Knot (secondary) serves the new serial {knot:.2f} s after the apply returned", flush=True)
        again, second = cozyops_apply(lab, fleet, env)
        assert second["summary"] == {"create": 0, "update": 0, "delete": 0, "conflicts": 0}, second
        print(f"second apply (no change: instances.yml from its cache, AXFR of the zone, plan): {again:.2f} s",
              flush=True)

        powerdns_fleet = write_fleet(workdir / "fleet-powerdns", lab, args.instances, "powerdns")
        api_seconds, api_report = cozyops_apply(lab, powerdns_fleet, env)
        assert api_report["summary"]["create"] > 0 and not api_report["failed"], api_report
        api_cost = api_seconds / wanted
        print(f"cozyops dns apply through PowerDNS's HTTP API, the same {args.instances} instances and {wanted} "
              f"records ({api_report['batches']} PATCH requests): {api_seconds:.2f} s end to end (the apply alone "
              f"{api_report['seconds']['apply']:.2f} s)", flush=True)
        print(f"  {wanted / api_seconds:.0f} records/s, {api_cost * 1e6:.1f} us per record; RFC 2136 into BIND: "
              f"{cost * 1e6:.1f} us per record ({api_cost / cost:.1f}x as long through the API); "
              f"{median / api_cost:.0f}x nsupdate's median per record", flush=True)
        secondaries = catch_up(lab, lab.spec.zone3, lab.spec.powerdns_address,
                               [lab.spec.bind_address, lab.spec.knot_address])
        print(f"  BIND and Knot (PowerDNS's secondaries) serve the new serial {secondaries:.2f} s after the apply "
              "returned", flush=True)
        api_again, api_second = cozyops_apply(lab, powerdns_fleet, env)
        assert api_second["summary"] == {"create": 0, "update": 0, "delete": 0, "conflicts": 0}, api_second
        print(f"  second apply through the API (no change: the zone read by GET, plan): {api_again:.2f} s", flush=True)

        load = load_fleet_files(args.plan, workdir, lab)
        process = plan_process(args.plan, workdir, lab, env)
        runs = sorted((plan_in_memory(args.plan) for _ in range(3)), key=lambda run: run["total"])
        planned = runs[1]  # the median of three runs: the machine has two cores, and neighbours
        print(f"plan of {args.plan} instances ({planned['records']} records, {planned['changes']} changes for 1 % "
              f"moved): {planned['total']:.2f} s, median of 3 runs (min {runs[0]['total']:.2f} s, max "
              f"{runs[2]['total']:.2f} s; CPU {planned['cpu']:.2f} s; desired records {planned['desired']:.2f} s, "
              f"diff and checksum {planned['plan']:.2f} s; target < {TARGET_PLAN_SECONDS:g} s)", flush=True)
        print(f"  loading the same fleet from its files: {load[0]:.2f} s parsing instances.yml, {load[1]:.2f} s "
              "from its cache (the next runs)", flush=True)
        print(f"  `cozyops dns plan` of the same fleet as a process, first run (parsing included; manual "
              f"provider: no zone to read): {process[0]:.2f} s wall, {process[1]:.2f} s of CPU (target < "
              f"{TARGET_PROCESS_SECONDS:g} s; load {os.getloadavg()[0]:.2f})", flush=True)
        # The per-record ratio's target is for a big apply (--instances 10000): with a few hundred
        # instances, the process's fixed cost dominates it.
        process_ok = process[0] < TARGET_PROCESS_SECONDS
        ok = ratio >= TARGET_RATIO and planned["total"] < TARGET_PLAN_SECONDS and process_ok
        print(f"targets: {'met' if ok else 'NOT met'} (ratio {ratio:.0f}x >= {TARGET_RATIO}x: "
              f"{ratio >= TARGET_RATIO}; plan {planned['total']:.2f} s < {TARGET_PLAN_SECONDS:g} s: "
              f"{planned['total'] < TARGET_PLAN_SECONDS}; process {process[0]:.2f} s < {TARGET_PROCESS_SECONDS:g} s: "
              f"{process_ok})", flush=True)
        return 0 if ok else 1
    finally:
        lab.down(purge=True)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
