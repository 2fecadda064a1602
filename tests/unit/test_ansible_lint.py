"""The playbooks pass ansible-lint's production profile (settings in .ansible-lint), offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_playbooks_pass_ansible_lint_production(tmp_path):
    lint = Path(sys.executable).with_name("ansible-lint")
    assert lint.exists(), "ansible-lint is a test dependency (pip install -e .[test])"
    env = {**os.environ, "ANSIBLE_HOME": str(tmp_path / "ansible"), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
           "NO_COLOR": "1", "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "PATH": str(lint.parent) + os.pathsep + os.environ.get("PATH", "")}
    result = subprocess.run([str(lint), "--offline", "--profile", "production", "--nocolor", "playbooks/"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in result.stderr + result.stdout
