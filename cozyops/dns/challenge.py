"""ACME DNS-01 challenge records: TXT values at ``_acme-challenge.<name>``, following a CNAME.

A certificate for ``alice.example.org`` and ``*.alice.example.org`` needs two TXT values at the
same name at once: values are added beside the others and removed one by one, never by replacing
the record set. When ``_acme-challenge.<name>`` is a CNAME (delegated to a zone the fleet's DNS
credentials may update, as with ``cozy_dns.acme_challenge``), the value is written at its target,
as the CA will follow it.

Every value is written through the DNS provider interface (:mod:`cozyops.dns.providers`); the
values a run publishes are journaled in the fleet's state first (:class:`cozyops.state.Challenges`),
so that :meth:`ChallengeWriter.sweep` removes, at the next run, what an interrupted run left: only
values journaled by this fleet, never another TXT value at the same name.
"""

from __future__ import annotations

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdatatype

from cozyops import state
from cozyops.dns.providers import Provider
from cozyops.errors import DnsError

CHALLENGE_TTL = 60
MAX_CNAME_HOPS = 8


def challenge_name(domain: str) -> str:
    """``*.alice.example.org`` and ``alice.example.org`` -> ``_acme-challenge.alice.example.org.``."""
    return f"_acme-challenge.{domain.rstrip('.').lower().removeprefix('*.')}."


def _in_zone(name: str, zone: str) -> bool:
    name = name.rstrip(".")
    return name == zone or name.endswith("." + zone)


class ChallengeWriter:
    """Writes challenge TXT values through the providers that may update their zones."""

    def __init__(self, zone: str, providers: list[Provider], servers: list[str]) -> None:
        self.zone = zone
        self.providers = providers  # the writing ones: the fleet zone's, the delegated challenge zone's
        self.servers = servers  # addresses authoritative for the fleet's zone, to follow CNAMEs

    def _cname(self, name: str) -> str | None:
        """The CNAME target at ``name``, as the fleet zone's authoritative servers serve it."""
        query = dns.message.make_query(name, dns.rdatatype.CNAME)
        query.flags &= ~dns.flags.RD
        problems = []
        for address in self.servers:
            try:
                response = dns.query.udp(query, address, timeout=3)
            except (OSError, dns.exception.DNSException) as error:
                problems.append(f"{address}: {error or type(error).__name__}")
                continue
            qname = dns.name.from_text(name)
            for rrset in response.answer:
                if rrset.name == qname and rrset.rdtype == dns.rdatatype.CNAME:
                    return rrset[0].target.to_text().lower()
            return None
        raise DnsError(f"{name} CNAME", "no authoritative server answered: " + "; ".join(problems))

    def target(self, domain: str) -> tuple[str, Provider]:
        """Where the TXT for ``domain`` goes, and the provider that writes it there."""
        name = challenge_name(domain)
        for _ in range(MAX_CNAME_HOPS):
            if not _in_zone(name, self.zone) or not self.servers:
                break
            target = self._cname(name)
            if target is None:
                break
            name = target
        for provider in self.providers:
            if _in_zone(name, provider.zone):
                return name, provider
        zones = ", ".join(provider.zone for provider in self.providers) or "none (manual provider)"
        raise DnsError(
            name, "is in no zone this fleet may update (zones it may: " + zones + ")",
            "with the manual provider, delegate _acme-challenge names by CNAME (cozy_dns.acme_challenge) "
            "and paste the CNAMEs of `cozyops dns plan`",
        )

    def present(self, domain: str, value: str, ttl: int = CHALLENGE_TTL) -> str:
        """Add the value (beside others); returns the name written."""
        name, provider = self.target(domain)
        provider.present_txt(name, value, ttl)
        return name

    def cleanup(self, domain: str, value: str) -> str:
        """Remove this value only; returns the name it was removed from."""
        name, provider = self.target(domain)
        provider.cleanup_txt(name, value)
        return name

    def sweep(self, db) -> list[str]:
        """Remove the challenge values journaled in the fleet's state ``db`` and never cleaned up
        (an interrupted run's); the problems, if any (the values then stay journaled)."""
        journal = state.Challenges(db)
        problems = []
        for zone, values in journal.left(other_runs_only=False).items():
            if zone.startswith("http-01:"):  # HTTP-01 challenge files (cozyops.tls.http01) are swept there
                continue
            provider = next((provider for provider in self.providers if provider.zone == zone), None)
            if provider is None:
                problems.append(f"zone {zone}: {len(values)} challenge value(s) left by an interrupted run, "
                                "and the fleet no longer writes that zone: remove them at the DNS host")
                continue
            try:
                provider.change_txts(deletes=values)
            except DnsError as error:
                problems.append(str(error))
                continue
            journal.remove(zone, values)
        return problems
