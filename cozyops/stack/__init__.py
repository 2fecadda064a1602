"""cozy-stack clients: the admin API (instances, tokens) and the public API (files, data).

Both speak HTTP to an address that reaches the stack, usually a port forwarded over the
transport to the server's loopback (``transport.forward(6060)``, ``transport.forward(8080)``).
"""

from cozyops.stack.admin import AdminClient, Instance
from cozyops.stack.http import StackError
from cozyops.stack.public import ROOT_ID, TRASH_ID, FileDoc, PublicClient

__all__ = ["ROOT_ID", "TRASH_ID", "AdminClient", "FileDoc", "Instance", "PublicClient", "StackError"]
