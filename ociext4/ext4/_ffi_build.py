"""Builds ociext4.ext4._writer from csrc/ (cffi API mode, out of line)."""

import os
from pathlib import Path

from cffi import FFI

CSRC = Path(__file__).resolve().parents[2] / "csrc"
SOURCES = ["writer.c", "commit.c", "extents.c", "dirs.c", "xattrs.c", "inodes.c", "journal.c",
           "layout.c", "groups.c", "super.c", "crc32c.c", "dirhash.c", "tar.c", "boundary.c",
           "sha256.c", "verity.c"]
HEADERS = ["writer.h", "tar.h", "boundary.h", "verity.h"]
# SHA-256 contexts for the layer and download digests (ociext4/hashing.py).
SOURCES += ["hash.c"]
HEADERS += ["hash.h"]
# The content digest over packed inode records (ociext4/ext4/pack.py).
SOURCES += ["contentid.c"]
HEADERS += ["contentid.h"]
# One directory's entries packed for the commit (ociext4/ext4/pack.py).
SOURCES += ["packdir.c"]
HEADERS += ["packdir.h"]
# Runs of plain files in a tar batch (ociext4/sources/tarball.py).
SOURCES += ["tarruns.c"]
HEADERS += ["tarruns.h"]
# Warnings fail the build in CI (.ci/run sets CI=true) and when
# OCIEXT4_WERROR=1; an install elsewhere, on a compiler the project was never
# built with, only shows them.  setup.py uses the same flags for the guest init.
WERROR = os.environ.get("CI") == "true" or os.environ.get("OCIEXT4_WERROR") == "1"
WARNINGS = ["-Wall", "-Wextra", *(["-Werror"] if WERROR else [])]


def _cdef() -> str:
    # The public headers are the cdef, minus preprocessor lines cffi can't read.
    lines = [line for name in HEADERS for line in (CSRC / name).read_text().splitlines()]
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "ociext4.ext4._writer",
    "".join(f'#include "{name}"\n' for name in HEADERS),
    # setuptools wants paths relative to setup.py, which sits beside csrc/.
    sources=[f"csrc/{name}" for name in SOURCES],
    include_dirs=["csrc"],
    extra_compile_args=["-std=c99", "-O2", *WARNINGS],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
