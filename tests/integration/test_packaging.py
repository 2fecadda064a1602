"""A non-editable install carries the playbooks, templates and inventories and works without a checkout."""

from __future__ import annotations

import site
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("cozyops-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "cozyops/_data/templates/lab/named.conf.j2",
        "cozyops/_data/inventories/example/group_vars/all.yml",
        "cozyops/_data/playbooks/README.md",
        "cozyops/cli/__init__.py",
    ):
        assert expected in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    target = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    # The dependencies come from the test environment; cozyops itself only from the wheel.
    Path(target, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert installed.returncode == 0, installed.stderr

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    help_text = subprocess.run([str(venv / "bin" / "cozyops"), "--help"], cwd=outside, capture_output=True, text=True)
    assert help_text.returncode == 0, help_text.stderr
    assert "lab" in help_text.stdout
    where = subprocess.run(
        [str(python), "-c",
         "from cozyops import paths; from cozyops.lab.services import render; from cozyops.lab.spec import LabSpec;"
         "print(paths.data_dir('templates')); print(paths.data_dir('playbooks')); print(paths.data_dir('inventories'));"
         "print(render('zone.j2', spec=LabSpec(), zone='cozy.test', nameservers=LabSpec().nameservers('cozy.test')))"],
        cwd=outside, capture_output=True, text=True,
    )
    assert where.returncode == 0, where.stderr
    lines = where.stdout.splitlines()
    for line in lines[:3]:
        assert line.startswith(target) and "/cozyops/_data/" in line
    assert "IN SOA  ns1.cozy.test." in where.stdout
