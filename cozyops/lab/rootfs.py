"""The root filesystem of the lab's hosts: a minimal Debian server, built once, shared read-only.

``lab setup`` builds it with debootstrap from the Debian mirror the machine's own apt sources
name, into the cache directory; every host mounts it as the lower layer of an overlay, so a host's
changes (packages, files) stay in its own upper layer. Its name carries a digest of what it was
built from (suite, architecture, packages, mirror): a change gives a new root filesystem, and one
that exists is never rebuilt.

Hosts receive their per-host files (host key, hostname, apt proxy, the machine's apt settings)
at boot, so nothing host-specific lives here: the build removes the SSH host keys and the
machine-id that the packages' scripts generate.

Like Debian's own container images (debuerreotype-minimizing-config and -slimify), dpkg
unpacks without an fsync per file (``force-unsafe-io``: a host's disk is a scratch overlay that
nothing outlives), leaves out manuals, info pages, translations and documentation but the
copyright files. A provisioning run installs the same packages as on a full server, and spends
its time on them rather than on the disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cozyops import paths
from cozyops.errors import LabError
from cozyops.lab import aptsources

SUITE = "bookworm"
VARIANT = "minbase"
PACKAGES = ("python3", "openssh-server", "iproute2", "ca-certificates", "sudo", "procps")
# Bumped when the build's own steps change, so that an older build is not reused.
BUILD_VERSION = 2
MANIFEST = "cozyops-rootfs.json"

Report = Callable[[str], None]


def architecture() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()


def cache_root() -> Path:
    """Where root filesystems are kept: COZYOPS_ROOTFS_CACHE, else the cache directory's rootfs/."""
    override = os.environ.get("COZYOPS_ROOTFS_CACHE")
    return Path(override) if override else paths.cache_dir() / "rootfs"


@dataclass(frozen=True)
class Recipe:
    """What a root filesystem is built from; its digest names it."""

    suite: str
    architecture: str
    mirror: str
    packages: tuple[str, ...] = PACKAGES
    variant: str = VARIANT
    version: int = BUILD_VERSION

    def to_json(self) -> dict:
        return {
            "suite": self.suite,
            "architecture": self.architecture,
            "mirror": self.mirror,
            "packages": list(self.packages),
            "variant": self.variant,
            "version": self.version,
        }

    @property
    def name(self) -> str:
        digest = hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.suite}-{self.architecture}-{digest}"

    def debootstrap_argv(self, target: Path) -> list[str]:
        return [
            "debootstrap",
            f"--variant={self.variant}",
            f"--arch={self.architecture}",
            "--include=" + ",".join(self.packages),
            self.suite,
            str(target),
            self.mirror,
        ]


def recipe() -> Recipe:
    return Recipe(SUITE, architecture(), aptsources.mirror_for(aptsources.read_targets(), SUITE))


def path(for_recipe: Recipe | None = None) -> Path:
    return cache_root() / (for_recipe or recipe()).name


def built(directory: Path) -> bool:
    return (directory / "etc" / MANIFEST).is_file()


def find() -> Path:
    """The root filesystem that ``lab setup`` built for this machine's sources; an error if none."""
    directory = path()
    if not built(directory):
        raise LabError(
            "the hosts' root filesystem",
            f"is not built ({directory})",
            "run `sudo cozyops lab setup`",
        )
    return directory


@dataclass
class BuildResult:
    path: Path
    built: bool
    seconds: float


def build(log: Path, report: Report = lambda _: None) -> BuildResult:
    """Build the root filesystem unless it exists. Atomic: a failed build leaves nothing behind."""
    wanted = recipe()
    final = path(wanted)
    if built(final):
        return BuildResult(final, False, 0.0)
    if shutil.which("debootstrap", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
        raise LabError("debootstrap", "not found", "run `sudo cozyops lab setup`")
    started = time.monotonic()
    final.parent.mkdir(parents=True, exist_ok=True)
    work = final.parent / f".build-{final.name}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        report(f"debootstrap {wanted.suite} from {wanted.mirror} (log: {log})")
        # A private mount namespace: the /proc and /sys that debootstrap mounts in the target
        # vanish with it, even when it fails half-way.
        _run(["unshare", "--mount", "--propagation", "private", *wanted.debootstrap_argv(work)], log, report)
        _finish(work, wanted, log, report)
        work.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return BuildResult(final, True, time.monotonic() - started)


def _run(argv: list[str], log: Path, report: Report) -> None:
    with open(log, "ab") as out:
        out.write(("$ " + " ".join(argv) + "\n").encode())
        out.flush()
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert process.stdout is not None
        for raw in process.stdout:
            out.write(raw)
            line = raw.decode(errors="replace").strip()
            if line.startswith(("I: Retrieving", "I: Installing", "I: Configuring", "I: Base system")):
                report(line[3:])
        if process.wait() != 0:
            program = argv[4] if argv[0] == "unshare" else argv[0]
            raise LabError(program, f"failed (exit {process.returncode}); see {log}")


def _finish(root: Path, wanted: Recipe, log: Path, report: Report) -> None:
    """Make the bootstrapped tree a template: nothing per-host, nothing cached, apt lists fresh."""
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc" / "machine-id").write_text("")
    _slim(root)
    for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()
    # The machine's apt sources and settings replace debootstrap's one-line sources.list, and
    # the package lists are fetched once here, so that a new host can install at once.
    (root / "etc" / "apt" / "sources.list").unlink(missing_ok=True)
    install_apt_files(root, aptsources.files_to_mirror(aptsources.read_targets()), lower=root)
    report("apt-get update in the new root filesystem")
    _run(["unshare", "--mount", "--propagation", "private", "chroot", str(root), "apt-get", "update"], log, report)
    manifest = {**wanted.to_json(), "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (root / "etc" / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


DPKG_SETTINGS = {
    # /etc/dpkg/dpkg.cfg.d/<name>: as debuerreotype writes them for Debian's container images
    "cozyops-lab-unsafe-io": "force-unsafe-io\n",
    "cozyops-lab-slim": "".join(f"path-exclude {pattern}\n" for pattern in (
        "/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*",
        "/usr/share/groff/*", "/usr/share/lintian/*", "/usr/share/linda/*",
    )) + "path-include /usr/share/doc/*/copyright\npath-include /usr/share/locale/locale.alias\n",
}


def _slim(root: Path) -> None:
    """dpkg without fsync and without documentation (see the module's docstring)."""
    settings = root / "etc" / "dpkg" / "dpkg.cfg.d"
    settings.mkdir(parents=True, exist_ok=True)
    for name, text in DPKG_SETTINGS.items():
        (settings / name).write_text(text)


def install_apt_files(root: Path, wanted: dict[str, Path], lower: Path | None = None) -> list[str]:
    """Copy the machine's apt files into ``root``; keyrings that ``lower`` already has are kept."""
    copied = []
    for inside, source in wanted.items():
        if inside.startswith("/usr/") and lower is not None and (lower / inside.lstrip("/")).exists():
            continue
        target = root / inside.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        os.chmod(target, 0o644)
        copied.append(inside)
    return copied
