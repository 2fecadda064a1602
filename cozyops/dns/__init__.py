"""DNS: records for instances, providers (RFC 2136, manual) and propagation checks."""
