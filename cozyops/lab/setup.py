"""What the lab needs on the machine, and its installation with apt."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cozyops.errors import LabError, MissingPackagesError, NeedsRootError

# Each program the lab runs, and the Debian package that brings it.
PROGRAMS = {
    "ip": "iproute2",
    "named": "bind9",
    "named-checkconf": "bind9-utils",
    "dig": "bind9-dnsutils",
    "nsupdate": "bind9-dnsutils",
    "knotd": "knot",
    "knotc": "knot",
    "kdig": "knot-dnsutils",
    "pebble": "pebble",
    "debootstrap": "debootstrap",
    "ssh": "openssh-client",
    # the lab's apt repository: packages built with dpkg-deb, indexed by apt-ftparchive, signed by gpg
    "dpkg-deb": "dpkg",
    "apt-ftparchive": "apt-utils",
    "gpg": "gpg",
    "pdns_server": "pdns-server",
}
# Files that are not programs, and the package that brings each.
FILES = {
    "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql": "pdns-backend-sqlite3",  # PowerDNS's gsqlite3
}
PACKAGES = sorted(set(PROGRAMS.values()) | set(FILES.values()))
SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"]
)
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


def which(program: str) -> str | None:
    return shutil.which(program, path=SEARCH_PATH)


def missing_packages() -> list[str]:
    missing = {package for program, package in PROGRAMS.items() if which(program) is None}
    return sorted(missing | {package for path, package in FILES.items() if not Path(path).exists()})


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise NeedsRootError(what, "needs root (network namespaces and packages)", "run it with sudo")


def require_packages(what: str) -> None:
    missing = missing_packages()
    if missing:
        raise MissingPackagesError(what, missing, "run `sudo cozyops lab setup`")


@dataclass
class SetupResult:
    installed: list[str]
    already: list[str]


def install(log: Path) -> SetupResult:
    """Install the missing packages with apt-get. Idempotent: nothing to do, nothing run.

    A temporary policy-rc.d (when the machine has none) keeps the packages' maintainer scripts
    from starting system-wide BIND or Knot services: the lab runs its own, in its namespaces.
    """
    missing = missing_packages()
    if not missing:
        return SetupResult([], PACKAGES)
    require_root("cozyops lab setup")
    if shutil.which("apt-get") is None:
        raise LabError("cozyops lab setup", "apt-get not found: install " + ", ".join(missing) + " by hand")
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    created_policy = False
    if not POLICY_RC_D.exists():
        POLICY_RC_D.write_text("#!/bin/sh\n# cozyops lab setup: no service starts while installing\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
        created_policy = True
    try:
        with open(log, "ab") as out:
            install_cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
            if subprocess.run(install_cmd, stdout=out, stderr=subprocess.STDOUT, env=env).returncode:
                # The package lists may be missing or stale: refresh them once and retry.
                subprocess.run(["apt-get", "update"], stdout=out, stderr=subprocess.STDOUT, env=env)
                if subprocess.run(install_cmd, stdout=out, stderr=subprocess.STDOUT, env=env).returncode:
                    raise LabError("apt-get install " + " ".join(missing), f"failed; see {log}")
    finally:
        if created_policy:
            POLICY_RC_D.unlink(missing_ok=True)
    still = missing_packages()
    if still:
        raise LabError("cozyops lab setup", "still missing after install: " + ", ".join(still))
    return SetupResult(missing, sorted(set(PACKAGES) - set(missing)))
