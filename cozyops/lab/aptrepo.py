"""The lab's apt repository: ``cozy-stack`` (the double) and ``couchdb`` (pouchdb-server), signed.

``lab setup`` builds both packages with ``dpkg-deb`` from the files in ``templates/debian/``
(control, debconf templates and config, maintainer scripts, init scripts) plus the double's source
and pouchdb-server's node modules, then publishes them as an apt repository shaped like Cozy's
(``<root>/debian/dists/bookworm/stable``, ``pool/``) with ``apt-ftparchive``, signed (``InRelease``
and ``Release.gpg``) by a key of the lab's own made with ``gpg`` in the cache.

The repository's directory is named after a digest of everything it is built from: a change gives
a new repository, and one that exists is never rebuilt. The build is atomic (a temporary
directory renamed into place when complete). The lab's apt proxy serves it to the hosts under
``http://apt.lab.invalid/`` (a name that never resolves anywhere else).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2

from cozyops import paths
from cozyops.errors import LabError
from cozyops.lab import pouchdb

HOSTNAME = "apt.lab.invalid"
URL = f"http://{HOSTNAME}/debian"
SUITE, COMPONENT = "bookworm", "stable"
KEYRING_NAME = "cozyops-lab-archive-keyring.gpg"
KEY_UID = "cozyops lab apt repository <lab@cozyops.invalid>"
DOUBLE_SOURCE = Path(__file__).with_name("stackdouble")
DOUBLE_DIR = "/usr/lib/cozy-stack-double"
POUCHDB_DIR = "/opt/couchdb/pouchdb-server"
# The versions the packages stand in for; the build time and the digest of their content are appended.
STACK_VERSION = "1.6.40"
COUCHDB_VERSION = "3.3.3"
# cozy-stack's builds in the repository, for rolling upgrades (docs/upgrades.md): "base" is what the
# lab's fleet pins for provisioning, "upgrade" a newer release of the same double, "broken" a
# deliberately broken build (sorting between the two: ~ before anything) whose double looks for its
# instances in a registry that does not exist, so that a server with instances seems to have none
# after the upgrade and fails its health check, and a server without any passes.
STACK_BUILDS = {
    "base": (STACK_VERSION, ""),
    "broken": ("1.6.41~rc1", "registry"),
    "upgrade": ("1.6.41", ""),
}
# Bumped when the build's own steps change.
BUILD_VERSION = 2
MARKER = "cozyops-aptrepo.txt"
VERSIONS = "versions.json"
BUILD_INFO = "build.json"  # in DOUBLE_DIR: the package's version and fault, for the double to say

Report = Callable[[str], None]


def templates_dir() -> Path:
    return paths.data_dir("templates") / "debian"


def cache_root() -> Path:
    override = os.environ.get("COZYOPS_APTREPO_CACHE")
    return Path(override) if override else paths.cache_dir() / "aptrepo"


def architecture() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()


def _sources() -> list[Path]:
    found = [p for p in sorted(templates_dir().rglob("*")) if p.is_file()]
    found += [p for p in sorted(DOUBLE_SOURCE.rglob("*.py"))]
    return found


def digest() -> str:
    """Of the packaging files, the double's source, pouchdb-server's lockfile and this build."""
    sha = hashlib.sha256(f"build {BUILD_VERSION} {architecture()}\0".encode())
    for path in _sources():
        sha.update(path.name.encode() + b"\0" + path.read_bytes())
    sha.update(pouchdb.LOCKFILE.read_bytes())
    return sha.hexdigest()[:12]


def path() -> Path:
    return cache_root() / digest()


def gnupg_home() -> Path:
    return cache_root() / "gnupg"


def built(directory: Path) -> bool:
    return (directory / MARKER).is_file()


def find() -> Path | None:
    """The repository ``lab setup`` built for this tree, or None."""
    directory = path()
    return directory if built(directory) else None


def keyring(directory: Path) -> Path:
    """The repository's public key (a binary keyring, for apt's signed-by)."""
    return directory / KEYRING_NAME


def _run(argv: list[str], log, **kwargs) -> subprocess.CompletedProcess:
    log.write(("$ " + " ".join(argv) + "\n").encode())
    log.flush()
    result = subprocess.run(argv, stderr=log, **{"stdout": log, **kwargs})
    if result.returncode != 0:
        raise LabError(" ".join(argv[:2]), f"failed (exit {result.returncode}); see {log.name}")
    return result


def _render(name: str, **values: object) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates_dir()), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    return env.get_template(name).render(**values)


def _put(root: Path, target: str, data: bytes, mode: int = 0o644) -> None:
    dest = root / target.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    dest.chmod(mode)


def _size_kib(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and "DEBIAN" not in p.parts) // 1024 + 1


def _control(root: Path, package: str, conffiles: list[str], values: dict) -> None:
    debian = templates_dir() / package
    control_dir = root / "DEBIAN"
    control_dir.mkdir(parents=True, exist_ok=True)
    control = _render(f"{package}/control.j2", installed_size=_size_kib(root), **values)
    _put(root, "DEBIAN/control", control.encode())
    for script in ("config", "postinst", "prerm", "postrm"):
        _put(root, f"DEBIAN/{script}", (debian / script).read_bytes(), 0o755)
    _put(root, "DEBIAN/templates", (debian / "templates").read_bytes())
    _put(root, "DEBIAN/conffiles", "".join(f"{name}\n" for name in conffiles).encode())


def _stack_tree(root: Path, version: str, arch: str, fault: str = "") -> None:
    debian = templates_dir() / "cozy-stack"
    shutil.copytree(DOUBLE_SOURCE, root / DOUBLE_DIR.lstrip("/") / "stackdouble",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    info = {"version": version, **({"fault": fault} if fault else {})}
    _put(root, f"{DOUBLE_DIR}/{BUILD_INFO}", (json.dumps(info) + "\n").encode())
    _put(root, "/usr/bin/cozy-stack", (debian / "cozy-stack.wrapper").read_bytes(), 0o755)
    _put(root, "/usr/share/cozy/konnector-run.sh", (debian / "konnector-run.sh").read_bytes(), 0o755)
    conffiles = {
        "/etc/cozy/cozy.yml": ("cozy.yml", 0o640),
        "/etc/rsyslog.d/cozy.conf": ("rsyslog.conf", 0o644),
        "/etc/nginx/conf.d/websocket.conf": ("websocket.conf", 0o644),
        "/etc/init.d/cozy-stack": ("init.d", 0o755),
    }
    for target, (source, mode) in conffiles.items():
        _put(root, target, (debian / source).read_bytes(), mode)
    _control(root, "cozy-stack", list(conffiles), {"version": version, "architecture": arch})


def _couchdb_tree(root: Path, version: str, arch: str, modules: Path) -> None:
    debian = templates_dir() / "couchdb"
    target = root / POUCHDB_DIR.lstrip("/")
    target.mkdir(parents=True)
    # cp -a keeps the modules' symlinks (node_modules/.bin) and modes, and is quicker than Python.
    subprocess.run(["cp", "-a", str(modules / "node_modules"), str(target)], check=True)
    _put(root, "/etc/init.d/couchdb", (debian / "init.d").read_bytes(), 0o755)
    _control(root, "couchdb", ["/etc/init.d/couchdb"],
             {"version": version, "architecture": arch, "pouchdb_version": pouchdb.VERSION})


def _signing_key(log) -> str:
    """The lab's signing key (made once, no passphrase: it signs a test repository); its fingerprint."""
    home = gnupg_home()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch"]
    listed = subprocess.run([*gpg, "--with-colons", "--list-secret-keys"], capture_output=True, text=True)
    if "fpr:" not in listed.stdout:
        _run([*gpg, "--passphrase", "", "--quick-gen-key", KEY_UID, "ed25519", "sign", "never"], log)
        listed = subprocess.run([*gpg, "--with-colons", "--list-secret-keys"], capture_output=True, text=True)
    for line in listed.stdout.splitlines():
        if line.startswith("fpr:"):
            return line.split(":")[9]
    raise LabError("the lab's signing key", f"not found in {home}")


def _publish(top: Path, debs: list[Path], arch: str, log) -> None:
    repo = top / "debian"
    pool = repo / "pool" / COMPONENT
    pool.mkdir(parents=True)
    for deb in debs:
        shutil.move(str(deb), pool / deb.name)
    dist = repo / "dists" / SUITE
    binary = dist / COMPONENT / f"binary-{arch}"
    binary.mkdir(parents=True)
    packages = subprocess.run(["apt-ftparchive", "packages", f"pool/{COMPONENT}"], cwd=repo,
                              capture_output=True, check=True).stdout
    (binary / "Packages").write_bytes(packages)
    _run(["gzip", "-9kn", str(binary / "Packages")], log)
    release = subprocess.run(
        ["apt-ftparchive",
         "-o", "APT::FTPArchive::Release::Origin=cozyops lab",
         "-o", "APT::FTPArchive::Release::Label=cozyops lab",
         "-o", f"APT::FTPArchive::Release::Suite={SUITE}",
         "-o", f"APT::FTPArchive::Release::Codename={SUITE}",
         "-o", f"APT::FTPArchive::Release::Components={COMPONENT}",
         "-o", f"APT::FTPArchive::Release::Architectures={arch}",
         "release", "."],
        cwd=dist, capture_output=True, check=True).stdout
    (dist / "Release").write_bytes(release)
    fingerprint = _signing_key(log)
    gpg = ["gpg", "--homedir", str(gnupg_home()), "--batch", "--yes", "--local-user", fingerprint]
    _run([*gpg, "--clearsign", "--output", str(dist / "InRelease"), str(dist / "Release")], log)
    _run([*gpg, "--detach-sign", "--output", str(dist / "Release.gpg"), str(dist / "Release")], log)
    with open(top / KEYRING_NAME, "wb") as out:
        subprocess.run(["gpg", "--homedir", str(gnupg_home()), "--batch", "--export", fingerprint],
                       stdout=out, check=True)


@dataclass
class BuildResult:
    path: Path
    built: bool
    seconds: float


def build(log_path: Path, report: Report = lambda _: None) -> BuildResult:
    """Build and sign the repository unless it exists. Atomic: a failed build leaves nothing."""
    started = time.monotonic()
    target = path()
    if built(target):
        return BuildResult(target, False, 0.0)
    modules = pouchdb.find()
    arch = architecture()
    stamp = digest()
    cache_root().mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    report(f"building the lab's apt repository (cozy-stack, couchdb) in {target}")
    with open(log_path, "ab") as log, tempfile.TemporaryDirectory(dir=cache_root(), prefix=".build-") as work:
        scratch = Path(work)
        debs = []
        # The build time first, so that a newer build sorts after an older one for apt.
        built_at = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        versions: dict[str, str] = {}
        builds = [("cozy-stack", name, version, fault) for name, (version, fault) in STACK_BUILDS.items()]
        for package, name, version, fault in [*builds, ("couchdb", "couchdb", COUCHDB_VERSION, "")]:
            full = f"{version}+lab.{built_at}.{stamp}"
            tree = scratch / "trees" / f"{package}-{name}"
            if package == "cozy-stack":
                _stack_tree(tree, full, arch, fault)
                versions[name] = full
            else:
                _couchdb_tree(tree, full, arch, modules)
            deb = scratch / f"{package}_{full}_{arch}.deb"
            _run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", str(tree), str(deb)], log)
            debs.append(deb)
        top = scratch / "repo"
        _publish(top, debs, arch, log)
        (top / VERSIONS).write_text(json.dumps({"cozy-stack": versions}, indent=2) + "\n")
        (top / MARKER).write_text(f"cozyops lab apt repository {stamp}\n")
        if target.exists():
            shutil.rmtree(target)
        os.rename(top, target)
    return BuildResult(target, True, time.monotonic() - started)


def stack_versions(directory: Path) -> dict[str, str]:
    """cozy-stack's versions in the repository: {"base": ..., "broken": ..., "upgrade": ...}."""
    try:
        return dict(json.loads((directory / VERSIONS).read_text())["cozy-stack"])
    except (OSError, ValueError, KeyError) as error:
        raise LabError(f"the lab's apt repository {directory}", f"has no {VERSIONS} ({error})",
                       "run `sudo cozyops lab setup`") from None


def source_line(keyring_path: str) -> str:
    """The hosts' apt source for the lab repository (Cozy's own: ``deb [signed-by=...] URL SUITE stable``)."""
    return f"deb [signed-by={keyring_path}] {URL}/ {SUITE} {COMPONENT}"
