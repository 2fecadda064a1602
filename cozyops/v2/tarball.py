"""Reading a ``cozy-monitor export`` tarball: streaming, memory bounded, hostile input refused or skipped.

The tarball (../shared/reference/cozy-v2-export.md §1.3) is a gzip'd tar written by tar-stream: PAX
headers for non-ASCII or long names, ``//`` in names, repeated entry names. It is read once, member
after member (``tarfile`` in stream mode), never extracted: each member's content is handed out as a
bounded file object that must be consumed before the next member.

Outcomes for hostile input (issue 7, item 5):

- the whole archive is **refused** (``ArchiveRefused``) when it is not a gzip'd tar, is truncated
  (a member or the gzip stream ends early), or decompresses past the size limit or the ratio limit
  (a decompression bomb);
- a single **member is skipped** (a ``Skipped`` item, with its reason) when its name is absolute,
  would leave the destination (``..``), is not valid UTF-8 or holds a character that cozy-stack
  forbids, is too deep for cozy-stack, lies outside ``files/``, ``albums/``, ``contacts/``, or when
  it is a symbolic or hard link, a device or a FIFO.
"""

from __future__ import annotations

import gzip
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from cozyops.errors import CozyopsError

TOPS = ("files", "albums", "contacts")
FORBIDDEN_CHARS = ("\x00", "\n", "\r")  # and "/", which cannot occur in a part (cozy-stack vfs.go)
MAX_STACK_DEPTH = 511  # cozy-stack refuses a path with 512 or more "/" (files reference §1.5)


class ArchiveRefused(CozyopsError):
    """The archive cannot be read safely as a whole: nothing more is read from it."""


@dataclass(frozen=True)
class Limits:
    """Decompression limits: total decompressed bytes, and decompressed/compressed ratio.

    The ratio is checked only past ``ratio_floor`` decompressed bytes (a small archive of zeros
    compresses very well and is harmless).
    """

    max_bytes: int = 1 << 40  # 1 TiB
    max_ratio: float = 200.0
    ratio_floor: int = 64 << 20  # 64 MiB

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_ratio <= 1 or self.ratio_floor < 0:
            raise ValueError("limits must be positive (ratio above 1)")


class _Counting:
    """A read-only stream that counts what was read through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        return data

    def readable(self) -> bool:
        return True


class _Guarded:
    """The decompressed stream, refusing the archive once a limit is passed."""

    def __init__(self, source: str, compressed: _Counting, gz: gzip.GzipFile, limits: Limits) -> None:
        self.source = source
        self.compressed = compressed
        self.gz = gz
        self.limits = limits
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.gz.read(size)
        except (gzip.BadGzipFile, zlib.error, OSError) as error:
            raise ArchiveRefused(self.source, f"not a valid gzip stream ({error})") from None
        except EOFError:
            raise ArchiveRefused(self.source, "truncated: the gzip stream ends early") from None
        self.count += len(data)
        if self.count > self.limits.max_bytes:
            raise ArchiveRefused(self.source, f"decompresses to more than {self.limits.max_bytes} bytes "
                                 "(a decompression bomb?)", "raise the limit with --max-size if it is genuine")
        if self.count > self.limits.ratio_floor and self.count > self.limits.max_ratio * max(self.compressed.count, 1):
            raise ArchiveRefused(self.source, f"decompression ratio above {self.limits.max_ratio:g} "
                                 "(a decompression bomb?)", "raise the limit with --max-ratio if it is genuine")
        return data

    def readable(self) -> bool:
        return True


@dataclass
class Member:
    """One usable member. ``parts`` is the normalised path (empty and ``.`` parts dropped)."""

    index: int  # position in the archive (0-based, counting every member)
    name: str  # the name as stored (after PAX), for the report
    parts: tuple[str, ...]
    kind: str  # "dir" or "file"
    size: int
    stream: BinaryIO | None = field(default=None, repr=False)

    @property
    def path(self) -> str:
        return "/".join(self.parts)


@dataclass(frozen=True)
class Skipped:
    """A member that is not read, with the reason (reported, never silent)."""

    index: int
    name: str
    reason: str


def printable(name: str) -> str:
    """A name for messages: undecodable bytes shown as \\xNN, control characters escaped."""
    raw = name.encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "backslashreplace").encode("unicode_escape").decode("ascii").replace("\\\\x", "\\x")


def split_name(name: str) -> tuple[tuple[str, ...], str | None]:
    """The normalised parts of a member name, or the reason it is refused."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return (), "name is not valid UTF-8"
    if name.startswith("/"):
        return (), "absolute name"
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        return (), "name leaves the destination (..)"
    if not parts:
        return (), "empty name"
    if any(char in part for part in parts for char in FORBIDDEN_CHARS):
        return (), "name holds a character cozy-stack forbids (NUL, CR or LF)"
    if parts[0] not in TOPS:
        return (), "outside files/, albums/ and contacts/"
    return parts, None


def _kind(info: tarfile.TarInfo) -> tuple[str | None, str | None]:
    if info.isdir():
        return "dir", None
    if info.isreg():
        return "file", None
    if info.issym():
        return None, "symbolic link"
    if info.islnk():
        return None, "hard link"
    if info.ischr() or info.isblk():
        return None, "device"
    if info.isfifo():
        return None, "FIFO"
    return None, f"unsupported member type {info.type!r}"


def repair_pax(buf: bytes) -> bytes:
    """PAX records with tar-stream 1.5.4's off-by-one fixed (cozy-monitor 1.4.0/1.4.1, reference §1.3):
    for a 91-byte path the record claims 100 bytes but holds 101. A record whose claimed end is not
    its newline while the next byte is, is rewritten with its true length; others are kept."""
    out, pos = bytearray(), 0
    while pos < len(buf) and buf[pos] != 0:
        space = buf.find(b" ", pos, pos + 24)
        if space < 0 or not buf[pos:space].isdigit():
            return bytes(buf)  # not PAX as we know it: leave it to tarfile
        length = int(buf[pos:space])
        end = pos + length
        if length > 0 and end < len(buf) and buf[end - 1:end] != b"\n" and buf[end:end + 1] == b"\n":
            body = buf[space:end + 1]
            digits = len(str(len(body)))
            size = len(body) + digits
            size += len(str(size)) - digits
            out += str(size).encode() + body
            pos = end + 1
        else:
            out += buf[pos:end]
            pos = end
    return bytes(out)


class _TarInfo(tarfile.TarInfo):
    def _proc_pax(self, tar):  # noqa: ANN001 - tarfile's own hook
        stream = tar.fileobj
        repaired = repair_pax(stream.read(self._block(self.size)))

        class Once:
            def read(self, _size: int) -> bytes:
                tar.fileobj = stream
                return repaired

        tar.fileobj = Once()
        try:
            return super()._proc_pax(tar)
        finally:
            tar.fileobj = stream


class _MemberStream:
    """A member's content that turns a short read (truncated archive) into ``ArchiveRefused``."""

    def __init__(self, source: str, name: str, inner: BinaryIO, size: int) -> None:
        self.source, self.name, self.inner, self.left = source, name, inner, size

    def read(self, size: int = -1) -> bytes:
        want = self.left if size is None or size < 0 else min(size, self.left)
        if want <= 0:
            return b""
        try:
            data = self.inner.read(want)
        except (tarfile.ReadError, EOFError):
            data = b""
        if not data:
            raise ArchiveRefused(self.source, f"truncated: member {printable(self.name)} ends early")
        self.left -= len(data)
        return data

    def readable(self) -> bool:
        return True


def read_export(path: Path, limits: Limits | None = None) -> Iterator[Member | Skipped]:
    """Every member of the export, in order: ``Member`` (read its ``stream`` before the next) or ``Skipped``.

    Raises ``ArchiveRefused`` (naming the archive) when the archive as a whole cannot be trusted.
    """
    limits = limits or Limits()
    source = f"export {path}"
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as error:
        raise ArchiveRefused(source, f"cannot be read ({error.strerror})") from None
    with raw:
        compressed = _Counting(raw)
        gz = gzip.GzipFile(fileobj=compressed, mode="rb")
        guarded = _Guarded(source, compressed, gz, limits)
        try:
            tar = tarfile.open(fileobj=guarded, mode="r|", encoding="utf-8", errors="surrogateescape",
                               tarinfo=_TarInfo)
        except ArchiveRefused:
            raise
        except (tarfile.ReadError, EOFError) as error:
            raise ArchiveRefused(source, f"not a tar archive ({error})") from None
        index = -1
        while True:
            try:
                info = tar.next()
            except ArchiveRefused:
                raise
            except (tarfile.ReadError, EOFError) as error:
                raise ArchiveRefused(source, f"truncated or corrupt after member {index + 1} ({error})") from None
            if info is None:
                break
            index += 1
            kind, why = _kind(info)
            if why:
                yield Skipped(index, info.name, why)
                continue
            parts, why = split_name(info.name)
            if why:
                yield Skipped(index, info.name, why)
                continue
            if parts[0] == "files" and len(parts) - 1 > MAX_STACK_DEPTH - 1:
                yield Skipped(index, info.name, f"nested deeper than cozy-stack allows ({MAX_STACK_DEPTH} levels)")
                continue
            stream = None
            if kind == "file":
                inner = tar.extractfile(info)
                stream = _MemberStream(source, info.name, inner, info.size)  # type: ignore[arg-type]
            yield Member(index, info.name, parts, kind, info.size if kind == "file" else 0, stream)
        # Drain what follows the end-of-archive blocks, so that a truncated gzip trailer is seen; a tar
        # that stops right after a member, without its end-of-archive block, was cut there.
        while guarded.read(1 << 16):
            pass
        if guarded.count - tar.offset < tarfile.BLOCKSIZE:
            raise ArchiveRefused(source, f"truncated: no end-of-archive block after member {index + 1}")
