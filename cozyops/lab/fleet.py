"""The lab's fleet directory: a ready-to-use fleet in Ansible's conventions, pointing at the lab."""

from __future__ import annotations

from pathlib import Path

import yaml

from cozyops import files
from cozyops.lab import aptrepo
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


# How the lab's hosts are provisioned (docs/provisioning.md, "The lab repository"): cozy-stack and
# couchdb from the lab's own signed repository, no CouchDB accounts (pouchdb-server has none).
LAB_KEYRING = "apt/cozyops-lab-archive-keyring.gpg"


def provisioning_vars(fleet: Path) -> dict:
    host_keyring = f"/usr/share/keyrings/{aptrepo.KEYRING_NAME}"
    return {
        "cozy_apt_repository": aptrepo.source_line(host_keyring),
        "cozy_apt_keyring_file": str(fleet / LAB_KEYRING),
        "cozy_apt_keyring_path": host_keyring,
        "cozy_couchdb_repository": "",
        "cozy_couchdb_admins": False,
        "cozy_stack_couchdb_user": "",
        # A rebuilt lab repository keeps its address: refresh the lists at least every 10 minutes.
        "cozy_apt_cache_valid_time": 600,
        # `instance move` hands the target its export on its loopback (docs/moves.md).
        "cozy_stack_trusted_networks": ["127.0.0.1/32"],
        **_pinned_stack(),
    }


def _pinned_stack() -> dict:
    """The repository holds newer cozy-stack builds for `server upgrade` (docs/upgrades.md): the
    fleet pins the base build, as an operator pins the release their servers run."""
    repo = aptrepo.find()
    return {"cozy_stack_version": aptrepo.stack_versions(repo)["base"]} if repo is not None else {}


def group_vars(spec: LabSpec, email: str, fleet: Path | None = None) -> dict:
    provisioning = provisioning_vars(fleet) if fleet is not None else {}
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
        **provisioning,
    }


def provider_group_vars(spec: LabSpec, provider: str, email: str, fleet: Path | None = None) -> dict:
    """The fleet ``lab-<id>-<provider>`` in the third zone (PowerDNS's), written through
    PowerDNS's API directly or through dns-lexicon's powerdns provider."""
    data = group_vars(spec, email, fleet)
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
    provider: str | None = None,
    api_key_file: Path | None = None,
) -> None:
    """Write (or refresh) the lab's fleet, or with ``provider`` the fleet of the third zone
    written through it (with PowerDNS's API key from ``api_key_file``). instances.yml is created
    once and then left alone."""
    (fleet / "group_vars").mkdir(parents=True, exist_ok=True)
    secrets = files.private_dir(fleet / "secrets")
    header = HEADER.format(id=spec.id)
    repo = aptrepo.find()
    if repo is not None:
        (fleet / LAB_KEYRING).parent.mkdir(exist_ok=True)
        files.write_atomic(fleet / LAB_KEYRING, aptrepo.keyring(repo).read_bytes())
    provisioned = fleet if repo is not None else None
    if provider is None:
        settings = group_vars(spec, f"admin@{spec.zone}", provisioned)
    else:
        if api_key_file is None:
            raise ValueError(f"the {provider} fleet needs PowerDNS's API key file")
        settings = provider_group_vars(spec, provider, f"admin@{spec.zone3}", provisioned)
        key = api_key_file.read_text().strip()
        if provider == "powerdns":
            files.write_private(fleet / API_KEY, key + "\n")
        else:  # lexicon's options for its powerdns provider: the secret one
            files.write_private(fleet / LEXICON_CREDENTIALS, _dump({"auth_token": key}))
    files.write_atomic(fleet / "group_vars" / "all.yml", header + _dump(settings))
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
