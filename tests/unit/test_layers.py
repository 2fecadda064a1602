"""The layers (docs/architecture.md): import-linter's contracts in pyproject.toml hold, each of them
catches the breach it is there for, and no module outside the lab imports the lab."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "cozyops"


def test_the_contracts_hold():
    """What `lint-imports` says on the tree, exactly as a developer runs it (unknown modules,
    ignore lines that match nothing and broken contracts all fail it)."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture(scope="module")
def linter():
    from importlinter import api  # noqa: F401  (configures import-linter's settings)
    from importlinter.application import use_cases
    from importlinter.application.app_config import settings
    from importlinter.domain.contract import registry

    options = use_cases.read_user_options(str(ROOT / "pyproject.toml"))
    use_cases._register_contract_types(options)
    graph = settings.GRAPH_BUILDER.build(root_package_names=options.session_options["root_packages"],
                                         include_external_packages=True, exclude_type_checking_imports=False,
                                         cache_dir=None)
    contracts = {
        contract["id"]: registry.get_contract_class(contract["type"])(
            name=contract["name"], session_options=options.session_options, contract_options=contract)
        for contract in options.contracts_options
    }
    return graph, contracts


# Each contract and imports that must break it (importer, imported).
BREACHES = [
    ("layers", ("cozyops.model", "cozyops.cli.render")),           # the core knows no command line
    ("layers", ("cozyops.tls.manager", "cozyops.inventory")),      # an orchestrator reading the fleet's files
    ("layers", ("cozyops.v2.importer", "cozyops.tls.store")),      # the orchestrators are independent
    ("layers", ("cozyops.transport.ssh", "cozyops.v2.importer")),  # a seam knows no orchestrator
    ("layers", ("cozyops.state", "cozyops.transport.ssh")),        # the state and the transport are independent
    ("layers", ("cozyops.transport.ssh", "cozyops.stack.http")),   # the transport knows no cozy-stack
    ("seams", ("cozyops.dns.wire", "cozyops.tls.manager")),
    ("seams", ("cozyops.tls.acmenet", "cozyops.tls.solver")),
    ("pure-core", ("cozyops.plan", "socket")),
    ("pure-core", ("cozyops.model", "cozyops.state")),
    ("pure-core", ("cozyops.v2.convert", "subprocess")),
    ("no-lab", ("cozyops.v2.importer", "cozyops.lab.stack")),
    ("no-lab", ("cozyops.cli.v2", "cozyops.lab")),
    ("no-lab", ("cozyops.stack.admin", "cozyops.lab.stackdouble")),
]


@pytest.mark.parametrize(("contract", "edge"), BREACHES, ids=[f"{c}:{a}->{b}" for c, (a, b) in BREACHES])
def test_each_contract_catches_its_breach(linter, contract, edge):
    graph, contracts = linter
    assert contracts[contract].check(copy.deepcopy(graph), verbose=False).kept
    breached = copy.deepcopy(graph)
    importer, imported = edge
    assert importer in breached.modules
    if imported not in breached.modules:
        breached.add_module(imported, is_squashed=True)  # an external package, such as socket
    breached.add_import(importer=importer, imported=imported, line_number=1, line_contents="import x")
    assert not contracts[contract].check(breached, verbose=False).kept


def test_every_contract_has_a_breach_test(linter):
    _, contracts = linter
    assert set(contracts) == {contract for contract, _ in BREACHES}


LAB_IMPORT = re.compile(r"^\s*(from\s+cozyops\.lab\b|import\s+cozyops\.lab\b|from\s+cozyops\s+import\s+(.*,\s*)?lab\b)",
                        re.MULTILINE)


def _lab_importers() -> dict[str, list[str]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = [match.group(0).strip() for match in LAB_IMPORT.finditer(path.read_text())]
        if lines:
            found[path.relative_to(ROOT).as_posix()] = lines
    return found


def test_only_the_lab_and_its_command_import_the_lab():
    found = _lab_importers()
    assert "cozyops/cli/lab.py" in found  # the pattern does find such lines
    outside = {path: lines for path, lines in found.items()
               if not path.startswith("cozyops/lab/") and path != "cozyops/cli/lab.py"}
    assert outside == {}


@pytest.mark.parametrize("line", ["from cozyops.lab import stack", "    from cozyops.lab.stack import x",
                                  "import cozyops.lab.hosts", "from cozyops import paths, lab",
                                  "from cozyops import lab"])
def test_the_lab_pattern_sees_each_form(line):
    assert LAB_IMPORT.search(f"x = 1\n{line}\n")


@pytest.mark.parametrize("line", ["from cozyops.labels import x", "# see cozyops.lab", "from cozyops import labels"])
def test_the_lab_pattern_sees_only_the_lab(line):
    assert not LAB_IMPORT.search(line)


def test_import_linter_is_pinned():
    """The contracts' checker is pinned in the test extras and in the lock CI installs from."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    lock = (ROOT / "requirements.lock").read_text()
    pins = re.findall(r'"import-linter==([0-9.]+)"', pyproject)
    assert pins and f"import-linter=={pins[0]}\n" in lock
    assert re.search(r"^grimp==[0-9.]+$", lock, re.MULTILINE)
