"""TLS certificates: ACME DNS-01 issuer, solver, store, renewal and deployment."""
