"""The hostile-input corpus (fixtures/hostile.py): what ociext4 does with each
broken or malicious image, pinned.  An error is one line naming the input and
the problem, exit code 1, and no image or temporary file left behind; the
inputs that are valid but tricky give an image that e2fsck passes, with the
content exactly where the OCI rules put it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import hostile
import pytest
from cli_helpers import ociext4
from support.fscheck import e2fsck_clean

LAYER = r"layer sha256:[0-9a-f]{64}: "

# case -> (extra options, what follows "ociext4: error: <input>: ")
ERRORS: dict[str, tuple[list[str], str]] = {
    "tar-bad-checksum": ([], LAYER + r"at byte 0: bad tar header checksum"),
    "tar-truncated-header": ([], LAYER + r"at byte 1324: archive is truncated"),
    "tar-truncated-data": ([], LAYER + r"at byte 612: archive is truncated"),
    "tar-negative-size": ([], LAYER + r"at byte 0: bad size field in tar header"),
    "tar-huge-size": ([], LAYER + r"at byte 1536: archive is truncated"),
    "tar-pax-header-100mb": ([], LAYER + r"at byte 0: PAX header of 104857619 bytes is over "
                                         r"the limit of 1048576"),
    "tar-gnu-long-name-alone": ([], LAYER + r"at byte 1024: PAX header or GNU long name "
                                            r"without the member it describes"),
    "tar-pax-header-alone": ([], LAYER + r"at byte 1024: PAX header or GNU long name without "
                                         r"the member it describes"),
    "tar-sparse-map-past-end": ([], LAYER + r"at byte 1024: sparse map points past the end "
                                            r"of the file"),
    "tar-entries-over-limit": (["--max-entries", "100"], LAYER + r"more than 100 entries, "
                               r"over the limit \(raise it with --max-entries\)"),
    "tar-path-over-limit": ([], LAYER + r"at byte 0: path of 5001 bytes is over the limit "
                                        r"of 4096"),
    "tar-name-with-nul": ([], LAYER + r"path 'a\\x00b' contains NUL"),
    "tar-name-over-255-bytes": ([], LAYER + r"path 'd/n+'\.\.\. has a name longer than 255 "
                                            r"bytes"),
    "tar-unknown-entry-type": ([], LAYER + r"v: unsupported tar entry type 'Z'"),
    "tar-malformed-pax-record": ([], LAYER + r"at byte 0: malformed PAX record"),
    "tar-pax-uid-out-of-range": ([], LAYER + r"at byte 0: bad PAX uid"),
    "tar-device-number-out-of-range": ([], LAYER + r"at byte 0: bad device major"),
    "tar-xattr-too-large": ([], LAYER + r"x: xattr value of 70000 bytes is too large"),
    "tar-65001-hard-links": ([], LAYER + r"l64999: more than 65000 hard links to one file "
                                         r"\(ext4's limit\)"),
    "tar-header-after-end-block": ([], LAYER + r"at byte 1024: data after an end-of-archive "
                                               r"block"),
    "path-dotdot-escape": ([], LAYER + r"path '\.\./evil' climbs out of the root"),
    "path-hard-link-dotdot": ([], LAYER + r"path '\.\./\.\./x' climbs out of the root"),
    "path-hard-link-missing": ([], LAYER + r"l: hard link to missing 'nothere'"),
    "path-hard-link-to-directory": ([], LAYER + r"l: hard link to the directory 'd'"),
    "path-whiteout-dotdot": ([], LAYER + r"invalid whiteout 'a/\.wh\.\.'"),
    "path-whiteout-bare": ([], LAYER + r"invalid whiteout '\.wh\.'"),
    "path-root-as-file": ([], LAYER + r"the root can only be a directory"),
    "path-symlink-loop": ([], LAYER + r"too many levels of symlinks at 'a'"),
    "path-symlink-target-4096-bytes": ([], LAYER + r"l: symlink target of 4096 bytes is longer "
                                                   r"than ext4's 4095"),
    "gzip-corrupt": ([], LAYER + r"cannot decompress gzip \(.+\)"),
    "gzip-truncated": ([], LAYER + r"gzip stream is truncated or followed by data that is "
                                   r"not gzip"),
    "gzip-trailing-garbage": ([], LAYER + r"gzip stream is truncated or followed by data "
                                          r"that is not gzip"),
    "gzip-bomb-over-limit": (["--max-bytes", "100M"], LAYER + r"more than 104857600 bytes of "
                             r"decompressed data, over the limit \(raise it with --max-bytes\)"),
    # Without a frame checksum, zstd cannot tell; the diff_id can.
    "zstd-corrupt": ([], LAYER + r"uncompressed layer does not match diff_id sha256:[0-9a-f]{64}"),
    "zstd-huge-window": ([], LAYER + r"cannot decompress zstd \(.*Frame requires too much "
                                     r"memory for decoding\)"),
    "xz-layer": ([], LAYER + r"xz compression is not supported \(use gzip, zstd or plain\)"),
    "image-manifest-digest-mismatch": ([], r"manifest sha256:[0-9a-f]{64} is 419 bytes, its "
                                           r"descriptor says 418"),
    "image-diff-id-mismatch": ([], LAYER + r"uncompressed layer does not match diff_id "
                                           r"sha256:0{64}"),
    "image-diff-id-count": ([], r"manifest sha256:[0-9a-f]{64}: config lists 0 diff_ids for 1 "
                                r"layers"),
    "image-1000-layers": ([], r"the image has 1000 layers, over the limit of 256 \(raise it "
                              r"with --max-layers\)"),
    "image-missing-layer-blob": ([], r"layer blob sha256:[0-9a-f]{64} is missing"),
    "image-missing-config-blob": ([], r"config blob sha256:[0-9a-f]{64} is missing"),
    "image-missing-manifest-blob": ([], r"manifest blob sha256:[0-9a-f]{64} is missing"),
    "image-index-includes-itself": ([], r"index sha256:[0-9a-f]{64} does not match its digest "
                                        r"\(the bytes hash to sha256:[0-9a-f]{64}\)"),
    "image-layer-size-mismatch": ([], r"layer sha256:[0-9a-f]{64} is 103 bytes, its "
                                      r"descriptor says 104"),
    "image-not-a-layout": ([], r"not an OCI image layout \(no index.json\)"),
    "docker-archive-missing-layer": ([], r"archive has no member 'a{64}/layer.tar'"),
    "docker-archive-not-a-tar": ([], r"not a docker save archive \(.+\)"),
    "fuzz-tar-empty-string-on-null-buffer": ([], LAYER + r"at byte 1536: bad tar header "
                                                         r"checksum"),
}

# Valid but tricky: the case, extra options, and (path, `debugfs stat` type) that must exist.
ACCEPTED: dict[str, tuple[list[str], list[tuple[str, str]]]] = {
    "path-absolute-name": ([], [("/etc/abs", "regular")]),
    # Parent symlinks resolve inside the image: etc/passwd lands at /passwd.
    "path-parent-symlink-to-root": ([], [("/etc", "symlink"), ("/passwd", "regular")]),
    "path-parent-symlink-dotdot": ([], [("/etc", "symlink"), ("/passwd", "regular")]),
    "path-opaque-root": ([], [("/lost+found", "directory")]),
    "path-1500-deep-whited-out": ([], [("/lost+found", "directory")]),
    "media-type-gzip-bytes-zstd": ([], [("/etc/hostname", "regular")]),
    "image-1000-layers": (["--max-layers", "1000"], [("/f0000", "regular"), ("/f0999", "regular")]),
}
# What must NOT be in those images.
ABSENT = {"path-opaque-root": ["/etc"], "path-1500-deep-whited-out": ["/a"]}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    return {name: build(root / name) for name, build in hostile.corpus().items()}


def _source(path: Path) -> str:
    return f"docker-archive:{path}" if path.suffix == ".tar" else f"oci:{path}"


def test_the_corpus_has_every_pinned_case_and_nothing_unpinned():
    names = set(hostile.corpus())
    assert len(names) >= 40
    assert names == set(ERRORS) | set(ACCEPTED)


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_hostile_input_is_refused_with_one_line_naming_it(case, corpus, tmp_path):
    options, message = ERRORS[case]
    out = tmp_path / "out" / "image.img"
    out.parent.mkdir()
    proc = ociext4("unpack", _source(corpus[case]), out, "--no-fsync", *options, check=False)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    shown = re.escape(str(corpus[case]))
    assert re.fullmatch(f"ociext4: error: {shown}: {message}", lines[0]), lines[0]
    assert proc.stdout == ""
    assert list(out.parent.iterdir()) == []  # no image, no temporary file


def _debugfs_type(img: Path, path: str) -> str | None:
    out = subprocess.run(["debugfs", "-R", f"stat {path}", str(img)], capture_output=True,
                         text=True, check=False).stdout
    m = re.search(r"Type: (\w+)", out)
    return m.group(1) if m else None


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_tricky_but_valid_input_lands_inside_the_image(case, corpus, tmp_path):
    options, present = ACCEPTED[case]
    out = tmp_path / "image.img"
    ociext4("unpack", _source(corpus[case]), out, "--no-fsync", *options)
    e2fsck_clean(out)
    for path, kind in present:
        assert _debugfs_type(out, path) == kind, path
    for path in ABSENT.get(case, []):
        assert _debugfs_type(out, path) is None, path
