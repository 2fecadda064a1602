"""Fleet files cannot blow up memory or crash the process: anchors, aliases and merge keys are
refused, nesting is bounded, a non-UTF-8 file is named; one line naming the file, exit 1, and
nothing cached for refused input."""

from __future__ import annotations

import datetime
import subprocess
import sys

import pytest
import yaml

from cozyops import fleetyaml, inventory
from cozyops.errors import ConfigError
from tests.unit.test_inventory import make

# The classic "billion laughs" in YAML: nine levels of nine aliases each.
BOMB = "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + "".join(
    f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))

ERROR = "cozyops: error: "


def cli(root, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cozyops", *args, "--fleet", str(root)], capture_output=True,
                          text=True, timeout=120)


def test_the_alias_bomb_is_refused_at_its_first_anchor(tmp_path):
    assert len(BOMB) < 400  # 9**9 strings once expanded
    root = make(tmp_path / "f", raw={"instances.yml": BOMB})
    result = cli(root, "dns", "plan")
    assert result.returncode == 1
    assert result.stderr.strip() == (f"{ERROR}instances.yml: line 1: anchor &a: YAML anchors and aliases are not "
                                     "allowed in fleet files (write the value out)")
    assert not (root / ".cozyops" / "cache").exists() or not any((root / ".cozyops" / "cache").iterdir())


@pytest.mark.parametrize("levels", [5_000, 100_000])
def test_deep_nesting_is_refused_without_a_crash(tmp_path, levels):
    flow = "instances: " + "[" * levels + "]" * levels + "\n"
    root = make(tmp_path / "f", raw={"instances.yml": flow})
    result = cli(root, "dns", "plan")
    deep = "line 1: nested more than 200 levels deep"
    assert (result.returncode, result.stderr.strip()) == (1, f"{ERROR}instances.yml: {deep}")
    block = "".join(f"{' ' * level}k{level}:\n" for level in range(levels // 20)) + "\n"
    (root / "hosts.yml").write_text("all:\n  vars:\n" + "".join(f"{'  ' * (level + 2)}k:\n" for level in range(300)))
    result = cli(root, "dns", "plan")
    deep = "line 201: nested more than 200 levels deep"
    assert (result.returncode, result.stderr.strip()) == (1, f"{ERROR}hosts.yml: {deep}")
    with pytest.raises(fleetyaml.FleetYamlError, match="nested more than 200"):
        fleetyaml.load(block)


@pytest.mark.parametrize("where, text, message", [
    ("hosts.yml", "all:\n  vars: &v {ansible_user: a}\n  children:\n    g: {vars: *v}\n", "line 2: anchor &v"),
    ("group_vars/cozy_servers.yml", "x: [1]\ny: *nothing\n", "line 2: alias *nothing"),
    ("host_vars/h1.yml", "<<: {ansible_user: a}\n", "line 1: merge keys (<<) are not allowed"),
    ("instances.yml", "--- {instances: []}\n--- {}\n", "line 2: more than one YAML document"),
    ("instances.yml", "instances: !!python/object:os.system {}\n", "line 1: the tag tag:yaml.org,2002:python/object"),
    ("instances.yml", "instances:\n  ? [a]\n  : b\n", "line 2: a mapping key that is a list or a mapping"),
])
def test_what_fleet_files_may_not_hold(tmp_path, where, text, message):
    root = make(tmp_path / "f", raw={where: text})
    with pytest.raises(ConfigError) as raised:
        inventory.load(root)
    assert str(raised.value).startswith(f"{where}: {message}"), str(raised.value)


def test_a_non_utf8_instances_file_is_named_and_not_cached(tmp_path):
    root = make(tmp_path / "f", raw={"instances.yml": "instances: []\n"})
    (root / "instances.yml").write_bytes(b"instances:\n  - domain: \xe9lise.example.org\n    server: h1\n")
    result = cli(root, "dns", "plan")
    assert (result.returncode, result.stderr.strip()) == (
        1, f"{ERROR}instances.yml: not UTF-8 text (byte 23 of the file) (save it as UTF-8)")
    assert not list(root.glob(".cozyops/cache/*.json"))


def test_refused_instances_are_never_cached(tmp_path):
    root = make(tmp_path / "f", instances={"instances": [{"domain": "a.example.org", "server": "h9"}]})
    with pytest.raises(ConfigError, match="h9"):
        inventory.load(root)
    assert not list(root.glob(".cozyops/cache/*.json"))
    (root / "instances.yml").write_text("instances: [{domain: a.example.org, server: h1}]\n")
    inventory.load(root)
    assert len(list(root.glob(".cozyops/cache/*.json"))) == 1


DOCUMENTS = [
    "", "~\n", "x\n", "a: 1\nb: [1, 2.5, true, null, 2020-01-01, '3']\nc: {d: e}\n",
    "- 0x1F\n- 1_000\n- .inf\n- ~\n- yes\n- !!str 5\n- 0o17\n- -1.5e3\n- 2001-12-14t21:59:43.10-05:00\n",
    "k: |\n  two\n  lines\n'q': \"\\u00e9\"\nempty:\nlist: []\nmap: {}\n",
    "dup: 1\ndup: 2\n", "---\nonly: one\n...\n", "? complex\n: value\n1: int key\n",
]


@pytest.mark.parametrize("text", DOCUMENTS)
def test_the_data_is_what_safe_load_gives(text):
    assert fleetyaml.load(text) == yaml.safe_load(text)


def test_timestamps_are_built_as_safe_load_builds_them():
    assert fleetyaml.load("when: 2026-12-04 10:00:00\n") == {"when": datetime.datetime(2026, 12, 4, 10, 0)}


SCALARS = ["alice", "yes", "no", "on", "off", "y", "n", "Yes", "NO", "true", "False", "~", "null", "Null", "", "''",
           '""', "'yes'", '"no"', "0", "010", "0o10", "0x1f", "1_000", "-1", "+1", "1.5", ".5", "-.inf", ".NaN",
           "1e3", "1:20", "2026-12-04", "2026-12-04 10:00:00", "<", "h1", "fr", "u0@example.org",
           "192.0.2.10", "2001:db8::1", "'it''s'", "\"tab\\there\"", "é", "7d", "10GB"]


@pytest.mark.parametrize("scalar", SCALARS)
def test_every_scalar_is_what_safe_load_makes_of_it(scalar):
    """The fast path for plain scalars no implicit resolver takes gives what PyYAML's resolver does."""
    text = f"key: {scalar}\nlist: [{scalar}]\n"
    assert fleetyaml.load(text) == yaml.safe_load(text)
