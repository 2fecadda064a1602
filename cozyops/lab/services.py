"""The lab's network services: BIND 9, Knot DNS, PowerDNS and pebble, as configuration and probes.

Each service knows how to write its configuration, the command that runs it in the foreground,
and how to tell it is ready. Starting and stopping is the lab's business (``cozyops.lab.lab``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import jinja2

from cozyops import files, paths
from cozyops.dns.tsig import TsigKey
from cozyops.lab import pki, probe
from cozyops.lab.spec import ACME_MANAGEMENT_PORT, ACME_PORT, DNS_PORT, POWERDNS_API_PORT, LabSpec

# The gsqlite3 backend's schema, as Debian's pdns-backend-sqlite3 installs it.
POWERDNS_SCHEMA = Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql")


def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(paths.data_dir("templates") / "lab"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, **values: object) -> str:
    return _templates().get_template(template).render(**values)


@dataclass
class Service:
    spec: LabSpec
    root: Path  # the service's directory inside the lab directory
    key: TsigKey | None = None  # the DNS servers' TSIG key
    key_file: Path | None = None

    name = ""

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def config(self) -> Path:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write a fresh configuration and fresh zones (a new lab's start)."""
        raise NotImplementedError

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def not_ready(self) -> str | None:
        """None once the service answers; otherwise why not. Runs inside the lab's namespace."""
        raise NotImplementedError

    def _fresh_run_dir(self) -> None:
        shutil.rmtree(self.run, ignore_errors=True)
        self.run.mkdir(parents=True)

    def _zone_file(self, zone: str) -> str:
        return render("zone.j2", spec=self.spec, zone=zone, nameservers=self.spec.nameservers(zone))


class Bind(Service):
    name = "named"

    @property
    def config(self) -> Path:
        return self.root / "named.conf"

    @property
    def address(self) -> str:
        return self.spec.bind_address

    def prepare(self) -> None:
        self._fresh_run_dir()
        (self.run / f"{self.spec.zone}.zone").write_text(self._zone_file(self.spec.zone))
        self.config.write_text(
            render(
                "named.conf.j2",
                spec=self.spec, run=self.run, port=DNS_PORT, key=self.key, key_file=self.key_file,
            )
        )

    def argv(self) -> list[str]:
        # -g: foreground, log to standard error. Run as root (no -u) so it can write its journal.
        return ["named", "-g", "-c", str(self.config)]

    def not_ready(self) -> str | None:
        return probe.soa_reason(self.address, self.spec.zone)[1]


class Knot(Service):
    name = "knotd"

    @property
    def config(self) -> Path:
        return self.root / "knot.conf"

    @property
    def address(self) -> str:
        return self.spec.knot_address

    def prepare(self) -> None:
        self._fresh_run_dir()
        (self.run / "db").mkdir()
        (self.run / f"{self.spec.zone2}.zone").write_text(self._zone_file(self.spec.zone2))
        # The configuration holds the secret, as the key file does.
        files.write_private(
            self.config, render("knot.conf.j2", spec=self.spec, run=self.run, port=DNS_PORT, key=self.key)
        )

    def argv(self) -> list[str]:
        return ["knotd", "-c", str(self.config)]

    def not_ready(self) -> str | None:
        # TCP: a UDP query sent before knotd listens waits out its whole timeout.
        return probe.soa_reason(self.address, self.spec.zone2, tcp=True)[1]


class PowerDns(Service):
    """PowerDNS Authoritative (gsqlite3 backend), primary of the lab's third zone, written through
    its HTTP API with the lab's API key; BIND and Knot transfer the zone from it."""

    name = "pdns_server"
    api_key: str = ""

    @property
    def config(self) -> Path:
        return self.root / "pdns.conf"

    @property
    def address(self) -> str:
        return self.spec.powerdns_address

    @property
    def database(self) -> Path:
        return self.run / "pdns.sqlite3"

    def prepare(self) -> None:
        self._fresh_run_dir()
        files.write_private(self.config, render(
            "pdns.conf.j2", spec=self.spec, run=self.run, port=DNS_PORT, api_port=POWERDNS_API_PORT,
            api_key=self.api_key,
        ))
        self._seed()

    def _seed(self) -> None:
        """The database: the schema, the zone (SOA, NS, glue), the TSIG key that signs its
        NOTIFY and AXFR, and the zone's metadata (written directly: no server needed yet)."""
        zone, key = self.spec.zone3, self.key
        assert key is not None
        nameservers = self.spec.nameservers(zone)
        rows = [(zone, "SOA", f"{nameservers[0][0]} hostmaster.{zone} 1 60 30 600 60")]
        rows += [(zone, "NS", name) for name, _ in nameservers]
        rows += [(name, "A", address) for name, address in nameservers]
        metadata = [
            ("TSIG-ALLOW-AXFR", key.name),
            ("SOA-EDIT-API", "DEFAULT"),
            *[("ALSO-NOTIFY", f"{address}:{DNS_PORT}") for address in (self.spec.bind_address, self.spec.knot_address)],
        ]
        with contextlib.closing(sqlite3.connect(self.database)) as db, db:
            db.executescript(POWERDNS_SCHEMA.read_text())
            domain = db.execute("INSERT INTO domains (name, type) VALUES (?, 'MASTER')", (zone,)).lastrowid
            db.executemany(
                "INSERT INTO records (domain_id, name, type, content, ttl, prio, disabled, auth) "
                "VALUES (?, ?, ?, ?, 60, 0, 0, 1)", [(domain, *row) for row in rows],
            )
            db.executemany("INSERT INTO domainmetadata (domain_id, kind, content) VALUES (?, ?, ?)",
                           [(domain, *item) for item in metadata])
            db.execute("INSERT INTO tsigkeys (name, algorithm, secret) VALUES (?, ?, ?)",
                       (key.name, key.algorithm, key.secret))
        self.database.chmod(0o600)

    def argv(self) -> list[str]:
        return ["pdns_server", f"--config-dir={self.root}"]

    def not_ready(self) -> str | None:
        reason = probe.soa_reason(self.address, self.spec.zone3, tcp=True)[1]
        if reason:
            return reason
        try:
            probe.http_get(f"{self.spec.powerdns_api}/api/v1/servers/localhost", {"X-API-Key": self.api_key})
        except Exception as error:  # noqa: BLE001 - any failure means "not yet"
            return f"API: {error}"
        return None


class Pebble(Service):
    """Let's Encrypt's test CA, validating DNS-01 challenges against the lab's BIND."""

    name = "pebble"

    @property
    def config(self) -> Path:
        return self.root / "pebble-config.json"

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def ca_bundle(self) -> Path:
        """The CA that signed pebble's API certificate: what ACME clients must trust."""
        return self.tls_dir / "ca.pem"

    @property
    def issuing_root(self) -> Path:
        """The root of the certificates pebble issues (new at every pebble start)."""
        return self.root / "pebble-root.pem"

    @property
    def issuing_intermediate(self) -> Path:
        return self.root / "pebble-intermediate.pem"

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        pki.make_server_certificate(
            self.tls_dir,
            f"cozyops lab {self.spec.id} pebble API CA",
            ["localhost", f"acme.{self.spec.zone}"],
            [self.spec.gateway, "127.0.0.1"],
        )
        config = {
            "pebble": {
                "listenAddress": f"{self.spec.gateway}:{ACME_PORT}",
                "managementListenAddress": f"{self.spec.gateway}:{ACME_MANAGEMENT_PORT}",
                "certificate": str(self.tls_dir / "cert.pem"),
                "privateKey": str(self.tls_dir / "key.pem"),
                "httpPort": 80,  # HTTP-01 is validated on the lab hosts' nginx, on port 80 as in production
                "tlsPort": 5001,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        self.config.write_text(json.dumps(config, indent=2) + "\n")

    def argv(self) -> list[str]:
        return ["pebble", "-config", str(self.config), "-dnsserver", f"{self.spec.bind_address}:{DNS_PORT}"]

    def env(self) -> dict[str, str]:
        return {
            "PEBBLE_VA_NOSLEEP": "1",  # no random 0-15 s delay before validating
            "PEBBLE_VA_ALWAYS_VALID": "0",  # really look the TXT records up
            "PEBBLE_WFE_NONCEREJECT": "0",  # deterministic runs; clients must still handle badNonce
            "PEBBLE_AUTHZREUSE": "0",  # fresh authorizations for every order
        }

    def not_ready(self) -> str | None:
        try:
            probe.acme_directory(self.spec.acme_directory, str(self.ca_bundle))
        except Exception as error:  # noqa: BLE001 - any failure means "not yet"
            return str(error) or type(error).__name__
        return None

    def export_roots(self) -> None:
        """Save pebble's current issuing root and intermediate (they change at each start)."""
        base, ca = self.spec.acme_management, str(self.ca_bundle)
        self.issuing_root.write_bytes(probe.fetch(f"{base}/roots/0", ca))
        self.issuing_intermediate.write_bytes(probe.fetch(f"{base}/intermediates/0", ca))
