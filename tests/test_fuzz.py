"""A short, fixed-seed libFuzzer run of each C entry point under ASan and
UBSan, replaying every input that ever crashed (tests/fuzz/regressions).
The long runs are tests/fuzz/fuzz.py's job (README: Hostile input)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from fuzz import fuzz

pytestmark = pytest.mark.skipif(shutil.which("clang") is None,
                                reason="clang is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Each target's fuzzer, built once for the tests here (5-7 s each)."""
    made: dict[str, Path] = {}

    def binary(target: str) -> Path:
        if target not in made:
            made[target] = fuzz.build(target, tmp_path_factory.mktemp(f"fuzz-{target}"))
        return made[target]

    return binary


@pytest.mark.parametrize("target", ["tar", "commit"])
def test_fuzzing_the_c_core_briefly_finds_nothing(target, tmp_path, built):
    binary = built(target)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    proc = fuzz.run(binary, corpus, fuzz.seeds(target, tmp_path), "-seed=1", "-runs=6000")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Done 6000 runs" in proc.stderr


@pytest.mark.parametrize("target", ["tar", "commit"])
def test_every_input_that_once_crashed_now_runs_clean(target, built):
    inputs = sorted(fuzz.REGRESSIONS.glob(f"{target}-*"))
    assert inputs
    binary = built(target)
    # Files, not directories, as arguments: libFuzzer runs each once.
    proc = subprocess.run([str(binary), *map(str, inputs)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stderr.count("Executed ") == len(inputs)
