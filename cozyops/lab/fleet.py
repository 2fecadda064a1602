"""The lab's fleet directory: a ready-to-use fleet in Ansible's conventions, pointing at the lab."""

from __future__ import annotations

from pathlib import Path

import yaml

from cozyops import files
from cozyops.lab.spec import LabSpec

HEADER = (
    "# Written by `cozyops lab up` for lab {id}; rewritten by every `lab up`.\n"
    "# Keys: see inventories/example/ in cozyops.\n"
)


def _dump(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def group_vars(spec: LabSpec, email: str) -> dict:
    return {
        "cozy_fleet_name": f"lab-{spec.id}",
        "cozy_zone": spec.zone,
        "cozy_subdomains": "nested",
        "cozy_dns": {
            "provider": "rfc2136",
            "server": spec.bind_address,
            "tsig_key_file": "secrets/tsig.key",
        },
        "cozy_acme": {
            "directory": spec.acme_directory,
            "email": email,
            "ca_bundle": "secrets/ca.pem",
        },
    }


def write(fleet: Path, spec: LabSpec, ca_bundle: Path) -> None:
    """Write (or refresh) the lab's fleet. instances.yml is created once and then left alone."""
    (fleet / "group_vars").mkdir(parents=True, exist_ok=True)
    secrets = files.private_dir(fleet / "secrets")
    header = HEADER.format(id=spec.id)
    files.write_atomic(fleet / "group_vars" / "all.yml", header + _dump(group_vars(spec, f"admin@{spec.zone}")))
    files.write_atomic(fleet / "hosts.yml", header + "all:\n  hosts: {}\n")
    instances = fleet / "instances.yml"
    if not instances.exists():
        instances.write_text(
            f"# Instances of the lab fleet (lab {spec.id}); yours to edit.\ninstances: []\n"
        )
    gitignore = fleet / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(".cozyops/\n")
    files.write_atomic(secrets / "ca.pem", ca_bundle.read_bytes())
