"""Installable the way Python users install: an sdist that carries all it
needs to build, installed with pip into a fresh venv, gives a working
`ociext4`; the wheel is tagged for the stable ABI, and auditwheel names the
manylinux policy it meets."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from runimages import busybox_layout

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                   check=True, capture_output=True)
    return out


def test_the_sdist_carries_the_c_sources_and_headers(dist):
    [sdist] = dist.glob("ociext4-*.tar.gz")
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    wanted = {f"csrc/{p.name}" for p in (ROOT / "csrc").glob("*.[ch]")} | {"csrc/init/init.c"}
    assert wanted <= names, sorted(wanted - names)


def test_the_wheel_is_abi3_and_auditwheel_names_its_policy(dist):
    [wheel] = dist.glob("ociext4-*.whl")
    assert wheel.name.endswith("-cp311-abi3-linux_x86_64.whl"), wheel.name
    proc = subprocess.run([sys.executable, "-m", "auditwheel", "show", str(wheel)],
                          capture_output=True, text=True, check=True)
    assert "consistent with the" in proc.stdout and '"manylinux_2_' in proc.stdout, proc.stdout


@pytest.mark.needs_root
def test_pip_install_of_the_sdist_in_a_fresh_venv_gives_a_working_ociext4(dist, tmp_path):
    [sdist] = dist.glob("ociext4-*.tar.gz")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "-q", str(sdist)],
                         capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-3000:]
    tool = venv / "bin" / "ociext4"
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hello").write_text("hi\n")
    layout = busybox_layout(tmp_path / "layout")
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(tmp_path),
           "OCIEXT4_CACHE": str(tmp_path / "cache")}
    # From another directory: the checkout must not be what gets imported.
    for argv in (["--version"], ["mkfs", str(tree), str(tmp_path / "a.img")],
                 ["unpack", f"oci:{layout}", str(tmp_path / "b.img")],
                 ["run", "--accel", "tcg", str(tmp_path / "b.img"), "--", "true"]):
        proc = subprocess.run([tool, *argv], cwd=tmp_path, env=env, capture_output=True,
                              text=True)
        assert proc.returncode == 0, (argv, proc.stderr)
    where = subprocess.run([venv / "bin" / "python", "-c",
                            "import ociext4.ext4.writer as w; print(w.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(venv)), where.stdout


def test_every_module_imports_when_it_is_the_first_one_imported():
    # A cycle between modules (ociext4.hashing needs the C module, whose
    # package needs the packer, which hashes) shows only when one of them is
    # imported before the others: each module goes first once, in a clean
    # slate of ociext4 modules.
    script = """
import importlib, pkgutil, sys, traceback
import ociext4, ociext4_cli
names = sorted(m.name for pkg in (ociext4, ociext4_cli)
               for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."))
failed = []
for name in names:
    for loaded in [k for k in sys.modules if k.split(".")[0] in ("ociext4", "ociext4_cli")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc().splitlines()[-1])
print(len(names))
print("\\n".join(failed))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    count, *failed = proc.stdout.splitlines()
    assert int(count) > 40 and not [f for f in failed if f], failed
