"""The export reader: cozy-monitor's format (PAX, //, repeats) and every hostile case's outcome."""

from __future__ import annotations

import gzip
import hashlib

import pytest

from cozyops.v2.tarball import ArchiveRefused, Limits, Member, Skipped, read_export, split_name
from tests.v2export import Export, realistic


def collect(path, limits=None):
    out = []
    for item in read_export(path, limits):
        if isinstance(item, Member) and item.stream:
            item.data = item.stream.read()  # type: ignore[attr-defined]
        out.append(item)
    return out


def test_realistic_export_reads_every_member_with_pax_names_and_double_slashes(tmp_path):
    for locale in ("en", "fr"):
        export, holds = realistic(locale)
        items = collect(export.write(tmp_path / f"{locale}.tar.gz"))
        assert not [i for i in items if isinstance(i, Skipped)]
        files = {"/".join(i.parts[1:]): i.data for i in items if i.kind == "file" and i.parts[0] == "files"
                 and i.parts[1] != "Archive"}
        assert files == holds["files"]
        names = [i.name for i in items]
        assert "files//notes.txt" in names
        assert any(n.startswith("files/Photos/") and "//" in n for n in names)
        refs = next(i.data for i in items if i.path == "albums/references.json")
        assert not refs.endswith(b"\n")


def test_names_byte_exact_no_normalisation(tmp_path):
    nfc, nfd = "\u00e9t\u00e9.txt", "e\u0301te\u0301.txt"
    items = collect(Export().file("", nfc, b"1").file("", nfd, b"2").write(tmp_path / "x.tar.gz"))
    assert [i.parts[-1] for i in items] == [nfc, nfd]


def test_tar_stream_154_pax_off_by_one_is_repaired(tmp_path):
    name = "files//" + "é" * 30 + "x" * 22 + "yz"  # 7 + 60 + 24: a 91-byte path
    assert len(name.encode()) == 91
    from tests.v2export import pax_record

    assert len(pax_record("path", name.encode(), tar_stream_154=True)) == 101  # claims 100
    for buggy in (True, False):
        items = collect(Export(tar_stream_154=buggy).entry(name, b"data").file("", "after.txt", b"a")
                        .write(tmp_path / "pax.tar.gz"))
        assert [i.path for i in items] == ["files/" + "é" * 30 + "x" * 22 + "yz", "files/after.txt"]


def test_repeated_names_are_all_kept(tmp_path):
    items = collect(Export().file("", "a.txt", b"1").file("", "a.txt", b"2").write(tmp_path / "x.tar.gz"))
    assert [(i.path, i.data) for i in items] == [("files/a.txt", b"1"), ("files/a.txt", b"2")]


def test_very_deep_nesting_is_read(tmp_path):
    export = Export()
    export.file(export.nested(500), "deep.txt", b"deep")
    items = collect(export.write(tmp_path / "deep.tar.gz"))
    assert len(items) == 501 and not [i for i in items if isinstance(i, Skipped)]
    assert items[-1].parts[-1] == "deep.txt" and len(items[-1].parts) == 502


SKIPPED = [
    ("traversal", lambda e: e.entry("files/../../etc/passwd", b"x"), "leaves the destination"),
    ("traversal inside", lambda e: e.entry("files/a/../../../x", b"x"), "leaves the destination"),
    ("absolute", lambda e: e.entry("/etc/passwd", b"x"), "absolute name"),
    ("symlink", lambda e: e.entry("files/link", typeflag=b"2", linkname=b"/etc/passwd"), "symbolic link"),
    ("hardlink", lambda e: e.entry("files/hard", typeflag=b"1", linkname=b"files/a"), "hard link"),
    ("char device", lambda e: e.entry("files/null", typeflag=b"3", devmajor=1), "device"),
    ("block device", lambda e: e.entry("files/sda", typeflag=b"4", devmajor=8), "device"),
    ("fifo", lambda e: e.entry("files/fifo", typeflag=b"6"), "FIFO"),
    ("invalid utf-8", lambda e: e.entry(b"files/caf\xe9.txt", b"x"), "not valid UTF-8"),
    ("newline in name", lambda e: e.entry("files/a\nb.txt", b"x"), "forbids"),
    ("outside the layout", lambda e: e.entry("metadata/x.json", b"x"), "outside files/"),
    ("too deep", lambda e: e.entry("files/" + "d/" * 520 + "f.txt", b"x"), "deeper than cozy-stack allows"),
]


@pytest.mark.parametrize(("case", "add", "reason"), SKIPPED, ids=[c[0] for c in SKIPPED])
def test_hostile_members_are_skipped_with_reason_and_the_rest_read(tmp_path, case, add, reason):
    export = Export().file("", "before.txt", b"before")
    add(export)
    export.file("", "after.txt", b"after")
    items = collect(export.write(tmp_path / "x.tar.gz"))
    skipped = [i for i in items if isinstance(i, Skipped)]
    assert len(skipped) == 1 and reason in skipped[0].reason, skipped
    assert [i.data for i in items if isinstance(i, Member)] == [b"before", b"after"]


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_truncated_archive_is_refused(tmp_path, cut):
    export = Export().file("", "a.bin", hashlib.sha512(b"a").digest() * 4000).file("", "b.txt", b"b" * 1000)
    whole = export.write(tmp_path / "whole.tar.gz").stat().st_size
    path = export.write(tmp_path / "cut.tar.gz", truncate_at=int(whole * cut))
    with pytest.raises(ArchiveRefused, match="truncated|ends early|corrupt"):
        collect(path)


def test_truncated_member_inside_a_valid_gzip_is_refused(tmp_path):
    tar = Export().file("", "a.txt", b"a" * 5000).tar_bytes()
    path = tmp_path / "short.tar.gz"
    path.write_bytes(gzip.compress(tar[:512 + 2048]))
    with pytest.raises(ArchiveRefused, match="truncated|ends early"):
        collect(path)


def test_tar_cut_at_a_member_boundary_is_refused(tmp_path):
    tar = Export().file("", "a.txt", b"a" * 100).file("", "b.txt", b"b").tar_bytes()
    path = tmp_path / "boundary.tar.gz"
    path.write_bytes(gzip.compress(tar[:1024]))  # a.txt whole, then nothing: not even the end blocks
    with pytest.raises(ArchiveRefused, match="no end-of-archive block"):
        collect(path)


def test_gzip_bomb_refused_by_ratio_and_by_size(tmp_path):
    path = Export().file("", "zeros", b"\0" * (8 << 20)).write(tmp_path / "bomb.tar.gz")
    with pytest.raises(ArchiveRefused, match="ratio"):
        collect(path, Limits(max_ratio=50, ratio_floor=1 << 20))
    with pytest.raises(ArchiveRefused, match="more than"):
        collect(path, Limits(max_bytes=4 << 20))
    assert len(collect(path)) == 1  # the defaults let a genuine 8 MiB of zeros through


@pytest.mark.parametrize("content", [b"", b"not gzip at all", gzip.compress(b"not a tar" * 100, mtime=0)],
                         ids=["empty", "not gzip", "gzip of no tar"])
def test_not_an_export_is_refused(tmp_path, content):
    path = tmp_path / "bad.tar.gz"
    path.write_bytes(content)
    with pytest.raises(ArchiveRefused, match=str(path)):
        collect(path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ArchiveRefused, match="cannot be read"):
        collect(tmp_path / "nope.tar.gz")


@pytest.mark.parametrize(("name", "parts"), [
    ("files//Documents/report.pdf", ("files", "Documents", "report.pdf")),
    ("files/Photos/Uploaded from Cozy Photos//IMG.jpg", ("files", "Photos", "Uploaded from Cozy Photos", "IMG.jpg")),
    ("files/./a//b/", ("files", "a", "b")),
    ("contacts/Contact_X.vcf", ("contacts", "Contact_X.vcf")),
])
def test_split_name(name, parts):
    assert split_name(name) == (parts, None)
