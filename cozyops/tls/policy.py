"""The pure part of certificates: which certificate covers which names, when one is due, the budget.

- **Names**: nested mode gives each instance ``alice.ZONE`` + ``*.alice.ZONE``; flat mode gives
  each parent name (the zone, or ``users.ZONE`` for ``alice.users.ZONE``) ``P`` + ``*.P``, shared
  by the instances under it. With HTTP-01 (``cozy_acme.challenge: http-01``), which cannot
  validate a wildcard: one certificate per instance, named after it, for the instance and each of
  its apps' hosts (nested ``drive.alice.ZONE``, flat ``alice-drive.ZONE``); adding an app changes
  its names, and the certificate is issued again.
- **Due**: within the CA's ARI window (RFC 9773) when it gave one, else when a third of the
  lifetime is left; expired is always due.
- **Budget**: Let's Encrypt production allows 50 new certificates per registered domain per week;
  a renewal (exactly the same set of names as an earlier certificate) is exempt.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field

from cozyops.model import ACME_DIRECTORIES, Fleet, SubdomainMode

WEEK = datetime.timedelta(days=7)
# Known limits of new certificates per registered domain per week, by directory URL.
KNOWN_BUDGETS = {ACME_DIRECTORIES["letsencrypt"]: 50}


@dataclass(frozen=True)
class CertSpec:
    """One certificate the fleet needs: its name (the directory it is stored in) and its names."""

    name: str
    domains: tuple[str, ...]  # the base name first, then its wildcard (HTTP-01: its app hosts)
    instances: tuple[str, ...] = ()


def order_names(base: str) -> tuple[str, ...]:
    base = base.rstrip(".").lower()
    return (base, f"*.{base}")


def parent(domain: str) -> str:
    return domain.split(".", 1)[1]


def app_host(mode: SubdomainMode, domain: str, app: str) -> str:
    """``drive.alice.ZONE`` (nested) or ``alice-drive.ZONE`` (flat)."""
    if mode is SubdomainMode.FLAT:
        first, rest = domain.split(".", 1)
        return f"{first}-{app}.{rest}"
    return f"{app}.{domain}"


def http01_names(mode: SubdomainMode, domain: str, apps: Iterable[str]) -> tuple[str, ...]:
    """An HTTP-01 certificate's names: the instance first, then its app hosts (sorted, no wildcard)."""
    domain = domain.rstrip(".").lower()
    return (domain, *sorted({app_host(mode, domain, app.lower()) for app in apps} - {domain}))


def is_http01(fleet: Fleet) -> bool:
    return fleet.acme is not None and fleet.acme.challenge == "http-01"


def cert_specs(fleet: Fleet) -> list[CertSpec]:
    """Every certificate the fleet's instances need, by name (sorted)."""
    if is_http01(fleet):
        return sorted((CertSpec(instance.domain, http01_names(fleet.subdomains, instance.domain, instance.apps),
                                (instance.domain,)) for instance in fleet.instances), key=lambda spec: spec.name)
    bases: dict[str, list[str]] = {}
    for instance in fleet.instances:
        base = instance.domain if fleet.subdomains is SubdomainMode.NESTED else parent(instance.domain)
        bases.setdefault(base, []).append(instance.domain)
    return [CertSpec(base, order_names(base), tuple(sorted(domains))) for base, domains in sorted(bases.items())]


def spec_for(fleet: Fleet, name: str, specs: list[CertSpec] | None = None) -> CertSpec | None:
    """The certificate called ``name``, or the one covering instance ``name``."""
    name = name.rstrip(".").lower()
    for spec in specs if specs is not None else cert_specs(fleet):
        if spec.name == name or name in spec.instances:
            return spec
    return None


def to_do(status: str, renew_only: bool, force: bool) -> tuple[bool, bool] | None:
    """Whether a certificate in ``status`` is issued by a run, as (issue, is a renewal); None: not.

    ``missing`` is issued unless only renewals are asked; ``names changed`` (the instance's apps
    changed since: HTTP-01) is issued again even then, as a new certificate (new names count in the
    budget); ``due`` and ``expired`` are renewed, ``valid`` too when forced.
    """
    if status == "missing":
        return None if renew_only else (True, False)
    if status == "names changed":
        return True, False
    if status in ("due", "expired") or (force and status == "valid"):
        return True, True
    return None


# -- due -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    start: datetime.datetime
    end: datetime.datetime


def renewal_time(not_before: datetime.datetime, not_after: datetime.datetime, ari: Window | None) -> datetime.datetime:
    """When to renew: the start of the ARI window, else when a third of the lifetime is left."""
    if ari is not None:
        return min(ari.start, not_after)
    return not_after - (not_after - not_before) / 3


def is_due(now: datetime.datetime, not_before: datetime.datetime, not_after: datetime.datetime,
           ari: Window | None) -> bool:
    return now >= not_after or now >= renewal_time(not_before, not_after, ari)


# -- budget ----------------------------------------------------------------------------------------


@functools.cache
def _psl():
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def registered_domain(name: str) -> str:
    """The registered domain (public suffix + 1 label) of ``name``, as Let's Encrypt counts it."""
    name = name.rstrip(".").lower().removeprefix("*.")
    return _psl().privatesuffix(name) or name


def names_key(domains: Iterable[str]) -> str:
    return ",".join(sorted({domain.rstrip(".").lower() for domain in domains}))


@dataclass(frozen=True)
class Issued:
    """An issuance of the past: when, and its names (for the budget)."""

    at: datetime.datetime
    domains: tuple[str, ...]
    renewal: bool = False  # renewals do not count against the weekly limit


@dataclass
class BudgetVerdict:
    allowed: list[CertSpec] = field(default_factory=list)
    renewals: list[CertSpec] = field(default_factory=list)  # exempt
    refused: list[CertSpec] = field(default_factory=list)  # over the budget this week
    left: dict[str, int] = field(default_factory=dict)  # registered domain -> new certificates left after the plan
    limit: int | None = None


def budget(wanted: list[CertSpec], history: list[Issued], limit: int | None,
           now: datetime.datetime) -> BudgetVerdict:
    """Split ``wanted`` into renewals (exempt), new certificates within the weekly limit, and refused.

    The limit counts new certificates (a name set never issued before) per registered domain over
    the last 7 days; ``None`` is unlimited.
    """
    verdict = BudgetVerdict(limit=limit)
    seen = {names_key(issued.domains) for issued in history}
    used: dict[str, int] = {}
    for issued in history if limit is not None else ():
        if now - issued.at < WEEK and not issued.renewal:
            for domain in {registered_domain(d) for d in issued.domains}:
                used[domain] = used.get(domain, 0) + 1
    for spec in wanted:
        if names_key(spec.domains) in seen:
            verdict.renewals.append(spec)
            continue
        if limit is None:  # unlimited: no need for the public suffix list
            verdict.allowed.append(spec)
            continue
        domains = {registered_domain(d) for d in spec.domains}
        if any(used.get(d, 0) >= limit for d in domains):
            verdict.refused.append(spec)
            continue
        for d in domains:
            used[d] = used.get(d, 0) + 1
        verdict.allowed.append(spec)
    if limit is not None:
        for spec in wanted:
            for d in {registered_domain(x) for x in spec.domains}:
                verdict.left[d] = max(0, limit - used.get(d, 0))
    return verdict


def budget_limit(directory: str, configured: int | None) -> int | None:
    """The weekly limit of new certificates: configured, else the CA's known one, else none."""
    if configured is not None:
        return configured or None
    return KNOWN_BUDGETS.get(directory)
