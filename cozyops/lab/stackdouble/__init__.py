"""A test double of cozy-stack: its contract comes from reference/cozy-stack.md and cozy-stack-files-data-api.md.

cozy-stack (Cozy v3's Go server) cannot be built on the project's machines, so the lab runs this
double instead, laid out as the Debian package lays out cozy-stack (``/usr/bin/cozy-stack``,
``/etc/cozy/cozy.yml``, ``/etc/cozy/cozy-admin-passphrase``). It is written from those two
reference files, never from what a client needs: the ``cozy-stack`` command-line subset, the admin
API (Basic auth against the scrypt hash, JSON:API bodies and errors), the public API routed by the
Host header (``/version``, ``/status``, app subdomains, files, references, data), CLI tokens, and
the data in a CouchDB-compatible server (pouchdb-server) under the real database names.

Self-contained on purpose: the standard library and PyYAML only, so that it runs with a bare
Debian host's ``python3`` and ``python3-yaml`` (``PYTHONPATH=<dir> python3 -m stackdouble``).
"""

# The cozy-stack the references describe (cozy/cozy-stack@db116385).
VERSION = "1.6.56-23-gdb1163854"
