"""The machine's apt sources, as apt itself reads them.

The lab's hosts get their packages from the mirrors the machine uses, and from nowhere else: the
root filesystem is bootstrapped from the machine's Debian mirror, the hosts' apt sources and
settings are copies of the machine's, and the hosts' proxy lets through only these mirrors.

``apt-get indextargets`` gives apt's own reading of every sources file it uses (one-line and
deb822 formats alike, disabled files left out), so nothing here re-implements apt's parser.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cozyops.errors import LabError

FORMAT = "$(REPO_URI)\t$(RELEASE)\t$(TARGET_OF)\t$(COMPONENT)\t$(SOURCESENTRY)"
APT_ETC = Path("/etc/apt")
# Files of /etc/apt that the hosts get as they are: the settings and the trusted keys.
SETTINGS_DIRS = ("apt.conf.d", "trusted.gpg.d", "preferences.d")
_SIGNED_BY = re.compile(r"(?im)(?:^Signed-By:[ \t]*|\[[^]]*\bsigned-by=)(/[^\s\]]+)")


@dataclass(frozen=True)
class Target:
    """One index apt fetches: a repository (URI and suite) and a component."""

    uri: str
    suite: str
    kind: str  # deb or deb-src
    component: str
    source_file: str  # the sources file that names it

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.uri)
        default = 443 if parts.scheme == "https" else 80
        return (parts.hostname or "", parts.port or default)


def parse_indextargets(text: str) -> list[Target]:
    """The targets in the output of ``apt-get indextargets --format FORMAT``."""
    targets = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 5 or not fields[0]:
            continue
        uri, suite, kind, component, entry = fields
        source_file = entry.rsplit(":", 1)[0]
        targets.append(Target(uri.rstrip("/"), suite, kind, component, source_file))
    return list(dict.fromkeys(targets))


def read_targets() -> list[Target]:
    try:
        result = subprocess.run(
            ["apt-get", "indextargets", "--no-release-info", "--format", FORMAT],
            capture_output=True, text=True, check=False,
        )
    except FileNotFoundError:
        raise LabError("apt-get", "not found: the lab's hosts need the machine's apt sources") from None
    if result.returncode != 0:
        raise LabError("apt-get indextargets", result.stderr.strip() or f"exit {result.returncode}")
    return parse_indextargets(result.stdout)


def mirror_for(targets: list[Target], suite: str) -> str:
    """The URI of the machine's Debian mirror for ``suite`` (the one debootstrap uses)."""
    for target in targets:
        if target.suite == suite and target.kind == "deb" and target.component == "main":
            if urlsplit(target.uri).scheme in ("http", "https"):
                return target.uri
    raise LabError(
        "the machine's apt sources",
        f"name no http(s) mirror of Debian {suite} main",
        "add one to /etc/apt/sources.list.d/ (the lab builds its hosts from the machine's mirror)",
    )


def allowed(targets: list[Target]) -> list[tuple[str, int]]:
    """The (host, port) pairs the hosts may reach through the lab's proxy: the mirrors."""
    return sorted({target.host_port for target in targets if target.host_port[0]})


def signed_by(text: str) -> list[str]:
    """Keyring files a sources file names (Signed-By: in deb822, [signed-by=] in one-line)."""
    return list(dict.fromkeys(_SIGNED_BY.findall(text)))


def files_to_mirror(targets: list[Target], etc: Path = APT_ETC) -> dict[str, Path]:
    """What a host needs to use the machine's sources: {path in the host: file on the machine}.

    The sources files apt reads, the keyrings they name, and apt's settings and trusted keys.
    """
    wanted: dict[str, Path] = {}
    for source in sorted({target.source_file for target in targets}):
        path = Path(source)
        if not path.is_file():
            continue
        wanted[str(path)] = path
        for keyring in signed_by(path.read_text(errors="replace")):
            if Path(keyring).is_file():
                wanted[keyring] = Path(keyring)
    for name in SETTINGS_DIRS:
        folder = etc / name
        if folder.is_dir():
            for entry in sorted(folder.iterdir()):
                if entry.is_file():
                    wanted[str(APT_ETC / name / entry.name)] = entry
    return wanted
