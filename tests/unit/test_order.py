"""The order `./dev test` hands test files to its workers in (tests/conftest.py)."""

from pathlib import Path

from tests.conftest import SLOW_FILES_FIRST, file_rank

ROOT = Path(__file__).resolve().parents[2]


def test_every_slow_file_listed_exists():
    missing = [path for path in SLOW_FILES_FIRST if not (ROOT / path).is_file()]
    assert not missing, f"renamed or removed, update SLOW_FILES_FIRST: {missing}"


def test_slow_files_first_then_integration_contract_and_unit():
    nodeids = ["tests/unit/test_plan.py::test_a", "tests/contract/test_admin.py::test_b",
               "tests/integration/test_dns.py::test_c", "tests/integration/test_lab.py::test_d",
               "tests/integration/test_instances.py::test_e[x]"]
    assert sorted(nodeids, key=file_rank) == list(reversed(nodeids))
