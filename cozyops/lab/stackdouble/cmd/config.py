"""``cozy-stack config passwd`` and ``config gen-keys`` (cozy-stack's ``cmd/config.go``).

Both run without the admin API. The real commands' observable behaviour, read at db1163854:

* ``passwd [PATH]`` (``adminPasswdCmd``): no path prints the hash on stdout; a path is made absolute
  (``utils.AbsPath``: ``~``, ``$HOME``, ``$VAR/``), and a directory gets ``admin.secret_filename``
  appended; ``Hashed passphrase will be written in PATH`` goes to stderr before the passphrase is
  read; the passphrase comes from ``COZY_ADMIN_PASSPHRASE`` or two prompts on stderr read from a
  terminal on stdin; the file is opened in place (create, truncate, mode 0440), chmod-ed 0440, and
  gets the hash and a newline (``fmt.Fprintln``).
* ``gen-keys PATH`` (``genKeysCmd``, ``writeFile``, ``keyring.GenerateEncodedNACLKeyPair``): two
  NaCl box key pairs; ``PATH.enc`` holds the receiver's public key and the sender's private key,
  ``PATH.dec`` the sender's public key and the receiver's private key, each 64 bytes in a PEM block
  ``NACL KEY``; each file is created exclusively (an existing file is an error) with mode 0400; then
  ``keyfiles written in:`` and the two paths, indented by two spaces, on stderr.
* Neither takes more arguments than that: a wrong count prints the usage and exits 0
  (``cmd.Usage()`` returns nil: root.go's usage function).
"""

from __future__ import annotations

import base64
import os
import sys
import termios

from .. import secret
from .root import CliError, go_error, group, sub, usage


def abs_path(value: str) -> str:
    """``utils.AbsPath``: ``~`` and ``$HOME`` become the home directory, a leading ``$VAR/`` its value."""
    home = os.path.expanduser("~")
    if value.startswith("~"):
        value = home + value[1:]
    elif value.startswith("$HOME"):
        value = home + value[len("$HOME"):]
    if value.startswith("$"):
        end = value.find("/")
        name, rest = (value[1:], "") if end < 0 else (value[1:end], value[end:])
        value = os.environ.get(name, "") + rest
    return os.path.normpath(os.path.abspath(value))


def read_password(fd: int = 0) -> str:
    """``term.ReadPassword(stdin)``: a line without echo; not a terminal is ``inappropriate ioctl for device``."""
    try:
        old = termios.tcgetattr(fd)
    except termios.error:
        raise CliError("inappropriate ioctl for device") from None
    new = list(old)
    new[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSAFLUSH, new)
    try:
        line = b""
        while not line.endswith(b"\n"):
            chunk = os.read(fd, 1)
            if not chunk:
                break
            line += chunk
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, old)
    return line.rstrip(b"\r\n").decode()


def _ask(prompt: str) -> str:
    sys.stderr.write(prompt)
    sys.stderr.flush()
    try:
        return read_password()
    finally:
        sys.stderr.write("\n")


def cmd_passwd(args, client) -> int:
    if len(args.paths) > 1:
        return usage(args, 0)
    filename = ""
    if args.paths:
        filename = abs_path(args.paths[0])
        if os.path.isdir(filename):
            filename = os.path.join(filename, args.cfg.secret_filename)
        print(f"Hashed passphrase will be written in {filename}", file=sys.stderr)
    passphrase = os.environ.get("COZY_ADMIN_PASSPHRASE", "")
    if not passphrase:
        first = _ask("Passphrase: ")
        again = _ask("Confirmation: ")
        if first != again:
            raise CliError("Passphrase missmatch")
        if not first:
            raise CliError("Empty password is forbidden")
        passphrase = first
    line = secret.hash_passphrase(passphrase) + "\n"
    if not filename:
        sys.stdout.write(line)
        return 0
    try:
        fd = os.open(filename, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o440)
    except OSError as error:
        raise CliError(go_error("open", filename, error)) from None
    try:
        try:
            os.chmod(filename, 0o440)
        except OSError as error:
            raise CliError(go_error("chmod", filename, error)) from None
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    return 0


def pem(block_type: str, data: bytes) -> bytes:
    """``pem.EncodeToMemory``: base64 in lines of 64 characters between BEGIN and END lines."""
    text = base64.b64encode(data).decode()
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return (f"-----BEGIN {block_type}-----\n" + "".join(line + "\n" for line in lines)
            + f"-----END {block_type}-----\n").encode()


P25519 = 2**255 - 19
A24 = 121665


def x25519_base(scalar: bytes) -> bytes:
    """``curve25519.ScalarBaseMult`` (RFC 7748 §5: clamp, Montgomery ladder from u = 9).

    The double runs on bare Debian hosts with the standard library and PyYAML only, so the ladder is
    written here; the contract test checks it against libsodium (PyNaCl) with a box round trip.
    """
    k = bytearray(scalar)
    k[0] &= 248
    k[31] = (k[31] & 127) | 64
    n = int.from_bytes(k, "little")
    x1, x2, z2, x3, z3, swap = 9, 1, 0, 9, 1, 0
    for t in reversed(range(255)):
        bit = (n >> t) & 1
        swap ^= bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b = (x2 + z2) % P25519, (x2 - z2) % P25519
        c, d = (x3 + z3) % P25519, (x3 - z3) % P25519
        aa, bb, da, cb = a * a % P25519, b * b % P25519, d * a % P25519, c * b % P25519
        e = (aa - bb) % P25519
        x3, z3 = (da + cb) ** 2 % P25519, x1 * (da - cb) ** 2 % P25519
        x2, z2 = aa * bb % P25519, e * (aa + A24 * e) % P25519
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, P25519 - 2, P25519) % P25519).to_bytes(32, "little")


def box_key() -> tuple[bytes, bytes]:
    """``box.GenerateKey``: 32 random bytes as the private key, its public key (public, private)."""
    private = os.urandom(32)
    return x25519_base(private), private


def nacl_key_pair() -> tuple[bytes, bytes]:
    """``keyring.GenerateEncodedNACLKeyPair``: (encryptor, decryptor) as PEM blocks ``NACL KEY``."""
    sender_public, sender_private = box_key()
    receiver_public, receiver_private = box_key()
    return pem("NACL KEY", receiver_public + sender_private), pem("NACL KEY", sender_public + receiver_private)


def _write_new(filename: str, data: bytes, mode: int) -> None:
    """``writeFile``: O_CREATE|O_EXCL with ``mode`` (umask applies, as in Go)."""
    try:
        fd = os.open(filename, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as error:
        raise CliError(go_error("open", filename, error)) from None
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def cmd_gen_keys(args, client) -> int:
    if len(args.paths) != 1:
        return usage(args, 0)
    filename = abs_path(args.paths[0])
    encryptor_file, decryptor_file = filename + ".enc", filename + ".dec"
    encryptor, decryptor = nacl_key_pair()
    _write_new(encryptor_file, encryptor, 0o400)
    _write_new(decryptor_file, decryptor, 0o400)
    print(f"keyfiles written in:\n  {encryptor_file}\n  {decryptor_file}", file=sys.stderr)
    return 0


def register(commands) -> None:
    cfg = group(commands, ["config"], "Show and manage configuration elements")
    passwd = sub(cfg, ["passwd", "password", "passphrase", "pass"], cmd_passwd, "Generate an admin passphrase")
    passwd.add_argument("paths", nargs="*", metavar="filepath")
    keys = sub(cfg, ["gen-keys"], cmd_gen_keys,
               "Generate an key pair for encryption and decryption of credentials")
    keys.add_argument("paths", nargs="*", metavar="filepath")


OFFLINE = {cmd_passwd, cmd_gen_keys}
