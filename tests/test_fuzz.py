"""A short, fixed-seed libFuzzer run of each C entry point under ASan and
UBSan, replaying every input that ever crashed (tests/fuzz/regressions).
The long runs are tests/fuzz/fuzz.py's job (README: Hostile input)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from fuzz import fuzz

pytestmark = pytest.mark.skipif(shutil.which("clang") is None,
                                reason="clang is not installed (.ci/run installs it)")


@pytest.mark.parametrize("target", ["tar", "commit"])
def test_fuzzing_the_c_core_briefly_finds_nothing(target, tmp_path):
    binary = fuzz.build(target, tmp_path)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    proc = fuzz.run(binary, corpus, fuzz.seeds(target, tmp_path), "-seed=1", "-runs=6000")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Done 6000 runs" in proc.stderr


@pytest.mark.parametrize("target", ["tar", "commit"])
def test_every_input_that_once_crashed_now_runs_clean(target, tmp_path):
    inputs = sorted(fuzz.REGRESSIONS.glob(f"{target}-*"))
    assert inputs
    binary = fuzz.build(target, tmp_path)
    # Files, not directories, as arguments: libFuzzer runs each once.
    proc = subprocess.run([str(binary), *map(str, inputs)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stderr.count("Executed ") == len(inputs)
