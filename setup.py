# cffi's setuptools hook needs setup(); everything else is in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["ociext4/ext4/_ffi_build.py:ffibuilder"])
