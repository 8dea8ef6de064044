"""Running the real `ociext4` command line from tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

OCIEXT4 = [sys.executable, "-m", "ociext4_cli.main"]


def ociext4(*args: str | Path, stdin: bytes | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*OCIEXT4, *map(str, args)], input=stdin.decode("latin-1")
                          if stdin is not None else None, capture_output=True, text=True,
                          encoding="latin-1", check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"ociext4 {' '.join(map(str, args))} exited {proc.returncode}:\n"
                             f"{proc.stderr}")
    return proc


def dumpe2fs(img: Path) -> dict[str, str]:
    out = subprocess.run(["dumpe2fs", "-h", str(img)], capture_output=True, text=True,
                         check=True).stdout
    fields = {}
    for line in out.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def assert_image_or_one_line(proc: subprocess.CompletedProcess[str], out_dir: Path,
                             image: str) -> None:
    """What any input must give: the image and its sidecar in `out_dir`, or
    one `ociext4: error:` line, exit 1 and nothing left there; never a
    traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    left = sorted(p.name for p in out_dir.iterdir())
    if proc.returncode == 0:
        assert left == [image, f"{image}.json"]
        return
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ociext4: error: "), proc.stderr
    assert left == [], left
