"""Where a new instance goes: the server with the most room. Pure.

Room is ``cozy_capacity`` (a host variable) minus the instances already there, the fleet's and
those a server holds for others (``extra``: counted from the servers when known). A server
without ``cozy_capacity`` has unbounded room: such servers come first, the least loaded of them.
Ties go to the first name in sort order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from cozyops.errors import CozyopsError
from cozyops.model import Fleet


class NoRoomError(CozyopsError):
    """Every server is full."""


def load(fleet: Fleet, extra: Mapping[str, int] | None = None) -> dict[str, int]:
    """Instances per server: the fleet's, plus ``extra`` (others' instances found on the server)."""
    found = Counter({name: 0 for name in fleet.servers})
    found.update(instance.server for instance in fleet.instances)
    for name, count in (extra or {}).items():
        if name in found:
            found[name] += count
    return dict(found)


def room(fleet: Fleet, extra: Mapping[str, int] | None = None) -> dict[str, float]:
    """Free places per server (infinity: no cozy_capacity)."""
    used = load(fleet, extra)
    return {name: (float("inf") if server.capacity is None else server.capacity - used[name])
            for name, server in fleet.servers.items()}


def place(fleet: Fleet, extra: Mapping[str, int] | None = None, among: list[str] | None = None) -> str:
    """The server with the most room (bounded ones by free places; unbounded by fewest instances)."""
    names = sorted(among if among is not None else fleet.servers)
    if not names:
        raise NoRoomError(f"fleet {fleet.name}", "has no server (hosts.yml)")
    used = load(fleet, extra)
    free = room(fleet, extra)
    open_ = [name for name in names if free[name] > 0]
    if not open_:
        full = ", ".join(f"{name} ({used[name]}/{fleet.servers[name].capacity})" for name in names)
        raise NoRoomError(f"fleet {fleet.name}", f"every server is full: {full}",
                          "raise cozy_capacity in hosts.yml or add a server, or name one with --server")
    # Most free places first; unbounded servers rank by their load (fewest instances first).
    return min(open_, key=lambda name: (0, used[name], name) if free[name] == float("inf")
               else (1, -free[name], name))
