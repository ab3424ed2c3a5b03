# Only here to wire the cffi extension into the build; everything else is in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["csrc/build_native.py:ffibuilder"])
