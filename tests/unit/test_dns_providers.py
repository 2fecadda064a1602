"""DNS providers behind one interface: every provider module builds a Provider; the orchestrators
know none by name; the manual mode is a provider; bad settings are real errors (even under -O)."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import cozyops
from cozyops import inventory
from cozyops.dns import providers
from cozyops.dns.manager import DnsManager
from cozyops.errors import ConfigError, CozyopsError
from cozyops.model import DnsProviderKind, Rfc2136Server
from tests.unit.test_inventory import GROUP_VARS, make

PACKAGE = Path(cozyops.__file__).parent


def test_every_provider_kind_has_a_module_building_a_provider(tmp_path):
    assert set(providers.MODULES) == {kind.value for kind in DnsProviderKind}
    for kind, name in providers.MODULES.items():
        module = importlib.import_module(name)
        assert callable(module.build), name
        cls = next(value for value in vars(module).values()
                   if isinstance(value, type) and issubclass(value, providers.Provider)
                   and value.__module__ == name)
        assert cls.name == kind and not getattr(cls, "__abstractmethods__", None), f"{name}: {cls.__abstractmethods__}"


def test_nothing_outside_the_rfc2136_provider_names_it():
    own = PACKAGE / "dns/providers/rfc2136.py"
    naming = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
              if path != own and re.search(r"\bRfc2136\b", path.read_text())]
    assert naming == []
    orchestrators = ["dns/manager.py", "dns/challenge.py", "tls/solver.py", "tls/manager.py"]
    for name in orchestrators:  # through the interface only: no provider module imported
        text = (PACKAGE / name).read_text()
        assert not re.search(r"providers\.(rfc2136|manual)|providers import (rfc2136|manual)", text), name


def test_the_manual_provider_reads_an_empty_zone_and_refuses_to_write():
    manual = providers.build("manual", "Example.org.", None)
    assert (manual.name, manual.zone, manual.writes) == ("manual", "example.org", False)
    assert "pasted at the DNS host" in manual.describe()
    zone = manual.read()
    assert (zone.zone, zone.rrsets, zone.nameservers()) == ("example.org", {}, [])
    assert manual.apply([]).batches == [] and manual.change_txts() == 0
    for attempt in (manual.require_writes, manual.soa_serial,
                    lambda: manual.present_txt("_acme-challenge.a.example.org.", "v"),
                    lambda: manual.change_txts(deletes=[("a.example.org.", "v")])):
        with pytest.raises(CozyopsError) as refused:
            attempt()
        assert str(refused.value).startswith("zone example.org: its DNS provider is manual")


def test_the_manager_takes_the_manual_provider_through_the_interface(tmp_path):
    fleet = inventory.load(make(tmp_path / "fleet", group_vars={**GROUP_VARS, "cozy_dns": {"provider": "manual"}}))
    manager = DnsManager(fleet)
    assert manager.manual and manager.provider().name == "manual"
    plan = manager.plan()
    assert plan.provider == "manual" and {change.action for change in plan.changes} == {"create"}
    with pytest.raises(CozyopsError) as refused:
        manager.writer()
    assert str(refused.value).startswith(f"fleet {fleet.name}: its DNS provider is manual")


def test_the_rfc2136_provider_describes_itself_without_its_secret(tmp_path):
    fleet = inventory.load(make(tmp_path / "fleet"))
    provider = DnsManager(fleet).provider()
    assert provider.writes and provider.zone == "example.org" and provider.where == "192.0.2.53"
    assert provider.describe() == "rfc2136 provider of zone example.org at 192.0.2.53 (TSIG key k)"
    assert provider.key.secret not in provider.describe() + repr(provider)


def test_rfc2136_settings_without_a_key_are_a_config_error():
    with pytest.raises(ConfigError) as refused:
        providers.build("rfc2136", "example.org", Rfc2136Server("192.0.2.53", 53, None))
    assert str(refused.value).startswith("zone example.org: cozy_dns: the rfc2136 provider needs")
    with pytest.raises(ConfigError):
        providers.build("rfc2136", "example.org", None)


def test_the_check_holds_under_python_O():
    """It was an ``assert`` (gone under -O): the same check, in an optimized interpreter."""
    code = ("from cozyops.dns import providers\nfrom cozyops.errors import ConfigError\n"
            "from cozyops.model import Rfc2136Server\nassert False, 'asserts run: not -O'\n")
    done = subprocess.run([sys.executable, "-O", "-c", code + (
        "try:\n    providers.build('rfc2136', 'example.org', Rfc2136Server('192.0.2.53', 53, None))\n"
        "except ConfigError as error:\n    print('refused:', error)\n")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused: zone example.org: cozy_dns: the rfc2136 provider needs")
