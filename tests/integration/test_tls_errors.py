"""ACME misconfiguration against the lab's pebble: one line naming the input, exit 1 (issue 12, item 6)."""

from __future__ import annotations

import os

import pytest

from cozyops.tls.issuer import directory_id
from tests.integration.test_tls import cli, tag, write_fleet

pytestmark = pytest.mark.lab


def error_line(stderr: str) -> str:
    """The one error line (the plan's line comes before it); nothing else, no traceback."""
    lines = stderr.splitlines()
    errors = [line for line in lines if line.startswith("cozyops: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in stderr, stderr
    return errors[0]


def test_a_wrong_directory_path_is_one_line_naming_the_url(lab, tmp_path):
    wrong = lab.spec.acme_directory.rsplit("/", 1)[0] + "/directory"
    fleet = write_fleet(tmp_path / "fleet", lab, [f"d{tag()}.{lab.spec.zone}"], acme={"directory": wrong})
    done = cli(lab, fleet, "issue")
    assert done.returncode == 1, done.stderr
    line = error_line(done.stderr)
    assert wrong in line and "HTTP 404" in line and "no ACME directory at this URL" in line
    assert "ClientError" not in done.stderr and "Response" not in done.stderr


def test_a_corrupt_account_key_is_one_line_naming_the_file_never_its_content(lab, tmp_path):
    fleet = write_fleet(tmp_path / "fleet", lab, [f"a{tag()}.{lab.spec.zone}"])
    key = fleet / ".cozyops/acme" / directory_id(lab.spec.acme_directory) / "account.key"
    key.parent.mkdir(parents=True)
    secret = "c2VjcmV0LWJ5dGVzLW9mLXRoZS1hY2NvdW50"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, f"-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n".encode())
    os.close(fd)
    done = cli(lab, fleet, "issue")
    assert done.returncode == 1, done.stderr
    line = error_line(done.stderr)
    assert str(key) in line and "not an unencrypted PEM P-256 private key" in line
    assert "ValueError" not in done.stderr and secret not in done.stderr + done.stdout
    # an RSA key (a PEM that loads, of the wrong kind) is refused the same way
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    key.write_bytes(pem)
    done = cli(lab, fleet, "issue")
    assert done.returncode == 1 and str(key) in error_line(done.stderr)
