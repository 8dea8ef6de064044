"""The README's Python example runs as written and prints what it says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readmes_api_example_runs():
    text = README.read_text()
    section = text[text.index("## The Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    proc = subprocess.run([sys.executable, "-c", code.group(1)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"\S+/rootfs\.img sha256:[0-9a-f]{64} linux/amd64 [0-9a-f-]{36}", lines[0])
    assert lines[1] == "('sh',) [1]"
    assert lines[3].startswith("refused: ")
    assert lines[3].endswith("no manifest for linux/arm64 (has: linux/amd64)")
