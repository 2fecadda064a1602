"""The pure part of certificates: names per mode, when one is due, the weekly budget. Tables, no I/O."""

import datetime
from pathlib import Path

import pytest

from cozyops.model import ACME_DIRECTORIES, DnsProviderKind, DnsSettings, Fleet, Instance, SubdomainMode
from cozyops.tls import policy
from cozyops.tls.issuer import Poller, directory_id, directory_url
from cozyops.tls.policy import CertSpec, Issued, Window

UTC = datetime.UTC
T0 = datetime.datetime(2026, 1, 1, tzinfo=UTC)
DAY = datetime.timedelta(days=1)


def fleet(mode: str, *domains: str, zone: str = "example.org") -> Fleet:
    return Fleet("f", Path("/nonexistent"), zone, SubdomainMode(mode), DnsSettings(DnsProviderKind.MANUAL), None, {},
                 tuple(Instance(domain, "h1") for domain in domains))


@pytest.mark.parametrize("mode, domains, expected", [
    ("nested", ["alice.example.org", "bob.example.org"],
     [("alice.example.org", ("alice.example.org", "*.alice.example.org")),
      ("bob.example.org", ("bob.example.org", "*.bob.example.org"))]),
    ("flat", ["alice.example.org", "bob.example.org"],
     [("example.org", ("example.org", "*.example.org"))]),
    ("flat", ["alice.example.org", "carol.users.example.org"],
     [("example.org", ("example.org", "*.example.org")),
      ("users.example.org", ("users.example.org", "*.users.example.org"))]),
    ("nested", [], []),
])
def test_cert_specs_per_mode(mode, domains, expected):
    assert [(spec.name, spec.domains) for spec in policy.cert_specs(fleet(mode, *domains))] == expected


@pytest.mark.parametrize("mode, name, found", [
    ("nested", "alice.example.org", "alice.example.org"),
    ("nested", "ALICE.example.org.", "alice.example.org"),
    ("flat", "alice.example.org", "example.org"),  # an instance: its certificate
    ("flat", "example.org", "example.org"),
    ("nested", "zed.example.org", None),
])
def test_spec_for_name_or_instance(mode, name, found):
    spec = policy.spec_for(fleet(mode, "alice.example.org", "bob.example.org"), name)
    assert (spec.name if spec else None) == found


@pytest.mark.parametrize("now, ari, due", [
    (T0 + 50 * DAY, None, False),  # 90-day certificate: due from day 60
    (T0 + 60 * DAY, None, True),
    (T0 + 89 * DAY, None, True),
    (T0 + 91 * DAY, None, True),  # expired
    (T0 + 10 * DAY, Window(T0 + 20 * DAY, T0 + 22 * DAY), False),  # the CA's window comes first
    (T0 + 21 * DAY, Window(T0 + 20 * DAY, T0 + 22 * DAY), True),
    (T0 + 70 * DAY, Window(T0 + 80 * DAY, T0 + 82 * DAY), False),  # ARI wins over the third
    (T0 + 91 * DAY, Window(T0 + 95 * DAY, T0 + 96 * DAY), True),  # expired whatever the window
])
def test_is_due(now, ari, due):
    assert policy.is_due(now, T0, T0 + 90 * DAY, ari) is due


def spec(*names):
    return CertSpec(names[0], names)


NOW = T0 + 30 * DAY


@pytest.mark.parametrize("wanted, history, limit, allowed, renewals, refused", [
    # unlimited
    ([spec("a.example.org", "*.a.example.org")], [], None, ["a.example.org"], [], []),
    # two left this week: the third is refused
    ([spec("a.example.org"), spec("b.example.org"), spec("c.example.org")],
     [Issued(NOW - DAY, (f"x{i}.example.org",)) for i in range(3)], 5,
     ["a.example.org", "b.example.org"], [], ["c.example.org"]),
    # older than a week: not counted
    ([spec("a.example.org")], [Issued(NOW - 8 * DAY, (f"x{i}.example.org",)) for i in range(5)], 5,
     ["a.example.org"], [], []),
    # a renewal (same name set) is exempt even with no budget left
    ([spec("a.example.org", "*.a.example.org")],
     [Issued(NOW - 40 * DAY, ("*.a.example.org", "a.example.org"))]
     + [Issued(NOW - DAY, (f"x{i}.example.org",)) for i in range(5)], 5,
     [], ["a.example.org"], []),
    # renewals in the history do not use the budget
    ([spec("a.example.org")], [Issued(NOW - DAY, (f"x{i}.example.org",), renewal=True) for i in range(5)], 5,
     ["a.example.org"], [], []),
    # per registered domain: another one has its own budget
    ([spec("a.example.net")], [Issued(NOW - DAY, (f"x{i}.example.org",)) for i in range(5)], 5,
     ["a.example.net"], [], []),
    # names under a public suffix count for their registered domain
    ([spec("a.users.example.co.uk")], [Issued(NOW - DAY, ("b.example.co.uk",))], 1,
     [], [], ["a.users.example.co.uk"]),
])
def test_budget(wanted, history, limit, allowed, renewals, refused):
    verdict = policy.budget(wanted, history, limit, NOW)
    assert [s.name for s in verdict.allowed] == allowed
    assert [s.name for s in verdict.renewals] == renewals
    assert [s.name for s in verdict.refused] == refused


@pytest.mark.parametrize("name, registered", [
    ("alice.example.org", "example.org"),
    ("*.alice.users.example.co.uk", "example.co.uk"),
    ("alice.cozy.test", "cozy.test"),
    ("example.org.", "example.org"),
])
def test_registered_domain(name, registered):
    assert policy.registered_domain(name) == registered


@pytest.mark.parametrize("directory, configured, limit", [
    (ACME_DIRECTORIES["letsencrypt"], None, 50),
    (ACME_DIRECTORIES["letsencrypt-staging"], None, None),
    ("https://ca.example/dir", None, None),
    ("https://ca.example/dir", 10, 10),
    (ACME_DIRECTORIES["letsencrypt"], 0, None),  # 0: unlimited
])
def test_budget_limit(directory, configured, limit):
    assert policy.budget_limit(directory, configured) == limit


def test_directory_names_and_ids():
    assert directory_url("letsencrypt-staging") == ACME_DIRECTORIES["letsencrypt-staging"]
    assert directory_url("https://10.0.0.1:14000/dir") == "https://10.0.0.1:14000/dir"
    assert directory_id("https://10.0.0.1:14000/dir").startswith("10.0.0.1-")
    assert directory_id("https://a/dir") != directory_id("https://a/dir2")


def test_poller_backs_off_and_caps():
    delays = Poller(start=0.05, factor=2, cap=0.3).delays()
    assert [next(delays) for _ in range(5)] == [0.05, 0.1, 0.2, 0.3, 0.3]
