# cffi's setuptools hook needs setup(); everything else is in pyproject.toml.
# build_ext also compiles the guest's init (csrc/init/init.c) into a static
# binary that ships as package data (ociext4/vm/ociext4-init).
import os
import runpy
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

INIT_SOURCE = "csrc/init/init.c"
INIT_TARGET = ("ociext4", "vm", "ociext4-init")
# The C core's warning flags (-Werror in CI), read from its build script by
# path: importing the package would need the extension this builds.
WARNINGS = runpy.run_path("ociext4/ext4/_ffi_build.py")["WARNINGS"]


class build_ext_with_init(build_ext):
    def run(self) -> None:
        super().run()
        base = Path(".") if self.inplace else Path(self.build_lib)
        target = base.joinpath(*INIT_TARGET)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".partial")
        cmd = [os.environ.get("CC", "gcc"), "-static", "-std=c99", "-O2", *WARNINGS,
               "-s", "-o", str(tmp), INIT_SOURCE]
        try:
            subprocess.run(cmd, check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            raise SystemExit(
                f"ociext4: building the guest init failed ({' '.join(cmd)}: {e}); "
                "it needs gcc and a static libc (Debian: apt-get install gcc libc6-dev)"
            ) from None
        os.replace(tmp, target)

    def get_outputs(self) -> list:
        return [*super().get_outputs(), os.path.join(self.build_lib, *INIT_TARGET)]


setup(cffi_modules=["ociext4/ext4/_ffi_build.py:ffibuilder"],
      cmdclass={"build_ext": build_ext_with_init},
      # The cffi module uses the stable ABI (it is built as .abi3.so): tag the
      # wheel so, for every CPython from 3.11 on.
      options={"bdist_wheel": {"py_limited_api": "cp311"}})
