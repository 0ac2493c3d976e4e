"""Hooks the cffi kernel build into setuptools (pyproject.toml holds everything else)."""

from setuptools import setup

setup(cffi_modules=["csrc/build_kernels.py:ffibuilder"])
