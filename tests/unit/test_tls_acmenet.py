"""The lean request path's pure parts: its JWS verifies as josepy's would, the DNS-01 value is the library's."""

from __future__ import annotations

import json
from pathlib import Path

import josepy as jose
from acme import challenges, jws, messages
from cryptography.hazmat.primitives.asymmetric import ec

from cozyops.tls.acmenet import LeanNetwork, Nonces
from cozyops.tls.issuer import Issuer, NewOrder


def network(account: str | None = "https://ca.example/acct/7") -> LeanNetwork:
    key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    regr = messages.RegistrationResource(uri=account, body=messages.Registration()) if account else None
    return LeanNetwork(key, account=regr, alg=jose.ES256, verify_ssl=False)


def test_es256_jws_verifies_and_carries_kid_nonce_url():
    net = network()
    nonce = jose.b64encode(b"sixteen byte non").decode()
    order = NewOrder(identifiers=[messages.Identifier(typ=messages.IDENTIFIER_FQDN, value="a.example")],
                     replaces="aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE")
    signed = jws.JWS.json_loads(net._wrap_in_jws(order, nonce, "https://ca.example/new-order"))
    assert signed.verify(net.key.public_key())
    header = signed.signature.combined
    assert header.kid == "https://ca.example/acct/7" and header.url == "https://ca.example/new-order"
    assert header.nonce == b"sixteen byte non" and header.alg == jose.ES256 and header.jwk is None
    assert json.loads(signed.payload) == {"identifiers": [{"type": "dns", "value": "a.example"}],
                                          "replaces": "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"}
    get = jws.JWS.json_loads(net._wrap_in_jws(None, nonce, "https://ca.example/order/1"))  # POST-as-GET
    assert get.verify(net.key.public_key()) and get.payload == b""


def test_without_an_account_the_jwk_goes_in_the_header_through_josepy():
    net = network(account=None)
    signed = jws.JWS.json_loads(net._wrap_in_jws(None, jose.b64encode(b"n" * 16).decode(), "https://ca.example/a"))
    assert signed.verify(net.key.public_key())
    assert signed.signature.combined.jwk == net.key.public_key() and signed.signature.combined.kid is None


def test_nonces_are_shared_first_in_first_out():
    pool = Nonces()
    assert pool.take() is None
    pool.add("a")
    pool.add("b")
    assert [pool.take(), pool.take(), pool.take()] == ["a", "b", None]


def test_response_joins_repeated_headers_and_parses_json_once():
    class Answer:
        status, reason = 201, "Created"

        @staticmethod
        def getheaders():
            return [("Link", '<https://ca.example/dir>;rel="index"'), ("link", '<https://ca.example/a/1>;rel="up"'),
                    ("Replay-Nonce", "abc")]

    response = LeanNetwork._response("https://ca.example/x", Answer(), b'{"status": "pending"}')
    assert response.ok and response.headers["replay-nonce"] == "abc"
    assert response.links["up"]["url"] == "https://ca.example/a/1"
    assert response.json() is response.json() and response.json()["status"] == "pending"


def test_dns01_value_is_the_librarys(tmp_path: Path):
    issuer = Issuer("https://ca.example/dir", tmp_path)
    issuer.key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    for token in (b"t" * 32, b"\x00\xff" * 16):
        chall = challenges.DNS01(token=token)
        assert issuer._dns01_value(chall) == chall.validation(issuer.key)
