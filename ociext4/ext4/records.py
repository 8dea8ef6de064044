"""The records Python packs by position for the C core, and the check, run
at import, that both sides agree on every field.

cffi reaches fields by name, but the hot paths pack and unpack whole arrays
of records with `struct` formats (tens of bytes a record, a million records),
where only positions count: two fields of one size swapped on one side would
pass a size check and write every uid as a gid. So each record is described
here field by field, and `verify` compares, for every structure that crosses
the boundary, cffi's offsets and these descriptions with the table the C
compiler produced (csrc/boundary.c).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..tree import PLAIN
from ._writer import ffi, lib


class LayoutMismatch(RuntimeError):
    """Python and the compiled C core disagree on a structure: a build error."""


@dataclass(frozen=True)
class Record:
    """A C structure as a little-endian `struct` format, one code per field."""

    c_type: str
    fields: tuple[tuple[str, str], ...]   # (field name, struct code) in C order

    @property
    def struct(self) -> struct.Struct:
        return struct.Struct("<" + "".join(code for _, code in self.fields))

    def layout(self) -> dict[str, tuple[int, int]]:
        """Field name -> (offset, size), as `struct` places them ("" is the whole)."""
        out: dict[str, tuple[int, int]] = {}
        fmt = "<"
        for name, code in self.fields:
            out[name] = (struct.calcsize(fmt), struct.calcsize("<" + code))
            fmt += code
        out[""] = (0, struct.calcsize(fmt))
        return out


INODE = Record("oe_inode", (
    ("mode", "I"), ("uid", "I"), ("gid", "I"), ("nlink", "I"),
    ("atime_sec", "q"), ("ctime_sec", "q"), ("mtime_sec", "q"),
    ("atime_nsec", "I"), ("ctime_nsec", "I"), ("mtime_nsec", "I"), ("xattr_len", "I"),
    ("size", "Q"), ("ref", "Q"), ("xattr_off", "Q"),
    ("ref_len", "I"), ("parent", "I"), ("min_blocks", "I"), ("reserved", "I"),
))
NO_FILE = (1 << 64) - 1   # oe_inode.ref of a regular file without data (OE_NO_FILE)
DIRENT = Record("oe_dirent", (("name_off", "Q"), ("child", "I"), ("name_len", "I")))
TAR_ENTRY = Record("oe_tar_entry", (
    ("type", "I"), ("mode", "I"), ("uid", "Q"), ("gid", "Q"),
    ("mtime_sec", "q"), ("atime_sec", "q"), ("mtime_nsec", "I"), ("atime_nsec", "I"),
    ("flags", "I"), ("devmajor", "I"), ("devminor", "I"), ("name_len", "I"),
    ("name_off", "Q"), ("link_off", "Q"), ("link_len", "I"), ("xattr_len", "I"),
    ("xattr_off", "Q"), ("size", "Q"), ("data", "q"), ("offset", "Q"),
))
TAR_SEG = Record("oe_tar_seg", (
    ("run", "I"), ("first", "I"), ("count", "I"), ("dir_len", "I"),
    ("dir_off", "Q"), ("names_off", "Q"), ("names_len", "Q"), ("recs_off", "Q"),
))
PACKED = (INODE, DIRENT, TAR_ENTRY, TAR_SEG)


def c_layouts() -> dict[str, dict[str, tuple[int, int]]]:
    """The C compiler's table: type -> field -> (offset, size)."""
    count = ffi.new("uint32_t *")
    rows = lib.oe_field_layouts(count)
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for i in range(count[0]):
        row = rows[i]
        out.setdefault(ffi.string(row.type).decode(), {})[ffi.string(row.field).decode()] = (
            row.offset, row.size)
    return out


def _opaque(c_type: str) -> bool:
    """A structure only C sees inside (oe_writer): never packed."""
    try:
        ffi.sizeof(c_type)   # also makes cffi lay out the fields, before .fields is read
    except ffi.error:
        return True
    return False


def cffi_layout(c_type: str) -> dict[str, tuple[int, int]]:
    """cffi's view of a structure (from the cdef, laid out when it was built)."""
    ctype: Any = ffi.typeof(c_type)
    ffi.sizeof(ctype)   # cffi lays out fields lazily; .fields must not come first
    out = {name: (f.offset, ffi.sizeof(f.type)) for name, f in ctype.fields}
    out[""] = (0, ffi.sizeof(ctype))
    return out


def compare(what: str, c_type: str, theirs: Mapping[str, tuple[int, int]],
            c: Mapping[str, tuple[int, int]]) -> None:
    """Raises LayoutMismatch unless both sides have the same fields at the
    same offsets with the same sizes."""
    problems = []
    for name in sorted(set(theirs) | set(c)):
        label = f"{c_type}.{name}" if name else f"sizeof({c_type})"
        if name not in c:
            problems.append(f"{label} is not in the C table (csrc/boundary.c)")
        elif name not in theirs:
            problems.append(f"{label} is missing from {what}")
        elif theirs[name] != c[name]:
            (off, size), (c_off, c_size) = theirs[name], c[name]
            problems.append(f"{label} at offset {off} size {size} in {what}, "
                            f"offset {c_off} size {c_size} in C")
    if problems:
        raise LayoutMismatch(f"{what} disagrees with the compiled C core "
                             f"(rebuild it, or fix the description): {'; '.join(problems)}")


def verify(records: Iterable[Record] = PACKED) -> None:
    """Checks cffi's view of every boundary structure, and each packed
    record's description, against the C table."""
    table = c_layouts()
    typedefs, _, _ = ffi.list_types()
    for name in typedefs:
        if ffi.typeof(name).kind == "struct" and not _opaque(name) and name not in table:
            raise LayoutMismatch(f"{name} crosses the cffi boundary but is not in the "
                                 "C table (csrc/boundary.c)")
    for c_type, c in table.items():
        compare("cffi's cdef", c_type, cffi_layout(c_type), c)
    for record in records:
        if record.c_type not in table:
            raise LayoutMismatch(f"{record.c_type} is not a structure the C core reports")
        compare(f"the packed record for {record.c_type}", record.c_type, record.layout(),
                table[record.c_type])


def verify_plain() -> None:
    """Checks that a plain record (ociext4.tree.PLAIN) is oe_inode's first
    fields, as the packing copies it."""
    codes = "".join(code for _, code in INODE.fields)
    if ("<" + codes[:len(PLAIN.format) - 1] != PLAIN.format
            or INODE.fields[len(PLAIN.format) - 2][0] != "ref"
            or PLAIN.size != lib.OE_PLAIN_RECORD):
        raise LayoutMismatch(f"ociext4.tree.PLAIN ({PLAIN.format}) is not oe_inode's fields "
                             f"from mode to ref, the {lib.OE_PLAIN_RECORD} bytes C copies")


verify()
verify_plain()
