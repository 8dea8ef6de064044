"""The cffi boundary: every field of every structure that crosses it sits at
the same offset, with the same size, in Python and in the compiled C core;
a disagreement (two fields of one size swapped, a field resized, dropped or
added) stops the import instead of corrupting images."""

from __future__ import annotations

import importlib
from dataclasses import replace
from typing import Any

import pytest

from ociext4.ext4 import _writer, records
from ociext4.ext4.records import DIRENT, INODE, PACKED, TAR_ENTRY, Record


def swapped(record: Record, a: str, b: str) -> Record:
    fields = list(record.fields)
    names = [name for name, _ in fields]
    i, j = names.index(a), names.index(b)
    fields[i], fields[j] = fields[j], fields[i]
    return replace(record, fields=tuple(fields))


def test_the_compiled_core_and_python_agree_on_every_boundary_structure():
    records.verify()
    table = records.c_layouts()
    assert {"oe_inode", "oe_dirent", "oe_tar_entry", "oe_commit_params",
            "oe_commit_result", "oe_open_params", "oe_tar_limits"} <= set(table)
    for record in PACKED:
        assert record.struct.size == table[record.c_type][""][1]
        assert [name for name, _ in record.fields] == [
            name for name, _ in sorted(table[record.c_type].items(), key=lambda kv: kv[1][0])
            if name]


@pytest.mark.parametrize(("record", "a", "b"), [
    (INODE, "uid", "gid"),
    (INODE, "atime_nsec", "ctime_nsec"),
    (DIRENT, "child", "name_len"),
    (TAR_ENTRY, "devmajor", "devminor"),
])
def test_two_swapped_fields_of_one_size_fail_loudly(record, a, b):
    wrong = swapped(record, a, b)
    assert wrong.struct.size == record.struct.size   # a size check alone would pass
    with pytest.raises(records.LayoutMismatch, match=rf"{record.c_type}\.{a} at offset"):
        records.verify([wrong])


def test_a_field_of_the_wrong_width_fails_loudly():
    fields = tuple((name, "H" if name == "nlink" else code) for name, code in INODE.fields)
    with pytest.raises(records.LayoutMismatch, match=r"oe_inode\.nlink at offset 12 size 2"):
        records.verify([replace(INODE, fields=fields)])


def test_a_field_missing_from_python_fails_loudly():
    fields = tuple(f for f in DIRENT.fields if f[0] != "name_len")
    with pytest.raises(records.LayoutMismatch, match=r"oe_dirent\.name_len is missing"):
        records.verify([replace(DIRENT, fields=fields)])


def test_a_field_c_does_not_have_fails_loudly():
    with pytest.raises(records.LayoutMismatch, match=r"oe_dirent\.extra is not in the C table"):
        records.verify([replace(DIRENT, fields=(*DIRENT.fields, ("extra", "I")))])


def test_a_record_the_c_core_does_not_report_fails_loudly():
    with pytest.raises(records.LayoutMismatch, match="oe_nothing is not a structure"):
        records.verify([Record("oe_nothing", (("x", "I"),))])


def test_cffis_own_view_is_checked_too():
    c = records.c_layouts()["oe_commit_params"]
    view = records.cffi_layout("oe_commit_params")
    view["uuid"], view["hash_seed"] = view["hash_seed"], view["uuid"]
    with pytest.raises(records.LayoutMismatch, match=r"oe_commit_params\.hash_seed at offset"):
        records.compare("cffi's cdef", "oe_commit_params", view, c)


class _SwappedTable:
    """The C core's table with oe_inode's uid and gid rows trading offsets,
    as a core built from a header with those two fields swapped would say."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self._keep: list[Any] = []

    def oe_field_layouts(self, count: Any) -> Any:
        rows = self._real.oe_field_layouts(count)
        out = _writer.ffi.new("oe_field_layout[]", count[0])
        offsets = {}
        for i in range(count[0]):
            out[i] = rows[i]
            key = (_writer.ffi.string(rows[i].type), _writer.ffi.string(rows[i].field))
            offsets[key] = i
        uid, gid = offsets[(b"oe_inode", b"uid")], offsets[(b"oe_inode", b"gid")]
        out[uid].offset, out[gid].offset = out[gid].offset, out[uid].offset
        self._keep.append(out)
        return out


def test_importing_against_a_core_that_disagrees_fails(monkeypatch):
    # Reloading makes a new LayoutMismatch class: the test matches its base.
    monkeypatch.setattr(_writer, "lib", _SwappedTable(_writer.lib))
    try:
        with pytest.raises(RuntimeError, match=r"oe_inode\.gid at offset 8 .* offset 4"):
            importlib.reload(records)
    finally:
        monkeypatch.undo()
        importlib.reload(records)
