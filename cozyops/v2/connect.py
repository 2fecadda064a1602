"""Reaching a fleet server's cozy-stack for the import (see cozyops.transport.fleet)."""

from cozyops.transport.fleet import host_vars, ssh_target

__all__ = ["host_vars", "ssh_target"]
