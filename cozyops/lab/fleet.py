"""The lab's fleet directory: a ready-to-use fleet in Ansible's conventions, pointing at the lab."""

from __future__ import annotations

from pathlib import Path

import yaml

from cozyops import files
from cozyops.lab.spec import LabSpec

# The ready fleets of the lab's third zone, one per provider that writes it through PowerDNS's API.
PROVIDERS = ("powerdns", "lexicon")
API_KEY = "secrets/powerdns-api.key"
LEXICON_CREDENTIALS = "secrets/lexicon.yml"

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


def provider_group_vars(spec: LabSpec, provider: str, email: str) -> dict:
    """The fleet ``lab-<id>-<provider>`` in the third zone (PowerDNS's), written through
    PowerDNS's API directly or through dns-lexicon's powerdns provider."""
    data = group_vars(spec, email)
    data["cozy_fleet_name"] = f"lab-{spec.id}-{provider}"
    data["cozy_zone"] = spec.zone3
    if provider == "powerdns":
        data["cozy_dns"] = {
            "provider": "powerdns",
            "api_url": spec.powerdns_api,
            "server_id": "localhost",
            "api_key_file": API_KEY,
        }
    else:
        data["cozy_dns"] = {
            "provider": "lexicon",
            "lexicon_provider": "powerdns",
            "lexicon_options": {"pdns_server": spec.powerdns_api, "pdns_server_id": "localhost"},
            "credentials_file": LEXICON_CREDENTIALS,
        }
    return data


def subdomain_mode(fleet: Path) -> str:
    """The fleet's cozy_subdomains (nested unless the user changed it in group_vars/all.yml)."""
    try:
        data = yaml.safe_load((fleet / "group_vars" / "all.yml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return "nested"
    mode = data.get("cozy_subdomains", "nested")
    return mode if mode in ("nested", "flat") else "nested"


def inventory(hosts: list[dict], ssh_key: Path | None, ssh_config: Path | None) -> dict:
    """hosts.yml: the lab's hosts in group cozy_servers, reached over SSH as root with the lab's
    key, its known_hosts and strict host key checking (all through the lab's ssh_config)."""
    servers = {
        host["name"]: {"ansible_host": host["address"], "cozy_public_ipv4": host["address"]} for host in hosts
    }
    data: dict = {"all": {"children": {"cozy_servers": {"hosts": servers}}}}
    if hosts and ssh_key and ssh_config:
        data["all"]["vars"] = {
            "ansible_user": "root",
            "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_ssh_private_key_file": str(ssh_key),
            "ansible_ssh_common_args": f"-F {ssh_config}",
        }
    return data


def write(
    fleet: Path,
    spec: LabSpec,
    ca_bundle: Path,
    hosts: list[dict] | None = None,
    ssh_key: Path | None = None,
    ssh_config: Path | None = None,
    provider: str | None = None,
    api_key_file: Path | None = None,
) -> None:
    """Write (or refresh) the lab's fleet, or with ``provider`` the fleet of the third zone
    written through it (with PowerDNS's API key from ``api_key_file``). instances.yml is created
    once and then left alone."""
    (fleet / "group_vars").mkdir(parents=True, exist_ok=True)
    secrets = files.private_dir(fleet / "secrets")
    header = HEADER.format(id=spec.id)
    if provider is None:
        settings = group_vars(spec, f"admin@{spec.zone}")
    else:
        assert api_key_file is not None
        settings = provider_group_vars(spec, provider, f"admin@{spec.zone3}")
        key = api_key_file.read_text().strip()
        if provider == "powerdns":
            files.write_private(fleet / API_KEY, key + "\n")
        else:  # lexicon's options for its powerdns provider: the secret one
            files.write_private(fleet / LEXICON_CREDENTIALS, _dump({"auth_token": key}))
    files.write_atomic(fleet / "group_vars" / "all.yml", header + _dump(settings))
    files.write_atomic(fleet / "hosts.yml", header + _dump(inventory(hosts or [], ssh_key, ssh_config)))
    instances = fleet / "instances.yml"
    if not instances.exists():
        instances.write_text(
            f"# Instances of the lab fleet (lab {spec.id}); yours to edit.\ninstances: []\n"
        )
    gitignore = fleet / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(".cozyops/\n")
    files.write_atomic(secrets / "ca.pem", ca_bundle.read_bytes())
