#!/usr/bin/env python3
"""Benchmark: a v2 export imported through the SSH tunnel, against a raw copy of the same bytes.

Run as root, in a checkout, after `./dev venv` (or `sudo ./dev test` once) and `cozyops lab setup`:

    sudo .venv/bin/python benchmarks/v2_import.py [--big-mb 300] [--small 2000]

On a lab of its own (brought up with the cozy-stack double in a temporary directory, purged at
the end):

1. an export in cozy-monitor's format (tests/v2export.py) with one ``--big-mb`` MB file of random
   bytes and ``--small`` small files (1 to 8 KiB) in 20 folders;
2. raw copy: the same file bytes streamed through an SSH port forward (the transport the importer
   uses) to a sink on the host that reads and discards them: the tunnel's throughput;
3. ``cozyops v2 import`` (the command line, inside the lab's namespace, process start, the
   inspection pass and the token included) into a new instance: throughput over the same bytes,
   and the importer's peak RSS (``ru_maxrss`` of the process tree).

Targets (issue 7): at least 50 % of the raw copy's throughput, peak RSS under 150 MB.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from cozyops.lab import netns, stack  # noqa: E402
from cozyops.lab.lab import Lab  # noqa: E402
from cozyops.stack import AdminClient  # noqa: E402
from cozyops.transport import SshTransport  # noqa: E402
from tests.v2export import Export  # noqa: E402

# Runs the importer and reports its peak RSS (ru_maxrss of the importer's process tree), apart
# from the benchmark's own children (lab up).
PEAK = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
        "print('peak_rss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
        "sys.exit(code)")
SINK_PORT = 9099
SINK = f"""import socket
s = socket.create_server(("127.0.0.1", {SINK_PORT}))
c, _ = s.accept()
want = int.from_bytes(c.recv(8, socket.MSG_WAITALL), "big")
n = 0
while n < want:
    b = c.recv(1 << 20)
    if not b:
        break
    n += len(b)
c.sendall(str(n).encode())
c.close()
"""


def make_export(path: Path, big_mb: int, small: int) -> tuple[int, list[bytes]]:
    export = Export()
    total = 0
    blobs: list[bytes] = []
    for folder in range(20):
        export.folder("", f"f{folder:02}")
    for number in range(small):
        data = os.urandom(1024 + (number * 7919) % 7168)
        export.file(f"/f{number % 20:02}", f"small-{number:05}.bin", data)
        blobs.append(data)
        total += len(data)
    big = os.urandom(big_mb * 1_000_000)
    export.file("", "big.bin", big)
    blobs.append(big)
    total += len(big)
    export.write(path)
    return total, blobs


def raw_copy(lab: Lab, blobs: list[bytes]) -> float:
    def inside() -> float:
        with SshTransport(lab.ssh_target("h1")) as ssh:
            ssh.put(SINK.encode(), "/tmp/cozyops-bench-sink.py")
            ssh.run("nohup python3 /tmp/cozyops-bench-sink.py >/dev/null 2>&1 &")
            time.sleep(1)
            with ssh.forward(SINK_PORT) as forward:
                start = time.monotonic()
                with socket.create_connection((forward.local_host, forward.local_port)) as conn:
                    conn.sendall(sum(len(b) for b in blobs).to_bytes(8, "big"))
                    for blob in blobs:
                        conn.sendall(blob)
                    received = int(conn.recv(64).decode() or "0")
                elapsed = time.monotonic() - start
        assert received == sum(len(b) for b in blobs), received
        return elapsed

    return netns.inside(lab.spec.netns, inside)


def new_instance(lab: Lab) -> str:
    domain = f"bench{secrets.token_hex(3)}.{lab.spec.zone}"

    def inside() -> None:
        with SshTransport(lab.ssh_target("h1")) as ssh, ssh.forward(stack.ADMIN_PORT) as port:
            admin = AdminClient(port.url, stack.admin_passphrase(ssh))
            admin.create_instance(domain, apps=["drive"])
            admin.close()

    netns.inside(lab.spec.netns, inside)
    return domain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-mb", type=int, default=300)
    parser.add_argument("--small", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cozyops-bench-v2-") as scratch:
        root = Path(scratch)
        from cozyops.lab import aptrepo, pouchdb, rootfs

        # The lab's root filesystem, pouchdb-server's modules and the apt repository (the cozy-stack
        # and couchdb packages `lab up --with-stack` provisions from) that `lab setup` built, read
        # only; everything the benchmark writes goes under its temporary directory.
        env = {**os.environ, "COZYOPS_ROOTFS_CACHE": str(rootfs.cache_root()),
               "COZYOPS_POUCHDB_CACHE": str(pouchdb.cache_root()),
               "COZYOPS_APTREPO_CACHE": str(aptrepo.cache_root()),
               "XDG_CACHE_HOME": str(root / "cache"), "XDG_STATE_HOME": str(root / "state")}
        lab_dir = root / "lab"
        lab_id = f"b{secrets.token_hex(3)}"
        up = subprocess.run([sys.executable, "-m", "cozyops", "lab", "up", "--id", lab_id, "--dir", str(lab_dir),
                             "--with-stack", "--json"], capture_output=True, text=True, env=env)
        if up.returncode:
            sys.exit(f"lab up failed: {up.stderr.strip().splitlines()[-1:]}")
        lab = Lab.open(lab_id, lab_dir)
        try:
            export = root / "export.tar.gz"
            total, blobs = make_export(export, args.big_mb, args.small)
            print(f"export: {args.small} small files and one {args.big_mb} MB file, {total / 1e6:.1f} MB of file "
                  f"bytes, {export.stat().st_size / 1e6:.1f} MB compressed")
            raw = raw_copy(lab, blobs)
            del blobs
            domain = new_instance(lab)
            start = time.monotonic()
            result = subprocess.run(
                [sys.executable, "-m", "cozyops", "lab", "exec", "--dir", str(lab_dir), "--",
                 sys.executable, "-c", PEAK, sys.executable, "-m", "cozyops", "v2", "import", str(export),
                 "--to", domain, "--json"],
                capture_output=True, text=True, env=env)
            elapsed = time.monotonic() - start
            if result.returncode:
                sys.exit(f"import failed: {result.stderr.strip().splitlines()[-1:]}")
            peak_line = [line for line in result.stderr.splitlines() if line.startswith("peak_rss_kb ")][-1]
            peak_mb = int(peak_line.split()[1]) / 1024
            print(f"raw copy through the SSH tunnel: {raw:.1f} s, {total / raw / 1e6:.1f} MB/s")
            print(f"cozyops v2 import: {elapsed:.1f} s, {total / elapsed / 1e6:.1f} MB/s "
                  f"({100 * raw / elapsed:.0f} % of the raw copy; target 50 %)")
            print(f"importer peak RSS: {peak_mb:.0f} MB (target under 150 MB)")
        finally:
            subprocess.run([sys.executable, "-m", "cozyops", "lab", "down", "--id", lab_id, "--dir", str(lab_dir),
                            "--purge"], capture_output=True, env=env)


if __name__ == "__main__":
    main()
