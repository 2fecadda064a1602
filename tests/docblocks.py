"""The shell blocks of README.md and docs/*.md, with the mark each carries.

A fenced block in sh, bash or shell is preceded (blank lines aside) by one of:

    <!-- doc-test: run -->             tests/integration/test_docs.py runs it in the suite's lab
    <!-- doc-test: skip: REASON -->    not run; REASON says why (and where it is tested instead)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHELLS = ("sh", "bash", "shell")
_MARK = re.compile(r"^<!-- doc-test: (run|skip: (?P<reason>.*\S)) -->$")


@dataclass(frozen=True)
class Block:
    file: str
    line: int  # of the opening fence
    mark: str | None  # "run", "skip", or None (no mark: a defect)
    reason: str
    body: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(path: Path, root: Path = ROOT) -> list[Block]:
    found = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        fence = lines[i].strip()
        if fence.startswith("```"):
            lang = fence[3:].strip()
            start = i
            i += 1
            body = []
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            if lang in SHELLS:
                before = start - 1
                while before >= 0 and not lines[before].strip():
                    before -= 1
                match = _MARK.match(lines[before].strip()) if before >= 0 else None
                mark = None if match is None else ("run" if match.group(1) == "run" else "skip")
                reason = (match.group("reason") or "") if match else ""
                found.append(Block(str(path.relative_to(root)), start + 1, mark, reason, "\n".join(body) + "\n"))
        i += 1
    return found


def all_blocks() -> list[Block]:
    return [block for path in documents() for block in blocks(path)]
