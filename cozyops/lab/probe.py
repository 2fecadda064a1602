"""Checks the lab runs against its services. Call them inside the lab's namespace."""

from __future__ import annotations

import json
import ssl
import urllib.request

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype


def soa_serial(address: str, zone: str, port: int = 53, tcp: bool = False, timeout: float = 1.0) -> int:
    """The SOA serial ``address`` serves authoritatively for ``zone``; raises on anything else."""
    query = dns.message.make_query(zone, dns.rdatatype.SOA)
    send = dns.query.tcp if tcp else dns.query.udp
    response = send(query, address, port=port, timeout=timeout)
    rcode = response.rcode()
    if rcode != dns.rcode.NOERROR:
        raise LookupError(f"{dns.rcode.to_text(rcode)} for SOA {zone}")
    if not response.flags & dns.flags.AA:
        raise LookupError(f"not authoritative for {zone}")
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.SOA:
            return rrset[0].serial
    raise LookupError(f"no SOA record for {zone}")


def soa_reason(address: str, zone: str, port: int = 53, tcp: bool = False) -> tuple[int | None, str | None]:
    """(serial, None) when served, else (None, why)."""
    try:
        return soa_serial(address, zone, port, tcp), None
    except dns.exception.Timeout:
        return None, "no answer (timeout)"
    except (OSError, LookupError, dns.exception.DNSException) as error:
        return None, str(error) or type(error).__name__


def acme_directory(url: str, ca_bundle: str, timeout: float = 2.0) -> dict:
    context = ssl.create_default_context(cafile=ca_bundle)
    with urllib.request.urlopen(url, context=context, timeout=timeout) as response:
        directory = json.load(response)
    missing = {"newNonce", "newAccount", "newOrder"} - set(directory)
    if missing:
        raise LookupError(f"not an ACME directory (no {', '.join(sorted(missing))})")
    return directory


def fetch(url: str, ca_bundle: str, timeout: float = 2.0) -> bytes:
    context = ssl.create_default_context(cafile=ca_bundle)
    with urllib.request.urlopen(url, context=context, timeout=timeout) as response:
        return response.read()


def http_get(url: str, headers: dict[str, str], timeout: float = 2.0) -> bytes:
    """A plain-HTTP GET (PowerDNS's API in the lab's namespace)."""
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()
