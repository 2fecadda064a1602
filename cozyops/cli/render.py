"""Output helpers shared by the command modules."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from rich.console import Console

# Messages and progress: standard error, so that standard output carries only data.
err_console = Console(stderr=True)


@dataclass
class Settings:
    debug: bool = False


settings = Settings()


def emit_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()
