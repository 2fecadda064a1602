"""No secret in the double's logs (runs last in this directory: it scans what the other tests made).

The house rule, and cozy-stack.md §1.1 (automation passes the admin passphrase in the environment):
neither the admin passphrase, nor an instance passphrase, nor any token minted during the run,
nor an Authorization header appears in what the double wrote.
"""

from __future__ import annotations

from .conftest import unique


def test_no_secret_in_the_logs(doubles):
    for double in doubles.values():
        # One more request of each kind that carries a secret, so that there is something to find.
        domain = unique() + ".cozy.test"
        assert double.create(domain, Passphrase="instance secret pass").status == 201
        token = double.token(domain)
        double.public("GET", "/files/io.cozy.files.root-dir", domain, query={"bearer_token": token})
        double.admin("GET", "/instances", auth=False, headers=double.basic("a wrong passphrase"))
        log = double.log.read_text()
        assert "[admin]" in log and "[public]" in log and "Passphrase=***" in log and "bearer_token=***" in log
        secrets = [double.passphrase, "instance secret pass", "a wrong passphrase", *double.minted]
        leaked = [s for s in secrets if s in log]
        assert not leaked, f"{len(leaked)} secret(s) in {double.log}"
        assert "Authorization" not in log and "Basic " not in log and "Bearer " not in log
        for line in (double.directory / "pouchdb.log").read_text().splitlines():
            assert double.passphrase not in line
