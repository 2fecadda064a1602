"""Every third-party module cozyops imports comes from a distribution pyproject.toml names in
`dependencies`, pinned as requirements.lock pins it. A module that only arrives through a test
extra (ruamel.yaml came with ansible-lint) works in the developer's venv and fails on a server
installed from a wheelhouse (`cozyops install --local`): this test is where that shows first."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_top_levels() -> dict[str, str]:
    """Top-level module -> one file importing it, for every import in cozyops/ (those inside
    functions too), the standard library's and cozyops's own left out."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "cozyops").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "cozyops" and top not in sys.stdlib_module_names:
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def declared() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["dependencies"]:
        name, _, version = requirement.partition("==")
        pins[normalized(name)] = version
    return pins


def undeclared(imports: dict[str, str], pins: dict[str, str]) -> list[str]:
    distributions = importlib.metadata.packages_distributions()
    missing = []
    for module, where in imports.items():
        providers = {normalized(name) for name in distributions.get(module, [])}
        assert providers, f"{module} (imported in {where}) is not installed in this environment"
        if not providers & pins.keys():
            missing.append(f"{module} (imported in {where}, from {sorted(providers)})")
    return missing


def test_every_imported_module_is_a_declared_dependency():
    missing = undeclared(imported_top_levels(), declared())
    assert not missing, "imported but not in pyproject.toml's dependencies: " + "; ".join(missing)


def test_the_declared_dependencies_are_pinned_as_the_lock_pins_them():
    lock = {normalized(name): version for name, version in
            re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", (ROOT / "requirements.lock").read_text(), re.M)}
    pins = declared()
    assert pins, "pyproject.toml names no dependencies"
    differing = {name: (version, lock.get(name)) for name, version in pins.items() if lock.get(name) != version}
    assert not differing, f"pyproject.toml pin vs requirements.lock pin: {differing}"


def test_the_check_reports_a_module_only_a_test_extra_brings():
    # ruamel.yaml is installed here through ansible-lint as well: without its own line in
    # `dependencies` the check reports it, naming the file that imports it.
    imports = imported_top_levels()
    pins = {name: version for name, version in declared().items() if name != "ruamel-yaml"}
    missing = undeclared(imports, pins)
    assert len(missing) == 1 and missing[0].startswith(f"ruamel (imported in {imports['ruamel']}")
