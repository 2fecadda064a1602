"""Output helpers shared by the command modules."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass


class _StderrConsole:
    """rich's Console on standard error (messages and progress: standard output carries only data).

    Made on first use: rich costs ~50 ms to import, which a short command that prints a few plain
    lines to a pipe or a log does not need. Plain text (``markup=False``) to something that is not
    a terminal is written as is, which is what rich would write there; everything else (a
    terminal, styles that show, status spinners, progress bars) goes through rich.
    """

    _rich = None

    @property
    def rich(self):
        if self._rich is None:
            from rich.console import Console

            type(self)._rich = Console(stderr=True)
        return self._rich

    def plain(self) -> bool:
        """True when nothing on standard error would show styles or redraw (no terminal)."""
        return self._rich is None and not sys.stderr.isatty() and not os.environ.get("FORCE_COLOR")

    def print(self, *objects, markup: bool | None = None, **options) -> None:
        if markup is False and self.plain() and all(isinstance(o, str) for o in objects):
            sys.stderr.write(options.get("sep", " ").join(objects) + options.get("end", "\n"))
            sys.stderr.flush()
            return
        self.rich.print(*objects, markup=markup, **options)

    def __getattr__(self, name: str):
        return getattr(self.rich, name)


err_console = _StderrConsole()


class PlainProgress:
    """Progress for a log or a pipe: a line every ``every`` seconds while the work lasts, and one
    at the end if any was written (short work writes none). Called as
    ``progress(stage, done, total)``."""

    def __init__(self, what: str, every: float = 5.0) -> None:
        self.what, self.every = what, every
        self.started = self.last = time.monotonic()
        self.shown = self.finished = False

    def _line(self, done: int, total: int) -> None:
        err_console.print(f"{self.what}: {done}/{total} ({time.monotonic() - self.started:.1f} s)", markup=False)

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total:
            if self.shown and not self.finished:
                self.finished = True
                self._line(done, total)
        elif now - self.last >= self.every:
            self.last, self.shown = now, True
            self._line(done, total)


@dataclass
class Settings:
    debug: bool = False


settings = Settings()


def emit_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()
