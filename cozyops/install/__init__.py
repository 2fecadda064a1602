"""`cozyops install`: the self-hoster's one command, from a fresh Debian server to a working Cozy.

- :mod:`settings` (pure): the command's options against the fleet directory as it stands, to
  the edits the fleet needs (settings, the server, the first instance) or one clear conflict;
- :mod:`fleetdir`: those edits written with ruamel.yaml's round trip (comments and order kept);
- :mod:`renewal`: the daily ``cert renew --deploy`` (systemd timer, cron entry, or a crontab line);
- :mod:`run`: the steps (fleet, provision, dns, certificate, deploy, instance, renewal, check),
  each journaled in the fleet's state (:class:`cozyops.state.Steps`) so that a killed run goes on
  where it stopped and a second run has nothing to do.

It sits beside the fleet orchestrator: it uses the servers, DNS, TLS and instance orchestrators,
never the command line, and never reads the fleet directory itself (the caller's loader does).
"""
