"""The local lab: real DNS servers, an ACME CA and (later) Debian hosts in network namespaces.

It is both the embedded default that users try cozyops on and what the integration tests run
against. Everything it runs lives in network namespaces named ``cozyops-<id>-...``; its files live
in its directory (``$XDG_STATE_HOME/cozyops/labs/<id>`` unless ``--dir``).
"""
