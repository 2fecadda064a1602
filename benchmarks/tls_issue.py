#!/usr/bin/env python3
"""Benchmark: wildcard certificates by cozyops against certbot with certbot-dns-rfc2136.

Run as root, in a checkout, after `./dev venv` (or `sudo ./dev test` once) and `cozyops lab setup`:

    sudo .venv/bin/python benchmarks/tls_issue.py [--many 200] [--single 5] [--loop 20]

certbot and its plugin are pinned in certbot_venv.py (CERTBOT) and installed once, by pip from PyPI, into a
virtual environment of their own (``$XDG_CACHE_HOME/cozyops/bench-certbot``): certbot pins its own
``acme``, which differs from cozyops'. In one run, on a lab of its own (brought up in a temporary
directory and purged at the end), each against the lab's pebble and BIND, timed by the wall clock
from process start:

1. one certificate (``X.ZONE`` + ``*.X.ZONE``), each cozyops run after 1.5 s without changes to
   the zone (see QUIET), against ``certbot certonly --authenticator dns-rfc2136
   --dns-rfc2136-propagation-seconds 0`` with a fresh configuration directory (so an account is
   registered, as cozyops checks its own); ``--single`` runs each, the median; both as processes
   (``cozyops cert issue X.ZONE``, ``certbot certonly ...``) and in process (each tool's modules
   imported first, then the issuance timed: the cozyops library in this interpreter, certbot's
   ``main()`` in an interpreter of certbot's venv), with the import floor of cozyops' libraries;
2. ``--many`` per-instance wildcard certificates: one ``cozyops cert issue`` for a fleet of that
   many nested instances, against a certbot loop (one ``certbot certonly`` per certificate, one
   configuration directory for the loop: the account is registered once) over a sample of
   ``--loop`` certificates; per certificate.

Targets (issue 6): one certificate in at most 0.1x certbot's time; many at least 100x faster per
certificate than the certbot loop.
"""

from __future__ import annotations

import argparse
import json
import os
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

from cozyops import files  # noqa: E402
from cozyops.dns import tsig  # noqa: E402
from cozyops.lab import netns  # noqa: E402
from cozyops.lab.lab import Lab  # noqa: E402

sys.path.insert(0, str(HERE))
from certbot_venv import certbot_venv  # noqa: E402

TARGET_SINGLE = 0.1
TARGET_MANY = 100
# Seconds between single-certificate runs (not timed): the lab's Knot (3.2), secondary of the zone,
# starts the transfer of a change that comes within a second of its previous transfer only when that
# second is over (up to ~0.9 s after the NOTIFY), and cozyops waits until every authoritative server
# serves the challenges (certbot waits for none).
QUIET = 1.5


# What `cozyops cert issue` cannot do without: the libraries the design names (acme, with josepy and
# requests, cryptography, dnspython, typer, PyYAML) and sqlite3. Their import in a fresh interpreter
# is a floor for any Python command that issues a certificate with them.
FLOOR = ("import acme.client, acme.messages, acme.challenges, josepy, requests, cryptography.x509, "
         "dns.message, dns.query, dns.update, dns.resolver, typer, yaml, sqlite3")


# certbot's main() timed inside its own interpreter, its modules and the DNS plugin imported first:
# the counterpart of "cozyops library, in process".
CERTBOT_IN_PROCESS = """import sys, time
import certbot.main, certbot_dns_rfc2136._internal.dns_rfc2136, acme.client
started = time.perf_counter()
code = certbot.main.main(sys.argv[1:])
print("certbot-main-seconds", time.perf_counter() - started)
sys.exit(code)
"""


def compile_bytecode() -> None:
    """Byte-compile cozyops as installing its wheel does (the checkout's editable install has no
    bytecode, and PYTHONDONTWRITEBYTECODE may keep the interpreter from writing it)."""
    import compileall

    compileall.compile_dir(str(HERE.parent / "cozyops"), quiet=1)


def import_floor(runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", FLOOR], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def write_fleet(root: Path, lab: Lab, domains: list[str]) -> Path:
    (root / "group_vars").mkdir(parents=True)
    tsig.write(root / "secrets/tsig.key", lab.key())
    files.private_dir(root / "secrets")
    files.write_atomic(root / "secrets/ca.pem", lab.pebble().ca_bundle.read_bytes())
    group_vars = {
        "cozy_fleet_name": f"bench-{root.name}",
        "cozy_zone": lab.spec.zone,
        "cozy_subdomains": "nested",
        "cozy_dns": {"provider": "rfc2136", "server": lab.spec.bind_address, "tsig_key_file": "secrets/tsig.key"},
        "cozy_acme": {"directory": lab.spec.acme_directory, "email": f"admin@{lab.spec.zone}",
                      "ca_bundle": "secrets/ca.pem", "concurrency": 32},
    }
    (root / "group_vars/all.yml").write_text(yaml.safe_dump(group_vars))
    (root / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {"h1": {"ansible_host": "192.0.2.10"}}}}))
    (root / "instances.yml").write_text(yaml.safe_dump(
        {"instances": [{"domain": domain, "server": "h1"} for domain in domains]}))
    return root


def timed(lab: Lab, argv: list[str], env: dict | None = None) -> tuple[float, str]:
    def run() -> tuple[float, str]:
        started = time.perf_counter()
        result = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(argv[:4])} ... failed ({result.returncode}): "
                             f"{(result.stderr or result.stdout).strip()[-2000:]}")
        return seconds, result.stdout

    return netns.inside(lab.spec.netns, run)


def cozyops_library(lab: Lab, fleet: Path, name: str) -> float:
    """One certificate through the library in this process (what `cert issue` does after start-up):
    fleet loaded, account checked with the CA, order, DNS, validation, files and metadata."""
    from cozyops import inventory
    from cozyops.tls.manager import CertManager

    def run() -> float:
        started = time.perf_counter()
        manager = CertManager(inventory.load(fleet))
        result = manager.execute(manager.plan([name]).todo)
        seconds = time.perf_counter() - started
        manager.close()
        if list(result.issued) != [name]:
            raise SystemExit(f"cozyops (library) did not issue {name}: {result.failed}")
        return seconds

    return netns.inside(lab.spec.netns, run)


def cozyops_issue(lab: Lab, fleet: Path, names: list[str]) -> tuple[float, dict]:
    argv = [sys.executable, "-m", "cozyops", "cert", "issue", "--json", "--fleet", str(fleet), *names]
    seconds, out = timed(lab, argv)
    report = json.loads(out)
    if report["failed"] or len(report["issued"]) != (len(names) or len(report["issued"])):
        raise SystemExit(f"cozyops cert issue did not issue everything: {report['failed']}")
    return seconds, report


class Certbot:
    def __init__(self, lab: Lab, venv: Path, workdir: Path) -> None:
        self.lab, self.venv, self.workdir = lab, venv, workdir
        key = lab.key()
        self.ini = workdir / "rfc2136.ini"
        files.write_private(self.ini, (
            f"dns_rfc2136_server = {lab.spec.bind_address}\ndns_rfc2136_port = 53\n"
            f"dns_rfc2136_name = {key.name}\ndns_rfc2136_secret = {key.secret}\n"
            f"dns_rfc2136_algorithm = {key.algorithm.upper()}\n"))
        self.env = {**os.environ, "REQUESTS_CA_BUNDLE": str(lab.pebble().ca_bundle)}

    def issue(self, domain: str, config: Path, in_process: bool = False) -> float:
        """certbot's time for one certificate: its whole process, or (``in_process``) its ``main()``
        alone, timed inside its interpreter once certbot and its DNS plugin are imported."""
        args = self.args(domain, config)
        if in_process:
            seconds, out = timed(self.lab, [str(self.venv / "bin/python"), "-c", CERTBOT_IN_PROCESS, *args[1:]],
                                 self.env)
            seconds = float(next(line.split()[1] for line in out.splitlines()
                                 if line.startswith("certbot-main-seconds ")))
        else:
            seconds, _ = timed(self.lab, args, self.env)
        if not (config / "config/live" / domain / "fullchain.pem").exists():
            raise SystemExit(f"certbot issued no certificate for {domain}")
        return seconds

    def args(self, domain: str, config: Path) -> list[str]:
        return [str(self.venv / "bin/certbot"), "certonly", "--non-interactive", "--agree-tos",
                "-m", f"admin@{self.lab.spec.zone}", "--no-eff-email", "--server", self.lab.spec.acme_directory,
                "--config-dir", str(config / "config"), "--work-dir", str(config / "work"),
                "--logs-dir", str(config / "logs"), "--authenticator", "dns-rfc2136",
                "--dns-rfc2136-credentials", str(self.ini), "--dns-rfc2136-propagation-seconds", "0",
                "--key-type", "ecdsa", "--cert-name", domain, "-d", domain, "-d", f"*.{domain}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--many", type=int, default=200, help="certificates in the concurrent run (default 200)")
    parser.add_argument("--single", type=int, default=5, help="runs of one certificate, each tool (default 5)")
    parser.add_argument("--loop", type=int, default=20, help="certbot loop sample (default 20)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (the lab needs it): sudo .venv/bin/python benchmarks/tls_issue.py")
    venv = certbot_venv()
    compile_bytecode()
    load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="cozyops-bench-tls-"))
    os.environ["XDG_STATE_HOME"] = str(workdir / "state")
    lab = Lab.open(f"bench{secrets.token_hex(2)}", workdir / "lab")
    t = secrets.token_hex(2)
    zone = None
    try:
        print("bringing up a lab of its own ...", file=sys.stderr)
        lab.up(hosts_wanted=0)
        zone = lab.spec.zone
        certbot = Certbot(lab, venv, workdir)

        # 1. one certificate
        singles = [f"s{i}{t}.{zone}" for i in range(args.single)]
        inproc = [f"p{i}{t}.{zone}" for i in range(args.single)]
        fleet1 = write_fleet(workdir / "one", lab, singles + inproc)
        ours1, lib1 = [], []
        for name in singles:
            time.sleep(QUIET)
            ours1.append(cozyops_issue(lab, fleet1, [name])[0])
        for name in inproc:
            time.sleep(QUIET)
            lib1.append(cozyops_library(lab, fleet1, name))
        floor = import_floor(args.single)
        theirs1 = [certbot.issue(f"c{i}{t}.{zone}", workdir / f"certbot-single-{i}") for i in range(args.single)]
        theirs1_inproc = [certbot.issue(f"q{i}{t}.{zone}", workdir / f"certbot-inproc-{i}", in_process=True)
                          for i in range(args.single)]

        # 2. many certificates
        many = [f"m{i:04d}{t}.{zone}" for i in range(args.many)]
        fleet2 = write_fleet(workdir / "many", lab, many)
        ours_many, report = cozyops_issue(lab, fleet2, [])
        if len(report["issued"]) != args.many:
            raise SystemExit(f"cozyops issued {len(report['issued'])} of {args.many}")
        loop = [certbot.issue(f"l{i:04d}{t}.{zone}", workdir / "certbot-loop") for i in range(args.loop)]
    finally:
        lab.down(purge=True)
        shutil.rmtree(workdir, ignore_errors=True)

    ours1_median, theirs1_median = statistics.median(ours1), statistics.median(theirs1)
    lib1_median = statistics.median(lib1)
    per_ours, per_theirs = ours_many / args.many, statistics.mean(loop)
    single_ratio, many_ratio = ours1_median / theirs1_median, per_theirs / per_ours
    theirs1_inproc_median = statistics.median(theirs1_inproc)
    lib_ratio = lib1_median / theirs1_inproc_median
    print(f"machine load (1-minute average, {os.cpu_count()} cores): {load_before:.2f} at the start, "
          f"{os.getloadavg()[0]:.2f} at the end")
    print(f"one wildcard certificate (median of {args.single}):")
    print("  as processes (interpreter start-up and imports included):")
    print(f"    certbot + dns-rfc2136: {theirs1_median:.3f} s")
    print(f"    cozyops cert issue: {ours1_median:.3f} s, {single_ratio:.3f}x certbot's time "
          f"(target <= {TARGET_SINGLE}x){'' if single_ratio <= TARGET_SINGLE else '  MISSED'}")
    print("    interpreter start-up and imports of the libraries cozyops needs (acme, josepy, requests, "
          f"cryptography, dnspython, typer, PyYAML): {floor:.3f} s, {floor / theirs1_median:.3f}x certbot's time, "
          "a floor for any process using them")
    print("  in process (each tool's modules imported, then its issuance timed: fleet or configuration, account, "
          "order, DNS, validation, files):")
    print(f"    certbot.main.main(): {theirs1_inproc_median:.3f} s")
    print(f"    cozyops library: {lib1_median:.3f} s, {lib_ratio:.3f}x certbot's time "
          f"(target <= {TARGET_SINGLE}x){'' if lib_ratio <= TARGET_SINGLE else '  MISSED'}")
    print(f"{args.many} wildcard certificates, one per instance:")
    print(f"  cozyops cert issue: {ours_many:.2f} s, {per_ours * 1000:.1f} ms per certificate "
          f"({args.many / ours_many:.1f} certificates/s)")
    print("    of which, in s: " + ", ".join(f"{stage} {seconds:.2f}" for stage, seconds in report["timings"].items())
          + f"; the rest ({ours_many - report['seconds']:.2f} s) start-up, fleet, plan")
    print(f"  certbot loop (sample of {args.loop}): mean {per_theirs:.3f} s, median {statistics.median(loop):.3f} s "
          "per certificate")
    print(f"  ratio per certificate: {many_ratio:.0f}x faster (target >= {TARGET_MANY}x)"
          f"{'' if many_ratio >= TARGET_MANY else '  MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
