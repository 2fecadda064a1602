"""An instance's nginx site: rendered from the nginx role's own template (one source for Ansible
and for cozyops), written over the server's transport, tested by ``nginx -t``, reloaded.

A site is named after the certificate it serves (``cozyops.tls.policy``): the instance in nested
mode, its parent (the zone's wildcard) in flat mode, the instance with HTTP-01 in both (flat: its
``server_name`` is the instance and a regex of its ``<first>-<app>`` hosts); ``/etc/nginx/sites-available/cozy-<name>``,
enabled by a link in sites-enabled. Its third line names the fleet that wrote it
(``# cozyops fleet: NAME``): a fleet reads every site of the server but changes and removes only
its own. Until the site's certificate is deployed, a self-signed stand-in lets nginx start (as the
role does); ``cozyops.tls.deploy`` replaces it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shlex
from dataclasses import dataclass

import yaml

from cozyops import paths
from cozyops.errors import CozyopsError
from cozyops.model import Fleet, Server, SubdomainMode
from cozyops.transport.base import Transport

AVAILABLE, ENABLED = "/etc/nginx/sites-available", "/etc/nginx/sites-enabled"
MARK = "# cozyops fleet: "


class SiteError(CozyopsError):
    """nginx refused a site (the server keeps what it had)."""


@functools.cache
def _template():
    import jinja2

    role = paths.data_dir("playbooks") / "roles" / "nginx"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(role / "templates")), keep_trailing_newline=True,
                             trim_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["basename"] = os.path.basename  # Ansible's, used in a default() the fleet's name fills
    env.filters["regex_escape"] = re.escape  # Ansible's (flat HTTP-01 sites: the instance's app hosts)
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
    plain = {key: value for key, value in defaults.items() if not (isinstance(value, str) and "{{" in value)}
    return env.get_template("nginx-site.conf.j2"), plain


def site_name(fleet: Fleet, domain: str) -> str:
    """The site (and certificate) name serving ``domain``: with HTTP-01 (one certificate per
    instance) always the instance; flat mode's sites, with their app hosts' regex."""
    http01 = fleet.acme is not None and fleet.acme.challenge == "http-01"
    return domain if http01 or fleet.subdomains is SubdomainMode.NESTED else domain.split(".", 1)[1]


def desired_names(fleet: Fleet) -> dict[str, set[str]]:
    """server -> the site names its instances need."""
    found: dict[str, set[str]] = {name: set() for name in fleet.servers}
    for instance in fleet.instances:
        found[instance.server].add(site_name(fleet, instance.domain))
    return found


def variables(fleet: Fleet, server: Server) -> dict:
    _, defaults = _template()
    found = dict(defaults)
    if fleet.acme is not None:
        found["cozy_tls_deploy_dir"] = fleet.acme.deploy_dir
        found["cozy_acme"] = {"challenge": fleet.acme.challenge}
    found.update(dict(server.site_vars))
    found.update({"cozy_fleet_name": fleet.name, "cozy_subdomains": fleet.subdomains.value,
                  "inventory_dir": str(fleet.root)})
    return found


def render(fleet: Fleet, server: Server, name: str) -> str:
    """The site ``name`` on ``server`` as the nginx role writes it."""
    template, _ = _template()
    return template.render(item=name, **variables(fleet, server))


def digest(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


@dataclass(frozen=True)
class Found:
    """A cozy site on a server: its content's digest, whether enabled, the fleet it names (or '')."""

    name: str
    digest: str
    enabled: bool
    fleet: str
    cert_digest: str  # sha256 of <deploy_dir>/<name>/fullchain.pem ('' when absent)


def observe(transport: Transport, deploy_dir: str) -> dict[str, Found]:
    """Every ``cozy-*`` site of the server (any fleet's), in one command."""
    script = (
        f"cd {AVAILABLE} 2>/dev/null || exit 0; for f in cozy-*; do [ -f \"$f\" ] || continue; n=${{f#cozy-}}; "
        f"m=$(sed -n 's/^{MARK}//p' \"$f\" | head -n1); h=$(sha256sum < \"$f\" | cut -c1-64); e=0; "
        f"[ -e {ENABLED}/\"$f\" ] && e=1; c=''; p={shlex.quote(deploy_dir)}/\"$n\"/fullchain.pem; "
        f"[ -f \"$p\" ] && c=$(sha256sum < \"$p\" | cut -c1-64); "
        f"printf '%s\\t%s\\t%s\\t%s\\t%s\\n' \"$n\" \"$h\" \"$e\" \"$c\" \"$m\"; done"
    )
    result = transport.run(["sh", "-c", script]).check(transport.name)
    found = {}
    for line in result.stdout.decode(errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) == 5:
            name, hashed, enabled, cert, fleet = parts
            found[name] = Found(name, hashed, enabled == "1", fleet.strip(), cert)
    return found


def _stand_in(deploy_dir: str, name: str) -> str:
    """The role's self-signed stand-in (nginx needs a certificate to load a site), if none is there."""
    folder = f"{deploy_dir.rstrip('/')}/{name}"
    q = shlex.quote
    return (f"[ -f {q(folder)}/fullchain.pem ] || {{ mkdir -p {q(folder)} && chmod 700 {q(folder)} && "
            f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN={q(name)} "
            f"-addext subjectAltName=DNS:{q(name)},DNS:*.{q(name)} -keyout {q(folder)}/privkey.pem "
            f"-out {q(folder)}/fullchain.pem >/dev/null 2>&1; }}")


def apply(transport: Transport, write: dict[str, str], remove: list[str], deploy_dir: str,
          reload: str = "service nginx reload") -> None:
    """Write the sites ``write`` (name -> text) and remove the sites ``remove`` on one server, then
    ``nginx -t`` and one reload. When nginx refuses, every file is put back as it was and a
    SiteError names the first line of its complaint."""
    if not write and not remove:
        return
    host, q = transport.name, shlex.quote
    names = sorted(set(write) | set(remove))
    keep = " ".join(f"{AVAILABLE}/cozy-{q(n)}" for n in names)
    transport.run(["sh", "-c", f"mkdir -p {AVAILABLE} {ENABLED}; for f in {keep}; do "
                   f"if [ -e \"$f\" ]; then cp -p \"$f\" \"$f.cozyops-old\"; else rm -f \"$f.cozyops-old\"; fi; done"]
                  ).check(host)
    for name, text in write.items():
        transport.put(text.encode(), f"{AVAILABLE}/cozy-{name}", 0o644)
    steps = [_stand_in(deploy_dir, name) for name in sorted(write)]
    steps += [f"ln -sfn ../sites-available/cozy-{q(name)} {ENABLED}/cozy-{q(name)}" for name in sorted(write)]
    steps += [f"rm -f {ENABLED}/cozy-{q(name)} {AVAILABLE}/cozy-{q(name)}" for name in sorted(remove)]
    transport.run(["sh", "-c", " && ".join(steps) or "true"]).check(host)
    test = transport.run(["nginx", "-t"])
    if test.returncode != 0:
        lines = [line for line in test.stderr.decode(errors="replace").splitlines() if "emerg" in line] \
            or test.stderr.decode(errors="replace").strip().splitlines()[-1:] or [f"exit {test.returncode}"]
        restore = " ".join(
            f"if [ -e {AVAILABLE}/cozy-{q(n)}.cozyops-old ]; then mv -f {AVAILABLE}/cozy-{q(n)}.cozyops-old "
            f"{AVAILABLE}/cozy-{q(n)}; ln -sfn ../sites-available/cozy-{q(n)} {ENABLED}/cozy-{q(n)}; else "
            f"rm -f {AVAILABLE}/cozy-{q(n)} {ENABLED}/cozy-{q(n)}; fi;" for n in names)
        transport.run(["sh", "-c", restore])
        raise SiteError(f"server {host}", f"nginx -t refuses the sites {', '.join(names)}, the previous ones are "
                        f"kept: {lines[0].strip()}")
    transport.run(["sh", "-c", f"rm -f {' '.join(f'{AVAILABLE}/cozy-{q(n)}.cozyops-old' for n in names)}"])
    transport.run(reload).check(host)
