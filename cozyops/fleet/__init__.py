"""The fleet orchestrator: one plan and one apply over servers, instances, DNS records,
certificates and nginx sites (``cozyops plan`` / ``cozyops apply``); see orchestrator.py."""
