"""Contract tables: each row names the reference section it checks and what it checks."""

from __future__ import annotations

from collections.abc import Callable

import pytest

COZY_STACK = "cozy-stack.md"
FILES_DATA = "cozy-stack-files-data-api.md"


class Table:
    def __init__(self) -> None:
        self.rows: list = []

    def row(self, ref: str, what: str) -> Callable:
        """Register a check ``fn(double)`` under ``"<reference> §N: what"``."""

        def register(fn: Callable) -> Callable:
            self.rows.append(pytest.param(fn, id=f"{ref}: {what}"))
            return fn

        return register
