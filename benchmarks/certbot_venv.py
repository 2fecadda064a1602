"""certbot, the anchor of the TLS and start-up benchmarks, in a virtual environment of its own.

Pinned here and installed once, by pip from PyPI, into ``$XDG_CACHE_HOME/cozyops/bench-certbot``
(certbot pins its own acme and josepy, which must not disturb cozyops' environment).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from cozyops import paths

CERTBOT = ["certbot==5.8.0", "certbot-dns-rfc2136==5.8.0"]


def certbot_venv() -> Path:
    venv = paths.cache_dir() / "bench-certbot"
    stamp = venv / "installed.txt"
    if stamp.exists() and stamp.read_text().split() == CERTBOT:
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    print(f"installing {' '.join(CERTBOT)} into {venv} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin/pip"), "install", "-q", *CERTBOT], check=True)
    stamp.write_text(" ".join(CERTBOT) + "\n")
    return venv
