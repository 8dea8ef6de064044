"""Where `ociext4 run` keeps what it can rebuild: initramfs archives,
unpacked kernels and images, the KVM probe's verdict. They live in run/
under the cache root, beside (not inside) the blob store's OCI layout."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from .store import default_root, lock_is_free, tree_usage


def cache_dir(kind: str) -> Path:
    """ROOT/run/KIND, ROOT being $OCIEXT4_CACHE, else $XDG_CACHE_HOME/ociext4,
    else ~/.cache/ociext4; created on first use.  Half-written files that a
    dead process left there are swept on the way."""
    path = default_root() / "run" / kind
    path.mkdir(parents=True, exist_ok=True)
    sweep_partials(path)
    return path


def _writer_lock(partial: Path) -> Path | None:
    """The lock a writer of `partial` holds: NAME.lock for an unpacked image
    (.NAME.RANDOM.partial, written under NAME.lock)."""
    name = partial.name
    if name.startswith(".") and name.endswith(".partial"):
        base = name[1:].rsplit(".", 2)[0]
        return partial.with_name(f"{base}.lock")
    return None


def _pid_alive(name: str) -> bool:
    """For NAME.PID.partial: whether that process still runs."""
    pid = name.rsplit(".", 2)[-2] if name.count(".") >= 2 else ""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_partials(path: Path) -> int:
    """Removes the .partial files of processes that are gone; returns how many."""
    removed = 0
    with contextlib.suppress(FileNotFoundError), os.scandir(path) as it:
        for de in it:
            if not de.name.endswith(".partial"):
                continue
            part = Path(de.path)
            lock = _writer_lock(part)
            alive = not lock_is_free(lock) if lock is not None else _pid_alive(de.name)
            if not alive:
                with contextlib.suppress(FileNotFoundError):
                    part.unlink()
                    removed += 1
    return removed


def run_root(root: Path | None = None) -> Path:
    return (root or default_root()) / "run"


def run_usage(root: Path | None = None) -> dict[str, int]:
    """Bytes on disk per kind of run cache (images, kernels, initramfs, …)."""
    base = run_root(root)
    out: dict[str, int] = {}
    with contextlib.suppress(FileNotFoundError), os.scandir(base) as it:
        for de in it:
            if de.is_dir(follow_symlinks=False):
                out[de.name] = tree_usage(Path(de.path))
    return out


def prune_run(root: Path | None = None) -> tuple[int, int]:
    """Empties the run cache but for what a running process holds locked (an
    image being unpacked).  Returns (files removed, bytes freed)."""
    base = run_root(root)
    removed = freed = 0
    kinds: list[Path] = []
    with contextlib.suppress(FileNotFoundError), os.scandir(base) as it:
        kinds = [Path(de.path) for de in it if de.is_dir(follow_symlinks=False)]
    for kind in kinds:
        busy = {p.name[:-len(".lock")] for p in kind.glob("*.lock") if not lock_is_free(p)}
        for p in list(kind.iterdir()):
            stem = p.name[1:] if p.name.startswith(".") else p.name
            if any(stem.startswith(b) for b in busy):
                continue
            size = tree_usage(p)
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            removed, freed = removed + 1, freed + size
    return removed, freed
