"""Checks that an ext4 image is right: e2fsck finds nothing, and the mounted
tree is exactly the expected one (a source directory or a tar archive).

Trees are compared as snapshots: dict mapping a relative path (str decoded with
os.fsdecode, so non-UTF-8 names survive as surrogate escapes; the root is
".") to an `Entry`. An Entry field that is None on the *expected* side is not
checked, which is how a tar archive says "no opinion" (implied directories).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import hashlib
import os
import stat
import struct
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Collection, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Literal

__all__ = [
    "UNREADABLE_XATTR",
    "Entry",
    "Snapshot",
    "assert_same_tree",
    "compare_snapshots",
    "e2fsck_clean",
    "e2fsck_problems",
    "file_sha256",
    "mounted",
    "snapshot",
    "snapshot_from_tar",
    "tmpfs",
]

_OUTPUT_LIMIT = 4096
_HASH_CHUNK = 1 << 20
_ZEROS = bytes(_HASH_CHUNK)

# LinkKey identifies an inode within one snapshot only; never compare keys
# across snapshots, compare the groups of paths they induce.
LinkKey = Any


@dataclasses.dataclass(slots=True)
class Entry:
    """What one path in a tree is. None means "unchecked" on the expected side."""

    type: str  # "reg", "dir", "lnk", "chr", "blk", "fifo", "sock"
    mode: int | None = None  # stat.S_IMODE: permissions plus setuid/setgid/sticky
    uid: int | None = None
    gid: int | None = None
    size: int | None = None  # regular files only
    sha256: str | None = None  # regular files only
    target: bytes | None = None  # symlinks only
    rdev: tuple[int, int] | None = None  # devices only: (major, minor)
    mtime_ns: int | None = None
    xattrs: dict[str, bytes] | None = None
    # Hard-link group key; None means "not hard-linked" (a group of one), not
    # "unchecked": link structure is always compared.
    link: LinkKey = None
    nlink: int | None = None  # regular files only


Snapshot = dict[str, Entry]

# The value recorded for an xattr that listxattr names but getxattr cannot
# read: user.* on anything but a regular file or directory, which an image
# can hold (e.g. from a tar layer) although Linux never lets one be set.
UNREADABLE_XATTR = b"<listed but unreadable: ENODATA>"

_FIELDS = ("mode", "uid", "gid", "size", "sha256", "target", "rdev", "mtime_ns", "xattrs")

_TYPE_BY_FMT = {
    stat.S_IFREG: "reg",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "lnk",
    stat.S_IFCHR: "chr",
    stat.S_IFBLK: "blk",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "sock",
}


# --------------------------------------------------------------------------
# e2fsck


# e2fsck -n answers every question with "no", so any question at all means it
# wanted to change something; the other markers are findings e2fsck reports
# without asking (e.g. "Block bitmap differences", "could be narrower").
_PROBLEM_MARKERS = ("? no", "could be", "differences", "warning")


def e2fsck_problems(output: str) -> list[str]:
    """The lines of e2fsck output that suggest a problem."""
    bad = []
    for line in output.splitlines():
        low = line.strip().lower()
        if any(marker in low for marker in _PROBLEM_MARKERS):
            bad.append(line.strip())
    return bad


def _trim(text: str, limit: int = _OUTPUT_LIMIT) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... [{len(text) - limit} characters cut] ...\n{text[-half:]}"


def e2fsck_clean(img: Path) -> None:
    """Assert that `e2fsck -fn IMG` exits 0 and reports nothing suspicious."""
    # LC_ALL=C because the problem markers are matched in English.
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    proc = subprocess.run(
        ["e2fsck", "-fn", os.fspath(img)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        check=False,
    )
    output = proc.stdout.decode("utf-8", "replace")
    # e2fsck prefixes its summary with the image path, which may itself
    # contain a marker word (pytest names tmp dirs after the test).
    problems = e2fsck_problems(output.replace(os.fspath(img), "IMG"))
    if proc.returncode != 0 or problems:
        summary = "; ".join(problems[:5]) or "(no problem line matched)"
        raise AssertionError(
            f"e2fsck -fn {img} exited {proc.returncode}: {summary}\n"
            f"--- full output ---\n{_trim(output)}"
        )


# --------------------------------------------------------------------------
# mounting


def _run_quiet(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)


@contextlib.contextmanager
def mounted(img: Path) -> Iterator[Path]:
    """Mount IMG read-only through a loop device; yield the mount point."""
    mnt = Path(tempfile.mkdtemp(prefix="ociext4-mnt-"))
    try:
        proc = _run_quiet(["mount", "-o", "loop,ro", os.fspath(img), os.fspath(mnt)])
        if proc.returncode != 0:
            raise RuntimeError(
                f"mount -o loop,ro {img} failed ({proc.returncode}): "
                f"{proc.stdout.decode('utf-8', 'replace').strip()}"
            )
        try:
            _warm(img, os.stat(mnt).st_dev)
            yield mnt
        finally:
            _unmount(mnt)
    finally:
        with contextlib.suppress(OSError):
            mnt.rmdir()


# Images with fewer inodes in use are not read ahead (see _warm).
_WARM_FROM_INODES = 16384


def _inodes_used(fd: int) -> int:
    """s_inodes_count less s_free_inodes_count, from the superblock."""
    total, _, _, _, free = struct.unpack("<5I", os.pread(fd, 20, 1024))
    return int(total - free)


def _warm(img: Path, dev: int) -> None:
    """Reads an image of many inodes through the mounted loop device, a MiB
    at a time, so that the filesystem finds its directories in the
    device's cache: otherwise each directory's first block is one request
    to the loop device, and walking 70,000 directories took 15 s instead of
    3.5 s.  Holes are skipped (a small image is 70 MB, nearly all holes).
    An image of few inodes is left alone: its data, read here for nothing,
    would be read again through its files (600 MB of one file, 9 s).  The
    device is opened read-only through a node of our own."""
    src = os.open(img, os.O_RDONLY)
    try:
        if _inodes_used(src) < _WARM_FROM_INODES:
            return
        segments = list(_data_segments(src, os.fstat(src).st_size))
    finally:
        os.close(src)
    node_dir = Path(tempfile.mkdtemp(prefix="ociext4-dev-"))
    node = node_dir / "loop"
    try:
        os.mknod(node, stat.S_IFBLK | 0o400, dev)
        blk = os.open(node, os.O_RDONLY)
        try:
            buf = bytearray(_HASH_CHUNK)
            for start, end in segments:
                for pos in range(start, end, _HASH_CHUNK):
                    os.preadv(blk, [memoryview(buf)[:min(_HASH_CHUNK, end - pos)]], pos)
        finally:
            os.close(blk)
    finally:
        with contextlib.suppress(OSError):
            node.unlink()
        node_dir.rmdir()


def _data_segments(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each stretch of a file's first `size` bytes that is
    not a hole."""
    pos = 0
    while pos < size:
        try:
            pos = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            return      # no data after pos: the rest is a hole
        if pos >= size:
            return
        end = min(os.lseek(fd, pos, os.SEEK_HOLE), size)
        yield pos, end
        pos = end


@contextlib.contextmanager
def tmpfs(where: Path, size: int) -> Iterator[Path]:
    """A private tmpfs of `size` bytes at `where` (made if missing): a disk
    that fills up, or room for a file larger than an ext4 /tmp allows."""
    where.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", os.fspath(where)],
                   check=True)
    try:
        yield where
    finally:
        _unmount(where)


def _unmount(mnt: Path) -> None:
    # A scandir iterator or a udev probe can keep the mount busy for a moment
    # right after use, so retry before falling back to a lazy unmount (which
    # always succeeds and lets the loop device go once the last user leaves).
    for attempt in range(5):
        if _run_quiet(["umount", os.fspath(mnt)]).returncode == 0:
            return
        time.sleep(0.1 * (attempt + 1))
    proc = _run_quiet(["umount", "-l", os.fspath(mnt)])
    if proc.returncode != 0:
        raise RuntimeError(f"could not unmount {mnt}: {proc.stdout.decode('utf-8', 'replace')}")


# --------------------------------------------------------------------------
# snapshots of real trees


def _hash_fd(fd: int, size: int) -> str:
    """sha256 of a file's first `size` bytes, feeding holes from a zero
    buffer.

    Skipping holes with SEEK_DATA/SEEK_HOLE saves reading gigabytes of zeros
    from sparse test files; the digest is the same as reading everything.
    """
    h = hashlib.sha256()
    pos = 0
    for start, end in _data_segments(fd, size):
        _feed_zeros(h, start - pos)
        pos = start
        while pos < end:
            chunk = os.pread(fd, min(_HASH_CHUNK, end - pos), pos)
            if not chunk:
                raise OSError(errno.EIO, f"file shrank while hashing at {pos}")
            h.update(chunk)
            pos += len(chunk)
    _feed_zeros(h, size - pos)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file, an image say, without reading its holes: an image
    of a few entries is 70 MB, nearly all of it holes, and reading it into
    a fresh buffer took 0.06-0.3 s here (test_tarball read 120 of them)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return _hash_fd(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _feed_zeros(h: Any, n: int) -> None:
    while n > 0:
        k = min(n, _HASH_CHUNK)
        h.update(_ZEROS[:k] if k < _HASH_CHUNK else _ZEROS)
        n -= k


def _xattrs(path: bytes) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise
    out = {}
    for name in names:
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError as exc:
            # The kernel lists user.* names on symlinks, devices, FIFOs and
            # sockets but refuses to read them (ENODATA). Keep the name so a
            # comparison still shows the attribute is stored.
            if exc.errno != errno.ENODATA:
                raise
            out[name] = UNREADABLE_XATTR
    return out


def _entry_from_stat(path: bytes, st: os.stat_result) -> Entry:
    kind = _TYPE_BY_FMT[stat.S_IFMT(st.st_mode)]
    e = Entry(
        type=kind,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        mtime_ns=st.st_mtime_ns,
        xattrs=_xattrs(path),
    )
    if kind == "reg":
        e.size = st.st_size
        e.nlink = st.st_nlink
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            e.sha256 = _hash_fd(fd, st.st_size)
        finally:
            os.close(fd)
    elif kind == "lnk":
        e.target = os.readlink(path)
    elif kind in ("chr", "blk"):
        e.rdev = (os.major(st.st_rdev), os.minor(st.st_rdev))
    if kind != "dir" and st.st_nlink > 1:
        e.link = (st.st_dev, st.st_ino)
    return e


def snapshot(root: Path, *, skip: Collection[str] = frozenset({"lost+found"})) -> Snapshot:
    """Record every path under ROOT without following symlinks.

    `skip` names are left out at the top level only (a nested lost+found is
    ordinary content). Paths longer than PATH_MAX are not supported.
    """
    broot = os.fsencode(root)
    out: Snapshot = {".": _entry_from_stat(broot, os.lstat(broot))}
    skip_b = {os.fsencode(s) for s in skip}
    # An explicit stack rather than recursion: trees may be thousands deep.
    stack: list[tuple[bytes, bytes]] = [(broot, b"")]
    while stack:
        dirpath, rel = stack.pop()
        with os.scandir(dirpath) as it:
            for de in it:
                name = de.name
                if not rel and name in skip_b:
                    continue
                relpath = rel + b"/" + name if rel else name
                st = de.stat(follow_symlinks=False)
                out[os.fsdecode(relpath)] = _entry_from_stat(de.path, st)
                if stat.S_ISDIR(st.st_mode):
                    stack.append((de.path, relpath))
    return out


# --------------------------------------------------------------------------
# comparing


def _fmt(field: str, value: object) -> str:
    if value is None:
        return "None"
    if field == "mode" and isinstance(value, int):
        return oct(value)
    if field == "mtime_ns" and isinstance(value, int):
        sec, ns = divmod(value, 1_000_000_000)
        try:
            when = datetime.datetime.fromtimestamp(sec, datetime.UTC)
            return f"{value} ({when:%Y-%m-%d %H:%M:%S}.{ns:09d}Z)"
        except (OverflowError, OSError, ValueError):
            return str(value)
    if isinstance(value, bytes) and len(value) > 64:
        return f"{value[:64]!r}... ({len(value)} bytes)"
    return repr(value)


def _xattr_diff(exp: Mapping[str, bytes], act: Mapping[str, bytes]) -> str:
    parts = []
    for name in sorted(exp.keys() - act.keys()):
        parts.append(f"missing {name}")
    for name in sorted(act.keys() - exp.keys()):
        parts.append(f"extra {name}={_fmt('', act[name])}")
    for name in sorted(exp.keys() & act.keys()):
        if exp[name] != act[name]:
            parts.append(f"{name} expected {_fmt('', exp[name])} got {_fmt('', act[name])}")
    return ", ".join(parts)


def _link_groups(snap: Snapshot) -> dict[str, frozenset[str]]:
    by_key: dict[LinkKey, list[str]] = {}
    for path, e in snap.items():
        if e.link is not None and e.type != "dir":
            by_key.setdefault(e.link, []).append(path)
    groups: dict[str, frozenset[str]] = {}
    for paths in by_key.values():
        g = frozenset(paths)
        for p in paths:
            groups[p] = g
    return groups


def compare_snapshots(
    expected: Mapping[str, Entry], actual: Mapping[str, Entry], *, check_nlink: bool = True
) -> list[str]:
    """Human-readable differences between two snapshots, empty if equal.

    Hard links are compared as the partition of paths into link groups, since
    inode numbers differ between trees. Directory sizes are never compared
    (they depend on the filesystem's block size and history).
    """
    diffs: list[str] = []
    for p in sorted(expected.keys() - actual.keys()):
        diffs.append(f"missing: {p!r} ({expected[p].type})")
    for p in sorted(actual.keys() - expected.keys()):
        diffs.append(f"extra: {p!r} ({actual[p].type})")

    exp_groups = _link_groups(dict(expected))
    act_groups = _link_groups(dict(actual))
    reported_groups: set[tuple[frozenset[str], frozenset[str]]] = set()

    for p in sorted(expected.keys() & actual.keys()):
        e, a = expected[p], actual[p]
        if e.type != a.type:
            diffs.append(f"{p!r}: type expected {e.type} got {a.type}")
            continue
        for field in _FIELDS:
            ev = getattr(e, field)
            if ev is None or (field == "size" and e.type == "dir"):
                continue
            av = getattr(a, field)
            if ev == av:
                continue
            if field == "xattrs" and av is not None:
                diffs.append(f"{p!r}: xattrs differ: {_xattr_diff(ev, av)}")
            else:
                diffs.append(f"{p!r}: {field} expected {_fmt(field, ev)} got {_fmt(field, av)}")
        if check_nlink and e.nlink is not None and e.nlink != a.nlink:
            diffs.append(f"{p!r}: nlink expected {e.nlink} got {a.nlink}")
        if e.type != "dir":
            eg = exp_groups.get(p, frozenset({p}))
            ag = act_groups.get(p, frozenset({p}))
            if eg != ag and (eg, ag) not in reported_groups:
                reported_groups.add((eg, ag))
                diffs.append(f"{p!r}: hard-link group expected {sorted(eg)} got {sorted(ag)}")
    return diffs


def assert_same_tree(
    expected: Path | Mapping[str, Entry], img: Path, *, check_nlink: bool = True
) -> None:
    """Assert IMG passes e2fsck and mounts to exactly the expected tree.

    `expected` is a source directory or a ready snapshot (for instance from
    snapshot_from_tar, or one with fields set to None to leave them unchecked).
    """
    e2fsck_clean(img)
    exp = expected if isinstance(expected, Mapping) else snapshot(Path(expected))
    with mounted(img) as mnt:
        act = snapshot(mnt)
    diffs = compare_snapshots(exp, act, check_nlink=check_nlink)
    if diffs:
        shown = "\n".join(f"  {d}" for d in diffs[:50])
        more = f"\n  ... and {len(diffs) - 50} more" if len(diffs) > 50 else ""
        raise AssertionError(f"{img}: {len(diffs)} difference(s) from expected:\n{shown}{more}")


# --------------------------------------------------------------------------
# the expected tree of a tar archive

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _pax_mtime_ns(value: str) -> int:
    # Decimal, not float: a float cannot hold 2400-01-01 with nanoseconds.
    return int((Decimal(value) * 1_000_000_000).to_integral_value())


def _norm_name(name: str) -> str:
    while name.startswith("./") or name.startswith("/"):
        name = name[2:] if name.startswith("./") else name[1:]
    name = name.rstrip("/")
    if name in ("", "."):
        return "."
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"tar member escapes the root: {name!r}")
    return "/".join(parts) or "."


def _implied_dir() -> Entry:
    return Entry(type="dir", mode=0o755, uid=0, gid=0, mtime_ns=None, xattrs={})


class _PrefixedReader:
    """A read()-only stream that replays bytes already consumed for sniffing.

    Used instead of peek() so that a caller's file object is never wrapped in
    a buffer that would close it, and so non-seekable sources work.
    """

    def __init__(self, head: bytes, raw: IO[bytes]) -> None:
        self._head = head
        self._raw = raw

    def read(self, n: int = -1) -> bytes:
        if not self._head:
            return self._raw.read(n)
        if n is None or n < 0:
            data, self._head = self._head + self._raw.read(), b""
            return data
        data, self._head = self._head[:n], self._head[n:]
        if len(data) < n:
            data += self._raw.read(n - len(data))
        return data


def _read_exactly(raw: IO[bytes], n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = raw.read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


@contextlib.contextmanager
def _open_tar_stream(src: Path | str | IO[bytes]) -> Iterator[tarfile.TarFile]:
    with contextlib.ExitStack() as stack:
        if isinstance(src, (str, os.PathLike)):
            raw: IO[bytes] = stack.enter_context(open(src, "rb"))
        else:
            raw = src
        magic = _read_exactly(raw, 4)
        stream: Any = _PrefixedReader(magic, raw)
        mode: Literal["r|", "r|gz"] = "r|"
        if magic.startswith(_GZIP_MAGIC):
            mode = "r|gz"
        elif magic == _ZSTD_MAGIC:
            try:
                import zstandard
            except ImportError as exc:  # pragma: no cover - depends on the host
                raise RuntimeError("zstd tar archive but the zstandard module is missing") from exc
            stream = stack.enter_context(
                zstandard.ZstdDecompressor().stream_reader(stream, closefd=False)
            )
        tf = stack.enter_context(
            tarfile.open(fileobj=stream, mode=mode, encoding="utf-8", errors="surrogateescape")
        )
        yield tf


def snapshot_from_tar(src: Path | str | IO[bytes]) -> Snapshot:
    """The tree a tar archive (plain, gzip or zstd) describes, as a snapshot.

    Implied parent directories and an implied root are 0o755 root:root with
    an unchecked mtime. Later members replace earlier ones at the same path;
    a directory replaced by a non-directory loses its children. Symlink
    permission bits are unchecked: Linux cannot set them at extraction, so
    tools disagree on whether the tar's bits should survive. Sockets cannot
    be stored in tar and so never appear.
    """
    snap: Snapshot = {".": _implied_dir()}
    next_group = 0

    def ensure_parents(path: str) -> None:
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            cur = snap.get(parent)
            if cur is None:
                snap[parent] = _implied_dir()
            elif cur.type != "dir":
                # GNU tar and OCI unpackers replace the non-directory.
                snap[parent] = _implied_dir()

    def drop_children(path: str) -> None:
        prefix = path + "/"
        for p in [p for p in snap if p.startswith(prefix)]:
            del snap[p]

    with _open_tar_stream(src) as tf:
        for m in tf:
            path = _norm_name(m.name)
            if path != ".":
                ensure_parents(path)
            old = snap.get(path)
            if m.islnk():
                tgt = _norm_name(m.linkname)
                base = snap.get(tgt)
                if base is None or base.type == "dir":
                    raise ValueError(f"hard link {path!r} to missing or directory {tgt!r}")
                if base.link is None:
                    base.link = ("tar", next_group)
                    next_group += 1
                e = dataclasses.replace(base, xattrs=dict(base.xattrs or {}))
            else:
                e = _entry_from_member(tf, m)
            if old is not None and old.type == "dir" and e.type != "dir":
                drop_children(path)
            snap[path] = e

    # nlink is the size of each link group, counted after all replacements.
    counts: dict[LinkKey, int] = {}
    for e in snap.values():
        if e.link is not None:
            counts[e.link] = counts.get(e.link, 0) + 1
    for e in snap.values():
        if e.type == "reg":
            e.nlink = counts.get(e.link, 1) if e.link is not None else 1
        if e.link is not None and counts[e.link] == 1:
            e.link = None
    return snap


def _entry_from_member(tf: tarfile.TarFile, m: tarfile.TarInfo) -> Entry:
    pax = m.pax_headers
    # tarfile turns PAX mtime into a float; the raw string keeps every digit.
    mtime_ns = _pax_mtime_ns(pax["mtime"]) if "mtime" in pax else int(m.mtime) * 1_000_000_000
    xattrs = {
        k[len("SCHILY.xattr.") :]: v.encode("utf-8", "surrogateescape")
        for k, v in pax.items()
        if k.startswith("SCHILY.xattr.")
    }
    e = Entry(
        type="reg",
        mode=stat.S_IMODE(m.mode),
        uid=m.uid,
        gid=m.gid,
        mtime_ns=mtime_ns,
        xattrs=xattrs,
    )
    if m.isreg():
        f = tf.extractfile(m)
        assert f is not None
        h = hashlib.sha256()
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
        e.size = m.size
        e.sha256 = h.hexdigest()
    elif m.isdir():
        e.type = "dir"
    elif m.issym():
        e.type = "lnk"
        e.mode = None
        e.target = m.linkname.encode("utf-8", "surrogateescape")
    elif m.ischr() or m.isblk():
        e.type = "chr" if m.ischr() else "blk"
        e.rdev = (m.devmajor, m.devminor)
    elif m.isfifo():
        e.type = "fifo"
    else:
        raise ValueError(f"unsupported tar member type {m.type!r} for {m.name!r}")
    return e
