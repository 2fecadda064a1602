"""The PowerDNS provider: a zone read and written through PowerDNS Authoritative's HTTP API.

In the manner of octoDNS's PowerDNS provider: ``GET /api/v1/servers/<server_id>/zones/<zone>.``
reads the zone (every RRset, its serial, its kind); a plan's changes go as RRset PATCHes, one
request per batch of whole ownership groups (PowerDNS applies a PATCH in one transaction: whole or
not at all). The API has no prerequisites: each apply reads the zone afresh and skips a batch whose
record sets changed since the plan (see :mod:`cozyops.dns.providers.api`). Ownership marks and
ACME challenge values are one TXT value among others at their name: the new RRset is the current
one with the value added or removed. The zone's serial moves with each PATCH (its SOA-EDIT-API);
after writing, a primary zone's secondaries are sent NOTIFY (``PUT .../notify``) at once.

The API key (``X-API-Key``) comes from ``api_key_file`` (or ``api_key_env``) and never appears in
messages; each failure is one :class:`DnsError` line naming the zone and the API.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import quote

import requests

from cozyops.bulk import paused_gc
from cozyops.dns import records
from cozyops.dns.plan import Change
from cozyops.dns.providers import ApplyResult, BatchOutcome, Provider, ZoneData, api
from cozyops.dns.records import RRset
from cozyops.errors import ConfigError, DnsError
from cozyops.model import DEFAULT_TTL, PowerDnsApi

PRIMARY_KINDS = {"master", "primary"}
# A PATCH is one transaction (rolled back on failure) of REPLACE/DELETE changes: sending it again
# is safe. PowerDNS answers 500 when its backend is busy (SQLite: "database is locked" while the
# communicator writes); such answers are retried after these pauses.
RETRY_PAUSES = (0.2, 0.5, 1.0, 2.0, 4.0)
RETRY_STATUSES = {500, 502, 503, 504}


def build(zone: str, settings: PowerDnsApi | None, batch_size: int = 1000) -> PowerDns:
    if not isinstance(settings, PowerDnsApi):
        raise ConfigError(f"zone {zone}", "cozy_dns: the powerdns provider needs api_url and api_key_file")
    key = api.load_secret(settings.api_key_file, f"zone {zone}: cozy_dns.api_key_file")
    return PowerDns(zone, settings, key, batch_size)


class PowerDns(Provider):
    name = "powerdns"

    def __init__(self, zone: str, settings: PowerDnsApi, api_key: str, batch_size: int = 1000) -> None:
        self.zone = zone.rstrip(".").lower()
        self.settings = settings
        self.batch_size = batch_size
        self.url = (f"{settings.api_url}/api/v1/servers/{quote(settings.server_id, safe='')}"
                    f"/zones/{quote(self.zone, safe='')}.")
        self.session = requests.Session()
        self.session.headers.update({"X-API-Key": api_key, "Accept": "application/json"})
        self.session.verify = str(settings.ca_bundle) if settings.ca_bundle else True
        self.kind = ""  # the zone's kind (Native, Master...), as read

    def __repr__(self) -> str:
        return f"PowerDns({self.zone!r} at {self.where})"

    @property
    def where(self) -> str:
        return f"{self.settings.api_url} (server {self.settings.server_id})"

    def describe(self) -> str:
        return f"powerdns provider of zone {self.zone} through the HTTP API at {self.where}"

    def _error(self, reason: str, hint: str | None = None) -> DnsError:
        return DnsError(f"zone {self.zone} at PowerDNS API {self.settings.api_url}", reason, hint)

    def _request(self, method: str, url: str, **kwargs) -> requests.Response:
        for pause in (*RETRY_PAUSES, None):
            response = self._send(method, url, **kwargs)
            if response.status_code not in RETRY_STATUSES or pause is None:
                break
            time.sleep(pause)
        return self._checked(response)

    def _send(self, method: str, url: str, **kwargs) -> requests.Response:
        try:
            return self.session.request(method, url, timeout=self.settings.timeout, **kwargs)
        except requests.exceptions.SSLError as error:
            raise self._error(f"TLS: {error.__class__.__name__}", "cozy_dns.ca_bundle: the CA of the API's "
                              "certificate") from None
        except requests.exceptions.Timeout:
            raise self._error(f"no answer within {self.settings.timeout:g} s") from None
        except requests.exceptions.ConnectionError:
            raise self._error("cannot connect", "is PowerDNS's webserver (api=yes, webserver=yes) listening there?") \
                from None
        except requests.exceptions.RequestException as error:
            raise self._error(f"{error.__class__.__name__}") from None

    def _checked(self, response: requests.Response) -> requests.Response:
        if response.status_code < 400:
            return response
        try:
            detail = str(response.json().get("error") or "")
        except ValueError:
            detail = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
        code = response.status_code
        if code in (401, 403):
            raise self._error(f"HTTP {code}: the API refuses the key",
                              "cozy_dns.api_key_file must hold the server's api-key")
        if code == 404:
            raise self._error(f"HTTP 404: server {self.settings.server_id} has no zone {self.zone}",
                              "create the zone in PowerDNS (pdnsutil create-zone) or check server_id")
        raise self._error(f"HTTP {code}" + (f": {detail}" if detail else ""))

    # -- reading -------------------------------------------------------------------------------

    @paused_gc
    def read(self) -> ZoneData:
        """Every enabled record of the zone, by (relative name, type)."""
        data = self._request("GET", self.url).json()
        self.kind = str(data.get("kind", ""))
        rrsets: dict[tuple[str, str], RRset] = {}
        suffix = "." + self.zone + "."
        apex = self.zone + "."
        for rrset in data.get("rrsets", ()):
            owner = rrset["name"].lower()
            if owner == apex:
                name = "@"
            elif owner.endswith(suffix):
                name = owner[: -len(suffix)]
            else:
                continue
            rtype = rrset["type"]
            values = [api.canonical(rtype, record["content"]) for record in rrset.get("records", ())
                      if not record.get("disabled")]
            if values:
                rrsets[(name, rtype)] = RRset(name, rtype, int(rrset.get("ttl", 0)), tuple(sorted(set(values))))
        serial = int(data.get("serial") or 0)
        return ZoneData(self.zone, serial, rrsets, records.mark_index(rrsets))

    def soa_serial(self) -> int:
        data = self._request("GET", self.url, params={"rrsets": "false"}).json()
        return int(data.get("serial") or 0)

    # -- writing -------------------------------------------------------------------------------

    def _rrset(self, key: tuple[str, str], rrset: RRset | None) -> dict:
        name, rtype = key
        body: dict = {"name": records.fqdn(name, self.zone), "type": rtype}
        if rrset is None:
            body["changetype"] = "DELETE"
        else:
            body.update(changetype="REPLACE", ttl=rrset.ttl,
                        records=[{"content": value, "disabled": False} for value in rrset.values])
        return body

    def _patch(self, after: dict[tuple[str, str], RRset | None]) -> None:
        self._request("PATCH", self.url, json={"rrsets": [self._rrset(key, rrset) for key, rrset in after.items()]})

    def _notify(self) -> None:
        """Tell a primary zone's secondaries now (PowerDNS would on its next check of serials)."""
        if self.kind.lower() in PRIMARY_KINDS:
            try:
                self._request("PUT", self.url + "/notify")
            except DnsError:
                pass  # the secondaries still learn of the change on PowerDNS's own schedule

    @paused_gc
    def apply(self, changes: list[Change], on_batch: Callable[[BatchOutcome], None] | None = None) -> ApplyResult:
        """One PATCH per batch; a batch whose record sets changed since the plan is skipped and
        reported (the others go on); an API failure stops the apply, raised after ``on_batch``."""
        if not changes:
            return ApplyResult()
        zone = self.read().rrsets
        written = []

        def write(batch: list[Change]) -> None:
            after = api.after(batch, zone, DEFAULT_TTL)
            self._patch(after)
            written.append(batch)
            for key, rrset in after.items():
                if rrset is None:
                    zone.pop(key, None)
                else:
                    zone[key] = rrset

        try:
            return api.apply_batches(changes, self.batch_size, zone, write, on_batch)
        finally:
            if written:  # also after a failure: the batches before it are in the zone
                self._notify()

    # -- ACME challenges -----------------------------------------------------------------------

    def change_txts(self, adds: list[tuple[str, str, int]] = (), deletes: list[tuple[str, str]] = ()) -> int:
        """Challenge values added beside and removed from the others at their names, in PATCHes
        of at most ``batch_size`` record sets (one read of the zone first). Returns the requests."""
        if not adds and not deletes:
            return 0
        for fqdn, *_ in [*adds, *deletes]:
            if fqdn.rstrip(".").lower() != self.zone and not fqdn.rstrip(".").lower().endswith("." + self.zone):
                raise self._error(f"{fqdn} is not in the zone")
        after = api.txt_after(list(adds), list(deletes), self.zone, self.read().rrsets)
        items = list(after.items())
        sent = 0
        for start in range(0, len(items), self.batch_size):
            self._patch(dict(items[start:start + self.batch_size]))
            sent += 1
        self._notify()
        return sent + 1
