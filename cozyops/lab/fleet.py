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


def subdomain_mode(fleet: Path) -> str:
    """The fleet's cozy_subdomains (nested unless the user changed it in group_vars/all.yml)."""
    try:
        data = yaml.safe_load((fleet / "group_vars" / "all.yml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return "nested"
    mode = data.get("cozy_subdomains", "nested")
    return mode if mode in ("nested", "flat") else "nested"


def inventory(hosts: list[dict]) -> dict:
    """hosts.yml: the lab's hosts in group cozy_servers (their SSH settings: ``ssh_settings``)."""
    servers = {
        host["name"]: {"ansible_host": host["address"], "cozy_public_ipv4": host["address"]} for host in hosts
    }
    return {"all": {"children": {"cozy_servers": {"hosts": servers}}}}


def ssh_settings(ssh_key: Path, ssh_config: Path) -> dict:
    """group_vars/cozy_servers.yml: the hosts reached over SSH as root with the lab's key, its
    known_hosts and strict host key checking (all through the lab's ssh_config). Kept in
    group_vars/, not hosts.yml, so that every lab run uses settings only group_vars/ holds."""
    return {
        "ansible_user": "root",
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_ssh_private_key_file": str(ssh_key),
        "ansible_ssh_common_args": f"-F {ssh_config}",
    }


def write(
    fleet: Path,
    spec: LabSpec,
    ca_bundle: Path,
    hosts: list[dict] | None = None,
    ssh_key: Path | None = None,
    ssh_config: Path | None = None,
) -> None:
    """Write (or refresh) the lab's fleet. instances.yml is created once and then left alone."""
    (fleet / "group_vars").mkdir(parents=True, exist_ok=True)
    secrets = files.private_dir(fleet / "secrets")
    header = HEADER.format(id=spec.id)
    files.write_atomic(fleet / "group_vars" / "all.yml", header + _dump(group_vars(spec, f"admin@{spec.zone}")))
    files.write_atomic(fleet / "hosts.yml", header + _dump(inventory(hosts or [])))
    servers_vars = fleet / "group_vars" / "cozy_servers.yml"
    if hosts and ssh_key and ssh_config:
        files.write_atomic(servers_vars, header + _dump(ssh_settings(ssh_key, ssh_config)))
    else:
        servers_vars.unlink(missing_ok=True)
    instances = fleet / "instances.yml"
    if not instances.exists():
        instances.write_text(
            f"# Instances of the lab fleet (lab {spec.id}); yours to edit.\ninstances: []\n"
        )
    gitignore = fleet / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(".cozyops/\n")
    files.write_atomic(secrets / "ca.pem", ca_bundle.read_bytes())
