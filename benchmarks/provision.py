#!/usr/bin/env python3
"""Benchmark: provisioning 4 fresh lab hosts with forks 4 against forks 1.

Run as root, in a checkout, after `./dev venv` and `cozyops lab setup`:

    sudo .venv/bin/python benchmarks/provision.py [--hosts 4]

In one run, on a lab of its own (brought up in a temporary directory and purged at the end), with
8 hosts: ``cozyops server provision --forks 1`` of h1..h4, then ``--forks 4`` of h5..h8 (fresh
hosts both times), then a second run of h5..h8 (nothing to change). Prints both times, their
ratio, the time per host of the second run and the machine's core count. Target (issue 15): at
least 1.6x on a 2-core machine (the hosts share its cores).
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


def provision(lab: Lab, hosts: list[str], forks: int) -> tuple[float, dict]:
    argv = [sys.executable, "-m", "cozyops", "lab", "exec", "--dir", str(lab.dir), "--",
            sys.executable, "-m", "cozyops", "server", "provision", "--fleet", str(lab.fleet_dir),
            "--forks", str(forks), "--json", *hosts]
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"server provision --forks {forks} failed:\n{result.stderr[-3000:]}")
    return seconds, json.loads(result.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=4, help="hosts per measurement (default 4)")
    args = parser.parse_args()
    count = args.hosts
    with tempfile.TemporaryDirectory(prefix="cozyops-bench-provision-") as scratch:
        lab = Lab.open(f"bp{os.getpid() % 10000}", Path(scratch) / "lab")
        try:
            started = time.monotonic()
            lab.up(hosts_wanted=2 * count)
            print(f"lab with {2 * count} hosts up in {time.monotonic() - started:.1f} s", flush=True)
            serial_hosts = [f"h{i}" for i in range(1, count + 1)]
            parallel_hosts = [f"h{i}" for i in range(count + 1, 2 * count + 1)]
            serial, _ = provision(lab, serial_hosts, 1)
            print(f"forks 1: {count} fresh hosts in {serial:.1f} s", flush=True)
            parallel, _ = provision(lab, parallel_hosts, count)
            print(f"forks {count}: {count} fresh hosts in {parallel:.1f} s", flush=True)
            again, summary = provision(lab, parallel_hosts, count)
            changed = sum(host["changed"] for host in summary["hosts"].values())
            print(f"second run (forks {count}): {again:.1f} s, {again / count:.1f} s per host, {changed} changed")
            print(f"ratio forks 1 / forks {count}: {serial / parallel:.2f}x on {os.cpu_count()} cores "
                  f"(target 1.6x)")
        finally:
            lab.down(purge=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
