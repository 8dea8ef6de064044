"""The C tar reader: every header format tarfile and GNU tar write, read back
member by member, whatever the chunking of the stream."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.fscheck import assert_same_tree

from ociext4.errors import SourceError
from ociext4.ext4 import Ext4Options, Ext4Writer
from ociext4.ext4.records import TAR_ENTRY
from ociext4.layers import PLAIN_NAME, Limits, entry_of, read_batches, read_entries, records
from ociext4.sources.tarball import read_tar
from ociext4.tree import split_path

name_parts = st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                            blacklist_characters="/\0"),
                     min_size=1, max_size=60).filter(lambda s: s not in (".", ".."))
paths = st.lists(name_parts, min_size=1, max_size=5).map("/".join)
TAR_FLAGS = [name for name, _ in TAR_ENTRY.fields].index("flags")


@st.composite
def members(draw: st.DrawFn) -> list[tuple[tarfile.TarInfo, bytes]]:
    out = []
    seen: set[str] = set()
    for _ in range(draw(st.integers(1, 12))):
        path = draw(paths)
        if path in seen:
            continue
        seen.add(path)
        info = tarfile.TarInfo(path)
        kind = draw(st.sampled_from(["file", "file", "dir", "sym", "chr", "fifo"]))
        info.mode = draw(st.integers(0, 0o7777))
        info.uid = draw(st.integers(0, 2**21 - 1))
        info.gid = draw(st.integers(0, 2**21 - 1))
        info.mtime = draw(st.integers(0, 2**33 - 1))
        data = b""
        if kind == "file":
            data = draw(st.binary(max_size=3000))
            info.size = len(data)
        elif kind == "dir":
            info.type = tarfile.DIRTYPE
        elif kind == "sym":
            info.type = tarfile.SYMTYPE
            info.linkname = draw(paths)
        elif kind == "chr":
            info.type = tarfile.CHRTYPE
            info.devmajor, info.devminor = draw(st.integers(0, 4095)), draw(st.integers(0, 2**19))
        else:
            info.type = tarfile.FIFOTYPE
        out.append((info, data))
    return out


def _archive(items: list[tuple[tarfile.TarInfo, bytes]], fmt: int,
             pax: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, pax_headers=pax or {}) as tf:
        for info, data in items:
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@settings(deadline=None)
@given(items=members(), fmt=st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT]),
       chunk=st.sampled_from([1, 7, 512, 513, 4096, 1 << 20]))
def test_members_read_back_as_written_whatever_the_chunking(tmp_path_factory, items, fmt, chunk):
    archive = _archive(items, fmt)
    out = tmp_path_factory.mktemp("layers") / "x.img"
    with Ext4Writer(out, Ext4Options(fsync=False)) as w:
        got = list(read_entries(io.BytesIO(archive), "t.tar", w, chunk=chunk))
    # tarfile writes directories with a trailing slash.
    assert [e.name.decode("utf-8", "surrogateescape").rstrip("/") for e in got] == [
        i.name for i, _ in items]
    for e, (info, data) in zip(got, items, strict=True):
        assert (e.mode, e.uid, e.gid, e.mtime_ns) == (info.mode, info.uid, info.gid,
                                                      info.mtime * 10**9)
        assert e.type == info.type.decode()
        if info.issym():
            assert e.link.decode("utf-8", "surrogateescape") == info.linkname
        if info.ischr():
            assert e.rdev == (info.devmajor, info.devminor)
        if info.isreg():
            assert e.size == len(data) and (e.data is None) == (len(data) == 0)


def test_pax_times_keep_nanoseconds_and_negative_times(tmp_path):
    info = tarfile.TarInfo("f")
    info.pax_headers = {"mtime": "-1.25", "atime": "1700000000.123456789"}
    with Ext4Writer(tmp_path / "x.img") as w:
        (e,) = read_entries(io.BytesIO(_archive([(info, b"")], tarfile.PAX_FORMAT)), "t", w)
    assert e.mtime_ns == -1_250_000_000
    assert e.atime_ns == 1_700_000_000_123_456_789


def test_pax_xattrs_and_global_headers_apply(tmp_path):
    info = tarfile.TarInfo("f")
    info.pax_headers = {"SCHILY.xattr.user.k": "v\u00e9", "SCHILY.xattr.security.x": "y"}
    archive = _archive([(info, b"")], tarfile.PAX_FORMAT, pax={"uid": "4000000000"})
    with Ext4Writer(tmp_path / "x.img") as w:
        (e,) = read_entries(io.BytesIO(archive), "t", w)
    assert e.xattrs == {"user.k": "v\u00e9".encode(), "security.x": b"y"}
    assert e.uid == 4_000_000_000


def test_ustar_prefix_and_gnu_long_names_give_the_full_path(tmp_path):
    long = "d" * 60 + "/" + "e" * 60 + "/" + "f" * 50  # 171 bytes: needs the ustar prefix
    items = [(tarfile.TarInfo(long), b""), (tarfile.TarInfo("x" * 150), b"")]
    for fmt in (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT):
        usable = items[:1] if fmt == tarfile.USTAR_FORMAT else items
        with Ext4Writer(tmp_path / "x.img") as w:
            got = [e.name.decode() for e in read_entries(io.BytesIO(_archive(usable, fmt)), "t", w)]
        assert got == [i.name for i, _ in usable]


def _tar_bytes(*members: bytes) -> bytes:
    return b"".join(members) + bytes(1024)


def _header(name: bytes, size: int = 0, type_: bytes = b"0", chksum: bool = True,
            magic: bytes = b"ustar\x0000", mtime: bytes = b"00000000000\0") -> bytes:
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:108] = b"0000644\0"
    h[108:116] = h[116:124] = b"0000000\0"
    h[124:136] = b"%011o\0" % size
    h[136:148] = mtime
    h[156:157] = type_
    h[257:257 + len(magic)] = magic
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % (sum(h) if chksum else 1)
    return bytes(h)


@pytest.mark.parametrize(("archive", "message"), [
    (_tar_bytes(_header(b"a", chksum=False)), "at byte 0: bad tar header checksum"),
    (_header(b"a", size=100) + b"x" * 50, "archive is truncated"),
    (_header(b"a")[:300], "archive is truncated"),
    (_tar_bytes(_header(b"././@PaxHeader", size=2 << 20, type_=b"x")),
     "PAX header of 2097152 bytes is over the limit of 1048576"),
    (_tar_bytes(_header(b"././@LongLink", size=2 << 20, type_=b"L")),
     "GNU long name of 2097152 bytes is over the limit"),
])
def test_broken_archives_fail_with_the_input_and_offset_named(tmp_path, archive, message):
    with Ext4Writer(tmp_path / "x.img") as w, pytest.raises(SourceError) as err:
        list(read_entries(io.BytesIO(archive), "layer.tar", w))
    assert str(err.value).startswith("layer.tar: ")
    assert message in str(err.value)


def test_limits_can_be_raised(tmp_path):
    info = tarfile.TarInfo("a" * 5000)
    archive = _archive([(info, b"")], tarfile.PAX_FORMAT)
    with Ext4Writer(tmp_path / "x.img") as w, pytest.raises(SourceError, match="over the limit"):
        list(read_entries(io.BytesIO(archive), "t", w))
    with Ext4Writer(tmp_path / "x.img") as w:
        (e,) = read_entries(io.BytesIO(archive), "t", w, Limits(max_path=8192))
    assert len(e.name) == 5000


def test_limits_past_what_c_counts_in_are_no_limits(tmp_path):
    info = tarfile.TarInfo("a" * 5000)
    archive = _archive([(info, b"")], tarfile.PAX_FORMAT)
    huge = 10 ** 400
    with Ext4Writer(tmp_path / "x.img") as w:
        (e,) = read_entries(io.BytesIO(archive), "t", w, Limits(max_meta=huge, max_path=huge))
    assert len(e.name) == 5000


@pytest.mark.needs_root_loop
@pytest.mark.parametrize("flags", [
    ["--format=gnu"],
    ["--format=posix", "--sparse-version=0.0"],
    ["--format=posix", "--sparse-version=0.1"],
    ["--format=posix", "--sparse-version=1.0"],
])
def test_gnu_tar_sparse_files_mount_with_their_holes(tmp_path, flags):
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        for i in range(30):  # more map entries than an old GNU header holds
            f.seek(i * 200_000 + 7)
            f.write(os.urandom(5000 + i))
        f.truncate(7_000_000)
    (src / "plain").write_bytes(os.urandom(10_000))
    for p in (src / "sparse", src / "plain", src):  # the old GNU format has whole seconds
        os.utime(p, ns=(1_700_000_000 * 10**9, 1_700_000_000 * 10**9))
    tar = tmp_path / "s.tar"
    subprocess.run(["tar", *flags, "--sparse", "-cf", str(tar), "-C", str(src), "."], check=True)
    img = tmp_path / "out.img"
    with Ext4Writer(img) as w, open(tar, "rb") as f:
        w.commit(read_tar(f, str(tar), w))
    assert_same_tree(src, img)


@pytest.mark.parametrize("archive", [
    b"", _tar_bytes(), bytes(512 * 20)], ids=["zero-bytes", "end-marker", "blocking-of-zeros"])
@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_an_empty_layer_is_a_layer_without_entries(tmp_path, archive, compression):
    import gzip

    import zstandard
    if compression == "gzip":
        archive = gzip.compress(archive)
    elif compression == "zstd":
        archive = zstandard.ZstdCompressor().compress(archive)
    with Ext4Writer(tmp_path / "x.img") as w:
        assert list(read_entries(io.BytesIO(archive), "layer.tar", w)) == []


@pytest.mark.parametrize(("type_", "magic", "kind"), [
    (b"\0", b"ustar\x0000", "5"),   # the old "regular file" flag: the slash decides
    (b"0", b"", "5"),                 # a V7 header (no magic): the slash decides
    (b"0", b"ustar\x0000", "0"),     # ustar says "file" outright
])
def test_old_style_entry_named_with_a_trailing_slash_is_a_directory(tmp_path, type_, magic, kind):
    data = b"abc".ljust(512, b"\0")
    archive = _tar_bytes(_header(b"d/", type_=type_, magic=magic),
                         _header(b"d/f", size=3, type_=type_, magic=magic) + data)
    with Ext4Writer(tmp_path / "x.img") as w:
        d, f = read_entries(io.BytesIO(archive), "layer.tar", w)
    assert (d.name, d.type, d.data) == (b"d/", kind, None)
    assert (f.name, f.type, f.size) == (b"d/f", "0", 3)


@pytest.mark.parametrize(("field", "seconds"), [
    (b"\xff\xff\xff\xff\x80" + bytes(7), -2**63),
    (b"\xff" * 11 + b"\xfe", -2),
    (b"\x80\0\0\0\x7f" + b"\xff" * 7, 2**63 - 1),
])
def test_base_256_mtimes_at_the_ends_of_the_range_are_read(tmp_path, field, seconds):
    archive = _tar_bytes(_header(b"a", mtime=field))
    with Ext4Writer(tmp_path / "x.img") as w:
        (e,) = read_entries(io.BytesIO(archive), "layer.tar", w)
    assert e.mtime_ns == seconds * 10**9


@pytest.mark.parametrize("field", [
    b"\xff\xff\xff\xff\x7f" + b"\xff" * 7,   # -2^63 - 1
    b"\xff\xff\xff\xfe" + bytes(8),           # far below
    b"\x80\0\0\0\x80" + bytes(7),              # 2^63
    b"\x80\0\0\x01" + bytes(8),                # 2^64
])
def test_base_256_mtimes_outside_64_bits_are_refused(tmp_path, field):
    archive = _tar_bytes(_header(b"a", mtime=field))
    with Ext4Writer(tmp_path / "x.img") as w, pytest.raises(SourceError, match="bad mtime"):
        list(read_entries(io.BytesIO(archive), "layer.tar", w))


def _threads_named(name: str) -> list[object]:
    import threading
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


def test_a_layer_left_half_read_stops_its_feeding_thread_before_the_reader_returns(tmp_path):
    items = []
    for i in range(3000):
        info = tarfile.TarInfo(f"d/f{i}")
        info.size = 700
        items.append((info, bytes([i % 251]) * 700))
    archive = _archive(items, tarfile.PAX_FORMAT)
    with Ext4Writer(tmp_path / "x.img", Ext4Options(fsync=False)) as w:
        entries = read_entries(io.BytesIO(archive), "t.tar", w, chunk=4096)
        first = next(entries)
        assert first.name == b"d/f0"
        assert _threads_named("ociext4-feed")
        entries.close()
        # Nothing writes behind the caller's back once it has given up (it
        # aborts the image next, closing the file the thread wrote to).
        assert not _threads_named("ociext4-feed")
        assert not w.failed


def test_an_error_in_the_stream_reaches_the_reader_after_the_entries_before_it(tmp_path):
    good = [(tarfile.TarInfo(f"f{i}"), b"") for i in range(50)]
    archive = _archive(good, tarfile.GNU_FORMAT)[:50 * 512]  # the headers, no end blocks
    bad = archive + b"x" * 512                               # a header with a wrong checksum
    with Ext4Writer(tmp_path / "x.img", Ext4Options(fsync=False)) as w:
        seen = []
        with pytest.raises(SourceError, match="t.tar"):
            for e in read_entries(io.BytesIO(bad), "t.tar", w, chunk=len(archive)):
                seen.append(e.name)
        assert seen == [f"f{i}".encode() for i in range(50)]
        assert not _threads_named("ociext4-feed")


# Components that make a name other than plain, beside ordinary ones.
_odd_parts = st.sampled_from(["", ".", "..", "x" * 255, "y" * 256, "n\0ul", "..."])
_any_parts = st.one_of(name_parts, _odd_parts)


@settings(deadline=None, max_examples=200)
@given(parts=st.lists(_any_parts, min_size=1, max_size=5),
       lead=st.sampled_from(["", "/", "//", "./"]), trail=st.sampled_from(["", "/", "//"]))
def test_the_plain_name_flag_means_a_split_on_slashes_is_the_path(tmp_path_factory, parts,
                                                                   lead, trail):
    name = lead + "/".join(parts) + trail
    # PAX carries any name (NUL and all); the type keeps a trailing slash a file's.
    info = tarfile.TarInfo("x")
    info.pax_headers = {"path": name}
    info.type = tarfile.FIFOTYPE
    out = tmp_path_factory.mktemp("plain") / "x.img"
    with Ext4Writer(out, Ext4Options(fsync=False)) as w:
        ((raw, strings),) = read_batches(io.BytesIO(_archive([(info, b"")], tarfile.PAX_FORMAT)),
                                         "t", w)
    (rec,) = records(raw)
    entry = entry_of(rec, strings)
    raw_name = name.encode("utf-8", "surrogateescape")
    assert entry.name == raw_name
    stripped = raw_name.strip(b"/").split(b"/")
    plain = all(p not in (b"", b".", b"..") and b"\0" not in p and len(p) <= 255
                for p in stripped)
    assert bool(rec[TAR_FLAGS] & PLAIN_NAME) == plain
    if plain:
        assert stripped == split_path(raw_name)
