"""How cozyops reaches a server: over SSH (paramiko), or locally when it runs on the server itself.

Both transports offer the same operations: run a command (exit status and output), put and get
files (atomically), and forward a TCP port on the server's loopback (cozy-stack's admin port 6060
and public port 8080 listen there) to a local address an HTTP client can use.
"""

from cozyops.transport.base import CommandResult, Forward, Transport, TransportError
from cozyops.transport.local import LocalTransport
from cozyops.transport.ssh import SshTarget, SshTransport

__all__ = [
    "CommandResult",
    "Forward",
    "LocalTransport",
    "SshTarget",
    "SshTransport",
    "Transport",
    "TransportError",
]
