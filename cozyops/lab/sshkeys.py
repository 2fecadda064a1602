"""SSH keys and client files for the lab: Ed25519 keys (cryptography), known_hosts, ssh_config."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cozyops import files


@dataclass(frozen=True)
class KnownHost:
    names: tuple[str, ...]  # aliases, name, address: every way the host is reached
    public_key: str  # "ssh-ed25519 AAAA..."


def public_line(private_file: Path) -> str:
    """The OpenSSH public key line ("ssh-ed25519 AAAA...") of a private key file."""
    key = serialization.load_ssh_private_key(private_file.read_bytes(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def fingerprint(public: str) -> str:
    """OpenSSH's SHA256 fingerprint of a public key line, as ``ssh-keygen -l`` prints it."""
    blob = base64.b64decode(public.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def ensure_key(private_file: Path, comment: str) -> str:
    """Create an Ed25519 key pair (private 0600, ``.pub`` beside it) unless it exists; its public line."""
    if not private_file.exists():
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        files.write_private(private_file, private)
    public = public_line(private_file)
    files.write_atomic(private_file.with_name(private_file.name + ".pub"), f"{public} {comment}\n")
    return public


def known_hosts(entries: list[KnownHost]) -> str:
    return "".join(f"{','.join(entry.names)} {entry.public_key}\n" for entry in entries)


def ssh_config(hosts: list[tuple[str, str, str]], identity: Path, known_hosts_file: Path) -> str:
    """An ssh_config for ``ssh -F``: each (name, fqdn, address), root, our key, our known_hosts only."""
    lines = ["# Written by `cozyops lab up`: ssh -F THIS_FILE h1 (from inside the lab: cozyops lab exec)."]
    for name, fqdn, address in hosts:
        lines += ["", f"Host {name} {fqdn} {address}", f"    HostName {address}", f"    HostKeyAlias {name}"]
    lines += [
        "",
        "Host *",
        "    User root",
        f"    IdentityFile {identity}",
        "    IdentitiesOnly yes",
        f"    UserKnownHostsFile {known_hosts_file}",
        "    GlobalKnownHostsFile /dev/null",
        "    StrictHostKeyChecking yes",
        "    CheckHostIP no",
        "    PasswordAuthentication no",
        "    KbdInteractiveAuthentication no",
        "    BatchMode yes",
        "    ConnectTimeout 5",
    ]
    return "\n".join(lines) + "\n"
