"""Helpers for building many objects at once (plans of 100,000 instances, zones of 500,000 records)."""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


def paused_gc(function: F) -> F:
    """Run ``function`` with the cyclic garbage collector paused.

    Building hundreds of thousands of small acyclic objects (records, changes) triggers the
    collector over and over, each pass walking everything alive: on the lab machine that is more
    than half the time of a 100,000-instance plan. Reference counting still frees everything;
    the collector resumes (if it was on) when the function returns or raises.
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        enabled = gc.isenabled()
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return wrapper  # type: ignore[return-value]
