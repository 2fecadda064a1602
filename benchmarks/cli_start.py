"""Benchmark: the command line's start-up for `--help`, against certbot's `--help`, in one run.

    .venv/bin/python benchmarks/cli_start.py [--runs 10]

Each command runs as a whole process, RUNS times, one after another in an interleaved order (so a
burst of load hits every command alike); the median wall time of each is printed with its ratio to
`certbot --help` (certbot from PyPI in the benchmark's own virtual environment, as the TLS benchmark
installs it) and to `python -c pass` (the interpreter's own start, a floor for any Python tool).

Target (issue 16): each cozyops `--help` at most 0.5x certbot's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from certbot_venv import certbot_venv  # noqa: E402

TARGET = 0.5


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    venv = certbot_venv()
    cozyops = str(Path(sys.executable).parent / "cozyops")
    env = {**os.environ, "COLUMNS": "80"}
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "certbot --help": [str(venv / "bin/certbot"), "--help"],
        "cozyops --help": [cozyops, "--help"],
        "cozyops cert ls --help": [cozyops, "cert", "ls", "--help"],
        "cozyops dns plan --help": [cozyops, "dns", "plan", "--help"],
    }
    for argv in commands.values():  # warm the page cache and .pyc files
        timed(argv, env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, argv in commands.items():
            times[name].append(timed(argv, env))
    median = {name: statistics.median(values) for name, values in times.items()}
    certbot = median["certbot --help"]
    print(f"median of {args.runs} runs each, on {os.cpu_count()} cores (load {os.getloadavg()[0]:.2f}):")
    missed = False
    for name, value in median.items():
        line = f"  {name:<26} {value * 1000:7.1f} ms  {value / certbot:5.3f}x certbot's"
        if name.startswith("cozyops"):
            ok = value / certbot <= TARGET
            missed |= not ok
            line += f" (target <= {TARGET}x) {'ok' if ok else 'MISSED'}"
        print(line)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
