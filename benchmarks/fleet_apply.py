#!/usr/bin/env python3
"""Benchmark: 100 instances over 4 lab hosts by one `cozyops apply` against one by one with
`cozy-stack instances add` over SSH (as the deprecated cozy-coclyco did).

Run as root, in a checkout, after `./dev venv` and `cozyops lab setup`:

    sudo .venv/bin/python benchmarks/fleet_apply.py [--instances 100] [--hosts 4]

In one run, on a lab of its own (4 hosts provisioned by `cozyops server provision` through `lab up
--with-stack`, brought up in a temporary directory and purged at the end):

1. a first `cozyops apply --yes` of the fleet without instances (the servers' provisioning inputs
   recorded; not timed);
2. the anchor: N instances ``cN.<zone>`` created one after the other, each by ``ssh hX cozy-stack
   instances add --apps home,drive`` (round robin over the hosts), as coclyco did: no DNS records,
   no certificates, no sites;
3. cozyops: N instances ``iN.<zone>`` (the same apps, round robin) written into instances.yml, then
   one ``cozyops apply --yes``: the instances, their DNS records (RFC 2136 to BIND), one wildcard
   certificate each (nested mode, from the lab's pebble, DNS-01) deployed to their server, and
   their nginx sites;
4. a second ``cozyops apply --yes``: nothing to do.

Prints both times, their ratio (target: at least 3x) and the second apply's time (target: under
10 s), with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from cozyops.lab.lab import Lab  # noqa: E402

APPS = "home,drive"


def cozyops(lab: Lab, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    argv = [sys.executable, "-m", "cozyops", "lab", "exec", "--dir", str(lab.dir), "--",
            sys.executable, "-m", "cozyops", *args, "--fleet", str(lab.fleet_dir)]
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=7200)
    return time.monotonic() - started, result


def anchor(lab: Lab, domains: list[tuple[str, str]]) -> float:
    """One `ssh host cozy-stack instances add` per instance, one after the other."""
    script = "\n".join(
        f"ssh -F {lab.host_files.ssh_config} {host} 'COZY_ADMIN_PASSPHRASE=$(cat /etc/cozy/.cozy-admin-passphrase) "
        f"cozy-stack instances add {domain} --apps {APPS} --email admin@{domain}' >/dev/null || exit 1"
        for domain, host in domains)
    argv = [sys.executable, "-m", "cozyops", "lab", "exec", "--dir", str(lab.dir), "--", "sh", "-c", script]
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=7200)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"cozy-stack instances add over SSH failed:\n{result.stderr[-3000:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--hosts", type=int, default=4)
    args = parser.parse_args()
    count, hosts = args.instances, [f"h{i}" for i in range(1, args.hosts + 1)]
    with tempfile.TemporaryDirectory(prefix="cozyops-bench-fleet-") as scratch:
        lab = Lab.open(f"bf{os.getpid() % 10000}", Path(scratch) / "lab")
        try:
            started = time.monotonic()
            lab.up(hosts_wanted=len(hosts), with_stack=True)
            print(f"lab with {len(hosts)} provisioned hosts up in {time.monotonic() - started:.1f} s", flush=True)
            zone = lab.spec.zone
            seconds, settled = cozyops(lab, "apply", "--yes", "--json")
            if settled.returncode != 0:
                sys.exit(f"first apply failed:\n{settled.stderr[-3000:]}")
            print(f"first apply (no instances; servers checked): {seconds:.1f} s", flush=True)

            coclyco = anchor(lab, [(f"c{n}.{zone}", hosts[n % len(hosts)]) for n in range(count)])
            print(f"anchor: {count} x `cozy-stack instances add` over SSH, one by one: {coclyco:.1f} s "
                  f"({coclyco / count:.2f} s each; instances only)", flush=True)

            lines = ["# the benchmark's instances", "instances:"]
            for n in range(count):
                lines += [f"  - domain: i{n}.{zone}", f"    server: {hosts[n % len(hosts)]}",
                          f"    apps: [{APPS.replace(',', ', ')}]", f"    email: admin@i{n}.{zone}"]
            (lab.fleet_dir / "instances.yml").write_text("\n".join(lines) + "\n")
            ours, applied = cozyops(lab, "apply", "--yes", "--json")
            if applied.returncode != 0:
                sys.exit(f"apply failed:\n{applied.stderr[-3000:]}")
            report = json.loads(applied.stdout)
            print(f"cozyops apply: {count} instances with records, certificates and sites: {ours:.1f} s "
                  f"({len(report['done'])} items done, {len(report['failed'])} failed)", flush=True)
            again, second = cozyops(lab, "apply", "--yes", "--json")
            if second.returncode != 0 or json.loads(second.stdout)["done"]:
                sys.exit(f"second apply did something or failed:\n{second.stderr[-3000:]}")
            load = os.getloadavg()[0]
            print(f"second apply (nothing to do): {again:.1f} s (target < 10 s)")
            print(f"ratio anchor / cozyops apply: {coclyco / ours:.2f}x (target 3x) on {os.cpu_count()} cores, "
                  f"load {load:.1f}")
        finally:
            lab.down(purge=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
