"""A server's FORMERR answer to an UPDATE is reported as such, never as a TSIG problem (issue 12,
item 5): BIND answers a message it cannot parse (here: an owner name longer than 255 octets) with
an unsigned FORMERR."""

from __future__ import annotations

import pytest

from cozyops.dns.plan import CREATE, Change
from cozyops.dns.providers.rfc2136 import Rfc2136
from cozyops.errors import DnsError
from tests.integration.test_dns import addresses, inside, tag

pytestmark = pytest.mark.lab


def test_formerr_is_reported_as_formerr_not_as_tsig(lab):
    zone, server, _ = addresses(lab, "bind")
    provider = Rfc2136(zone, server, lab.key(), timeout=5)
    long_name = ".".join(["a" * 63] * 3) + f".{'b' * 50}.x{tag()}"  # with the zone: more than 255 octets
    assert len(long_name) + 1 + len(zone) > 253
    change = Change(CREATE, long_name, "A", 60, ("192.0.2.10",), None, (), long_name)
    with pytest.raises(DnsError) as raised:
        inside(lab, lambda: provider.apply([change]))
    message = str(raised.value)
    assert message.startswith(f"zone {zone} at {server} (TSIG key {lab.spec.key_name}): FORMERR: "), message
    assert "TSIG failure" not in message and "BADSIG" not in message and "signature" not in message
    assert lab.key().secret not in message
