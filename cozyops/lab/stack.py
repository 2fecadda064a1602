"""The cozy-stack double on lab hosts: where the Debian package lays it out.

``lab up --with-stack`` installs it with ``cozyops server provision`` (playbooks/site.yml) from
the lab's apt repository (:mod:`cozyops.lab.aptrepo`): package ``cozy-stack`` (the double as
``/usr/bin/cozy-stack``, its postinst as cozy-stack's own: user ``cozy-stack`` in group ``cozy``,
``/var/log/cozy``, the scrypt hash in ``/etc/cozy/cozy-admin-passphrase`` written by
``cozy-stack config passwd`` and the clear-text copy in ``/etc/cozy/.cozy-admin-passphrase``
(0600), ``cozy.yml.local``, the vault keys, data under ``/var/lib/cozy``) and package
``couchdb`` (pouchdb-server on 127.0.0.1:5984).

The admin passphrase is generated on the host and never leaves it through cozyops's output: the
controller reads it over SSH when it needs it (as ``COZY_ADMIN_PASSPHRASE=$(cat ...)`` does).
"""

from __future__ import annotations

from cozyops.model import DEBIAN_PASSPHRASE_FILE
from cozyops.stack.connect import ADMIN_PORT, PUBLIC_PORT  # noqa: F401  (the lab's tests reach them by this name)
from cozyops.transport.base import Transport

PASSPHRASE_CLEAR = DEBIAN_PASSPHRASE_FILE
PASSPHRASE_HASH = "/etc/cozy/cozy-admin-passphrase"


def admin_passphrase(transport: Transport) -> str:
    """The admin passphrase, read on the server as Debian's scripts do (never printed)."""
    return transport.run(["cat", PASSPHRASE_CLEAR]).check(transport.name).text.strip()
