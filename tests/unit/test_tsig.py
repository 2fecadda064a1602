import base64
import stat

import pytest

from cozyops.dns import tsig
from cozyops.errors import ConfigError

# As `tsig-keygen -a hmac-sha256 acme-key` prints it.
KEYGEN_OUTPUT = """key "acme-key" {
\talgorithm hmac-sha256;
\tsecret "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I=";
};
"""


def test_parses_tsig_keygen_output():
    key = tsig.parse(KEYGEN_OUTPUT)
    assert (key.name, key.algorithm) == ("acme-key", "hmac-sha256")
    assert key.secret == "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I="
    assert str(key.algorithm_name) == "hmac-sha256."


def test_generated_key_round_trips_and_has_a_full_size_secret():
    key = tsig.generate("k1")
    assert len(base64.b64decode(key.secret)) == 32
    assert tsig.parse(key.to_bind()) == key
    assert tsig.generate("k1").secret != key.secret


@pytest.mark.parametrize("algorithm, size", [("hmac-sha512", 64), ("hmac-sha384", 48)])
def test_secret_size_follows_the_algorithm(algorithm, size):
    assert len(base64.b64decode(tsig.generate("k", algorithm).secret)) == size


def test_secret_is_never_shown():
    key = tsig.parse(KEYGEN_OUTPUT)
    assert key.secret not in repr(key)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "not a TSIG key file"),
        ('key "k" { algorithm hmac-sha256; };', "not a TSIG key file"),
        ('key "k" { algorithm rot13; secret "c2VjcmV0"; };', "unsupported TSIG algorithm"),
        ('key "k" { algorithm hmac-sha256; secret "not base64!!"; };', "not valid base64"),
    ],
)
def test_bad_key_files_name_the_file_and_never_the_secret(text, message):
    with pytest.raises(ConfigError, match=message) as caught:
        tsig.parse(text, "secrets/tsig.key")
    assert str(caught.value).startswith("secrets/tsig.key: ")
    assert "not base64!!" not in str(caught.value)


def test_written_key_file_is_private(tmp_path):
    path = tmp_path / "secrets" / "tsig.key"
    tsig.write(path, tsig.generate("k"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert tsig.load(path).name == "k"


def test_missing_key_file_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read TSIG key file"):
        tsig.load(tmp_path / "nope.key")
