"""The lexicon provider: a zone at a registrar or DNS host, through dns-lexicon (as YunoHost does).

dns-lexicon speaks to about a hundred providers' APIs with one record-at-a-time interface (list,
create, delete). It is imported only when a fleet uses it. cozyops gives it the zone from
``cozy_zone`` itself: lexicon's client would guess it from the public suffix list (tldextract),
which takes ``cozy3.test`` for the zone ``test.`` and needs care for ``example.co.uk`` style
zones, and fetches that list from the network.

Records go one value at a time, so a batch (whole ownership groups) is not atomic: a failure stops
the apply, reported with the batch, and the next plan picks up what is missing. As with PowerDNS
each apply reads the zone afresh and skips a batch whose record sets changed since the plan.
Ownership marks and challenge values are single TXT values created beside the others at their name
and deleted by content (lexicon's create adds a value; whether a provider keeps several values at
one name is what a user must check for theirs, see docs/dns-providers.md).

Credentials: ``credentials_file`` (a YAML mapping of lexicon's options for the provider, mode 0600),
else lexicon's own environment variables ``LEXICON_<PROVIDER>_<OPTION>``. They never appear in
messages: any of their values in an error text is replaced by ``***``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import yaml

from cozyops.dns import records
from cozyops.dns.plan import CREATE, DELETE, Change
from cozyops.dns.providers import ApplyResult, BatchOutcome, Provider, ZoneData, api
from cozyops.dns.records import RRset
from cozyops.errors import ConfigError, DnsError
from cozyops.model import DEFAULT_TTL, LexiconApi

# Types whose values are domain names: lexicon gives and takes them without the final dot.
NAME_TYPES = {"CNAME", "NS", "MX", "PTR", "SRV", "DNAME"}


def build(zone: str, settings: LexiconApi | None, batch_size: int = 1000) -> Lexicon:
    if not isinstance(settings, LexiconApi):
        raise ConfigError(f"zone {zone}", "cozy_dns: the lexicon provider needs lexicon_provider")
    secrets: dict[str, str] = {}
    if settings.credentials_file is not None:
        what = f"zone {zone}: cozy_dns.credentials_file"
        try:
            data = yaml.safe_load(settings.credentials_file.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(what, f"{settings.credentials_file}: unreadable ({type(error).__name__})") from None
        if not isinstance(data, dict):
            raise ConfigError(what, f"{settings.credentials_file}: must be a mapping of lexicon options")
        secrets = {str(key): str(value) for key, value in data.items()}
    return Lexicon(zone, settings, secrets, batch_size)


class Lexicon(Provider):
    name = "lexicon"

    def __init__(self, zone: str, settings: LexiconApi, secrets: dict[str, str], batch_size: int = 1000) -> None:
        self.zone = zone.rstrip(".").lower()
        self.settings = settings
        self.batch_size = batch_size
        self._secrets = secrets
        self._config: dict = {}
        self._client = None

    def __repr__(self) -> str:
        return f"Lexicon({self.zone!r} through {self.settings.provider})"

    @property
    def where(self) -> str:
        return f"dns-lexicon's {self.settings.provider} provider"

    def describe(self) -> str:
        return f"lexicon provider of zone {self.zone} through {self.where}"

    def _error(self, reason: str, hint: str | None = None) -> DnsError:
        return DnsError(f"zone {self.zone} through {self.where}", reason, hint)

    def _explain(self, error: BaseException) -> DnsError:
        """One line for a failure inside lexicon, with no secret in it."""
        if isinstance(error, DnsError):
            return error
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        for secret in [*self._secrets.values(), *self._env_secrets()]:
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return self._error(f"{type(error).__name__}" + (f": {text[:300]}" if text else ""))

    def _env_secrets(self) -> list[str]:
        import os

        prefix = f"LEXICON_{self.settings.provider.upper()}_"
        return [value for key, value in os.environ.items() if key.startswith(prefix)]

    def _provider(self):
        """lexicon's provider for the zone, authenticated (imported and made on first use)."""
        if self._client is not None:
            return self._client
        name = self.settings.provider
        # lexicon's Client would guess the zone (tldextract) before building the provider: the
        # provider class is built here instead, with the zone given. lexicon 3.x keeps its
        # providers in lexicon._private.providers (the version is pinned; lexicon's own CLI and
        # Client load them from there the same way).
        try:
            from lexicon.config import ConfigResolver

            module = importlib.import_module(f"lexicon._private.providers.{name}")
        except ModuleNotFoundError as error:
            if error.name and error.name.startswith("lexicon._private.providers"):
                raise ConfigError(f"zone {self.zone}", f"cozy_dns.lexicon_provider: dns-lexicon has no provider "
                                  f"{name!r}") from None
            raise ConfigError(f"zone {self.zone}", f"dns-lexicon's {name} provider needs the Python module "
                              f"{error.name} (pip install 'dns-lexicon[{name}]')") from None
        # The zone is given, never guessed; the TTL is read by lexicon at each create.
        self._config = {"provider_name": name, "domain": self.zone, "ttl": DEFAULT_TTL,
                        name: {**dict(self.settings.options), **self._secrets}}
        resolver = ConfigResolver().with_dict(self._config).with_env()
        try:
            client = module.Provider(resolver)
            client.authenticate()
        except Exception as error:  # noqa: BLE001 - every failure becomes one line
            raise self._explain(error) from None
        self._client = client
        return client

    def _call(self, operation: str, *args):
        client = self._provider()
        try:
            return getattr(client, operation)(*args)
        except Exception as error:  # noqa: BLE001 - every failure becomes one line
            raise self._explain(error) from None

    # -- reading -------------------------------------------------------------------------------

    def _value(self, rtype: str, content: str) -> str:
        """lexicon's content as records compare it (TXT quoted, names absolute)."""
        content = str(content)
        if rtype == "TXT" and not content.startswith('"'):
            content = f'"{content}"'
        elif rtype in NAME_TYPES and not content.endswith("."):
            content += "."
        return api.canonical(rtype, content)

    def _content(self, rtype: str, value: str) -> str:
        """A value as lexicon takes it: TXT without its outer quotes, names without the final dot."""
        if rtype == "TXT" and value.startswith('"') and value.endswith('"'):
            return value[1:-1]
        if rtype in NAME_TYPES:
            return value.rstrip(".")
        return value

    def read(self) -> ZoneData:
        """The zone as lexicon lists it now: through a new client, since lexicon's providers may
        keep what they listed (its powerdns provider does, until its next write)."""
        self._client = None
        rrsets: dict[tuple[str, str], RRset] = {}
        serial = 0
        for record in self._call("list_records"):
            owner = str(record["name"]).rstrip(".").lower()
            if owner != self.zone and not owner.endswith("." + self.zone):
                owner = f"{owner}.{self.zone}" if owner else self.zone
            name, rtype = records.relative(owner, self.zone), str(record["type"]).upper()
            value = self._value(rtype, record["content"])
            if rtype == "SOA":
                parts = value.split()
                serial = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0
            have = rrsets.get((name, rtype))
            ttl = int(record.get("ttl") or DEFAULT_TTL)
            values = tuple(sorted({*(have.values if have else ()), value}))
            rrsets[(name, rtype)] = RRset(name, rtype, have.ttl if have else ttl, values)
        return ZoneData(self.zone, serial, rrsets, records.mark_index(rrsets))

    def soa_serial(self) -> int:
        """The serial when the provider lists the SOA record, else 0 (propagation checks then
        wait for the records themselves)."""
        return self.read().serial

    # -- writing -------------------------------------------------------------------------------

    def _create(self, rtype: str, name: str, value: str, ttl: int) -> None:
        self._config["ttl"] = ttl
        self._call("create_record", rtype, records.fqdn(name, self.zone).rstrip("."), self._content(rtype, value))

    def _delete(self, rtype: str, name: str, value: str) -> None:
        self._call("delete_record", None, rtype, records.fqdn(name, self.zone).rstrip("."),
                   self._content(rtype, value))

    def _write(self, change: Change) -> None:
        old, new = set(change.old_values), set(change.values)
        if change.mark:
            old, new = set(change.old_values[:1]), set(change.values[:1])
        if change.action == CREATE:
            old = set()
        if change.action == DELETE:
            new = set()
        if change.action not in (CREATE, DELETE) and change.ttl != change.old_ttl and not change.mark:
            gone, added = old, new  # a new TTL: every value again
        else:
            gone, added = old - new, new - old
        for value in sorted(gone):
            self._delete(change.rtype, change.name, value)
        for value in sorted(added):
            self._create(change.rtype, change.name, value, change.ttl or DEFAULT_TTL)

    def apply(self, changes: list[Change], on_batch: Callable[[BatchOutcome], None] | None = None) -> ApplyResult:
        """Each batch's changes one value at a time (lexicon's interface: not atomic)."""
        if not changes:
            return ApplyResult()

        def write(batch: list[Change]) -> None:
            for change in batch:
                self._write(change)

        return api.apply_batches(changes, self.batch_size, self.read().rrsets, write, on_batch, partial=True)

    # -- ACME challenges -----------------------------------------------------------------------

    def change_txts(self, adds: list[tuple[str, str, int]] = (), deletes: list[tuple[str, str]] = ()) -> int:
        """One create or delete per value (lexicon's interface); returns the calls made."""
        calls = 0
        for fqdn, value, ttl in adds:
            self._create("TXT", self._name(fqdn), api.quote_txt(value), ttl)
            calls += 1
        for fqdn, value in deletes:
            self._delete("TXT", self._name(fqdn), api.quote_txt(value))
            calls += 1
        return calls

    def _name(self, fqdn: str) -> str:
        try:
            return api.relative(fqdn, self.zone)
        except ValueError:
            raise self._error(f"{fqdn} is not in the zone") from None
