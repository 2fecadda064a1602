"""The certificate store after a kill: staged files finished or dropped, files without their row
adopted after checking key and chain, the budget's history counting each certificate once."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cozyops.tls.issuer import key_pem
from cozyops.tls.store import STAGED, CertStore, check_pair

DIRECTORY = "https://127.0.0.1:14000/dir"
NOW = datetime.datetime.now(datetime.UTC)


def _cert(subject: str, key, issuer: str, signer, serial: int, sans=(), ca=False) -> x509.Certificate:
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(key.public_key()).serial_number(serial)
               .not_valid_before(NOW - datetime.timedelta(minutes=serial % 50))
               .not_valid_after(NOW + datetime.timedelta(days=90))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False)
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture(scope="module")
def ca():
    key = ec.generate_private_key(ec.SECP256R1())
    return key, _cert("test intermediate", key, "test intermediate", key, 1, ca=True)


def issue(ca, name: str, serial: int) -> tuple[bytes, str]:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert(name, key, "test intermediate", ca_key, serial, (name, f"*.{name}"))
    pem = serialization.Encoding.PEM
    return key_pem(key), leaf.public_bytes(pem).decode() + ca_cert.public_bytes(pem).decode()


@pytest.fixture
def store(tmp_path):
    found = CertStore(tmp_path)
    yield found
    found.close()


def count(store: CertStore) -> int:
    return store.db.execute("SELECT COUNT(*) FROM issuances").fetchone()[0]


def test_check_pair_wants_the_leafs_key_and_a_chain_that_signs_it(ca):
    key, chain = issue(ca, "a.example.org", 100)
    other_key, other_chain = issue(ca, "b.example.org", 101)
    assert check_pair(key, chain) is None
    assert "not the key" in check_pair(other_key, chain)
    leaf_only = chain[: chain.index("-----END CERTIFICATE-----") + 26]
    assert "no issuer" in check_pair(key, leaf_only)
    stranger = ec.generate_private_key(ec.SECP256R1())
    forged = _cert("test intermediate", stranger, "test intermediate", stranger, 7, ca=True)
    assert "does not verify" in check_pair(key, leaf_only + forged.public_bytes(serialization.Encoding.PEM).decode())
    assert check_pair(b"garbage", chain).startswith("unreadable")


def test_save_counts_writes_and_records_each_certificate(ca, store):
    key, chain = issue(ca, "a.example.org", 200)
    record = store.save("a.example.org", key, chain, DIRECTORY, "ecdsa", False)
    assert store.records()["a.example.org"].serial == record.serial == f"{200:x}"
    assert count(store) == 1 and not list(store.dir("a.example.org").glob("*" + STAGED))
    assert store.privkey("a.example.org").stat().st_mode & 0o777 == 0o600
    assert store.recover(DIRECTORY, "ecdsa").adopted == []  # nothing to do


def test_files_without_their_row_are_adopted_once(ca, store):
    """Killed after the files, before the row: the next run adopts them, counting the issuance once."""
    key, chain = issue(ca, "a.example.org", 300)
    store.save("a.example.org", key, chain, DIRECTORY, "ecdsa", False)
    new_key, new_chain = issue(ca, "a.example.org", 301)
    store._issuance(store.write("a.example.org", new_key, new_chain, DIRECTORY, "ecdsa"), True)  # no row
    assert store.records()["a.example.org"].serial == f"{300:x}"
    found = store.recover(DIRECTORY, "ecdsa")
    assert found.adopted == ["a.example.org"] and store.records()["a.example.org"].serial == f"{301:x}"
    assert count(store) == 2  # its issuance was counted before the files: not again
    # files of a run whose database is gone (or older): adopted and counted
    third_key, third_chain = issue(ca, "b.example.org", 302)
    store.write("b.example.org", third_key, third_chain, DIRECTORY, "ecdsa")
    assert store.recover(DIRECTORY, "ecdsa").adopted == ["b.example.org"] and count(store) == 3
    assert [issued.renewal for issued in store.history(DIRECTORY)] == [False, True, False]


def test_staged_files_are_finished_when_whole_and_dropped_when_not(ca, store):
    key, chain = issue(ca, "a.example.org", 400)
    store.save("a.example.org", key, chain, DIRECTORY, "ecdsa", False)
    folder = store.dir("a.example.org")
    new_key, new_chain = issue(ca, "a.example.org", 401)
    # killed while staging: only the key staged; the certificate in place stays whole
    (folder / ("privkey.pem" + STAGED)).write_bytes(new_key)
    found = store.recover(DIRECTORY, "ecdsa")
    assert found.discarded == ["a.example.org"] and not (folder / ("privkey.pem" + STAGED)).exists()
    assert store.privkey("a.example.org").read_bytes() == key
    # killed while moving: the key moved, the rest staged; finished, then adopted
    (folder / "privkey.pem").write_bytes(new_key)
    for part, text in (("cert.pem", new_chain), ("chain.pem", ""), ("fullchain.pem", new_chain)):
        (folder / (part + STAGED)).write_text(text)
    found = store.recover(DIRECTORY, "ecdsa")
    assert found.completed == ["a.example.org"] and found.adopted == ["a.example.org"]
    assert store.fullchain("a.example.org").read_text() == new_chain
    assert store.records()["a.example.org"].serial == f"{401:x}"


def test_a_key_that_is_not_the_certificates_is_reported_and_the_row_dropped(ca, store):
    key, chain = issue(ca, "a.example.org", 500)
    store.save("a.example.org", key, chain, DIRECTORY, "ecdsa", False)
    other_key, other_chain = issue(ca, "a.example.org", 501)
    store.fullchain("a.example.org").write_text(other_chain)  # the key of 500, the chain of 501
    found = store.recover(DIRECTORY, "ecdsa")
    assert "not the key" in found.broken["a.example.org"]
    assert "a.example.org" not in store.records()  # missing: issued again


def test_an_order_being_finalized_counts_until_the_ca_says_it_did_not_issue(ca, store):
    key, chain = issue(ca, "a.example.org", 600)
    store.finalizing("a.example.org", ("a.example.org", "*.a.example.org"), DIRECTORY, False,
                     "https://ca/order/1", key)
    assert count(store) == 1 and len(store.history(DIRECTORY)) == 1
    [(name, url, renewal, key_file)] = store.pending(DIRECTORY)
    assert (name, url, renewal, key_file.read_bytes()) == ("a.example.org", "https://ca/order/1", False, key)
    assert key_file.stat().st_mode & 0o777 == 0o600
    store.save("a.example.org", key, chain, DIRECTORY, "ecdsa", False, url)  # kept: the same issuance
    assert count(store) == 1 and store.pending(DIRECTORY) == [] and not key_file.exists()
    store.finalizing("a.example.org", ("a.example.org", "*.a.example.org"), DIRECTORY, True, "https://ca/order/2", key)
    store.not_issued(DIRECTORY, "https://ca/order/2")
    assert count(store) == 1 and store.pending(DIRECTORY) == []
