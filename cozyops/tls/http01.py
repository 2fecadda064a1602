"""HTTP-01 through the provisioned nginx: challenge files on each instance's server, removed after.

For fleets without a DNS API (``cozy_acme.challenge: http-01``). The CA fetches
``http://<name>/.well-known/acme-challenge/<token>`` on port 80; the nginx role serves that path
from ``cozy_acme_webroot`` (/var/www/html by default) for every site. So the key authorization of
each challenge is written, through the server's transport (:func:`cozyops.transport.fleet.transport`),
to ``<webroot>/.well-known/acme-challenge/<token>`` on the server of the instance the name belongs
to, and removed after validation, whatever happened.

The solver has the DNS-01 solver's shape (:class:`cozyops.tls.solver.Dns01Solver`: ``target``,
``publish``, ``wait``, ``cleanup``, ``sweep``). Every file is journaled in the fleet's state
(:class:`cozyops.state.Challenges`, "zone" ``http-01:<server>``, the path and the value) before it
is written, and forgotten once removed: a run killed in between leaves it journaled, and the next
run removes it first (:meth:`Http01Solver.sweep`).
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cozyops import state
from cozyops.errors import CozyopsError
from cozyops.model import Fleet, Server
from cozyops.tls import policy

if TYPE_CHECKING:  # the transport (paramiko) is loaded only when a run writes challenge files
    from cozyops.transport.base import Transport

DEFAULT_WEBROOT = "/var/www/html"  # the nginx role's cozy_acme_webroot default
PREFIX = "http-01:"  # the journal's "zone" of a server's challenge files
CHALLENGE_DIR = ".well-known/acme-challenge"


class Http01Error(CozyopsError):
    """A challenge file could not be written on (or removed from) a server."""


def webroot(server: Server) -> str:
    return str(dict(server.site_vars).get("cozy_acme_webroot") or DEFAULT_WEBROOT).rstrip("/")


def token_of(value: str) -> str:
    """A key authorization's token (``token.thumbprint``, RFC 8555 §8.1)."""
    return value.split(".", 1)[0]


@dataclass
class Published:
    """What a publish wrote, per server: (path, value)."""

    values: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    messages: int = 0  # for the run's summary: commands run on servers

    def add(self, server: str, path: str, value: str) -> None:
        self.values.setdefault(server, []).append((path, value))


class Http01Solver:
    def __init__(self, fleet: Fleet, transport_for: Callable[[Server], Transport],
                 journal: state.Challenges | None = None) -> None:
        self.fleet = fleet
        self.transport_for = transport_for
        self.journal = journal
        self._owner: dict[str, str] = {}  # name -> server of its instance
        for spec in policy.cert_specs(fleet) if policy.is_http01(fleet) else ():
            server = next(instance.server for instance in fleet.instances if instance.domain == spec.name)
            for name in spec.domains:
                self._owner[name] = server
        self._transports: dict[str, Transport] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()

    def _transport(self, server: str) -> Transport:
        with self._lock:
            if server not in self._transports:
                self._transports[server] = self.transport_for(self.fleet.servers[server])
            return self._transports[server]

    def target(self, domain: str) -> tuple[str, str]:
        """The server answering for ``domain`` and its challenge directory; an Http01Error naming the
        name when no instance of the fleet has it (a wildcard: HTTP-01 cannot validate one)."""
        name = domain.rstrip(".").lower()
        server = self._owner.get(name)
        if server is None or server not in self.fleet.servers:
            raise Http01Error(name, "is no name of an instance of the fleet (HTTP-01 cannot validate wildcards)")
        return server, f"{webroot(self.fleet.servers[server])}/{CHALLENGE_DIR}"

    def publish(self, items: list[tuple[str, str]]) -> Published:
        """Write every (domain, key authorization) on its server. On failure, nothing of the call stays."""
        wanted = Published()
        for domain, value in items:
            server, folder = self.target(domain)
            wanted.add(server, f"{folder}/{token_of(value)}", value)
        done = Published()
        try:
            for server, values in wanted.values.items():
                if self.journal is not None:
                    self.journal.add(PREFIX + server, values)
                done.values[server] = values
                transport = self._transport(server)
                folders = sorted({path.rsplit("/", 1)[0] for path, _ in values})
                transport.run(["mkdir", "-p", *folders]).check(server)
                for path, value in values:
                    transport.put(value.encode(), path, 0o644)
                done.messages += 1
        except BaseException:
            self.cleanup(done)
            raise
        return done

    def wait(self, published: Published, deadline: float | None = None) -> None:
        """Nothing to wait for: nginx serves each file from disk as soon as it is written."""

    def _remove(self, server: str, values: list[tuple[str, str]]) -> None:
        if server not in self.fleet.servers:
            raise Http01Error(f"server {server}", f"{len(values)} challenge file(s) left by an interrupted run, "
                              "and the server is no longer in the fleet: remove them there")
        paths = " ".join(shlex.quote(path) for path, _ in values)
        self._transport(server).run(["sh", "-c", f"rm -f {paths}"]).check(server)
        if self.journal is not None:
            self.journal.remove(PREFIX + server, values)

    def cleanup(self, published: Published) -> list[str]:
        """Remove every file published (each server tried); the errors, if any."""
        problems = []
        for server, values in published.values.items():
            try:
                self._remove(server, values)
            except CozyopsError as error:
                problems.append(str(error))
        return problems

    def sweep(self) -> list[str]:
        """Remove the files an interrupted run left (journaled, never removed); the problems."""
        if self.journal is None:
            return []
        problems = []
        for zone, values in state.Challenges(self.journal.db).left(other_runs_only=False).items():
            if zone.startswith(PREFIX):
                try:
                    self._remove(zone.removeprefix(PREFIX), values)
                except CozyopsError as error:
                    problems.append(str(error))
        return problems
