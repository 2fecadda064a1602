"""The shell blocks of README.md and docs/ marked `doc-test: run`, run as a reader would run them.

Each runs in bash (`set -euo pipefail`) against the suite's own lab (COZYOPS_LAB_ID and
COZYOPS_LAB_DIR point at it; a leading `sudo ` is dropped: the suite runs as root), in a scratch
directory, in the order of its file, and must succeed. So the documentation cannot drift from the
commands.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import docblocks

# A documented command may bring the stack up on the lab (`lab up --with-stack`): minutes on a busy
# machine.
pytestmark = [pytest.mark.lab, pytest.mark.timeout(1500)]

RUN = [block for block in docblocks.all_blocks() if block.mark == "run"]


@pytest.mark.parametrize("block", RUN, ids=[block.where for block in RUN])
def test_documented_commands_run(lab, tmp_path, block):
    script = "\n".join(line[5:] if line.startswith("sudo ") else line for line in block.body.splitlines())
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
           "COZYOPS_LAB_ID": lab.spec.id, "COZYOPS_LAB_DIR": str(lab.dir)}
    env.pop("COZYOPS_FLEET", None)
    result = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"{block.where}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
