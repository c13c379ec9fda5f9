"""Build of hashlab's compiled kernel (everything else is declared in pyproject.toml).

``hashlab.index._hamming`` is a CPython extension built by ``pip install .`` / ``pip install
-e .``. It is compiled for the baseline of the target architecture (no ``-march``): the
distance loops carry per-function target attributes and the best one is chosen at import
from the CPU's flags, so a wheel built here runs on any x86-64 machine. OpenMP is used when
the compiler has it (``-fopenmp``); without it the kernels run on one thread. The extension
is optional for the install: without a C compiler hashlab installs and searches with numpy
(``hashlab.index.native`` warns once, saying how much slower), and the test suite fails if a
compiler exists but the extension is missing.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP = ["-fopenmp"]


class BuildWithOptionalOpenMP(build_ext):
    """Try with OpenMP first, then without (compilers such as Apple clang lack it)."""

    def build_extension(self, ext: Extension) -> None:
        if os.environ.get("HASHLAB_NO_OPENMP") != "1":
            try:
                ext.extra_compile_args = [*BASE_FLAGS, *OPENMP]
                ext.extra_link_args = list(OPENMP)
                return super().build_extension(ext)
            except Exception as error:  # noqa: BLE001 - any compiler failure: retry plainly
                print(f"hashlab: building {ext.name} with OpenMP failed ({error}); retrying")
        ext.extra_compile_args = list(BASE_FLAGS)
        ext.extra_link_args = []
        super().build_extension(ext)


BASE_FLAGS = ["-O3", "-std=c11", "-fno-strict-aliasing"]

setup(
    ext_modules=[
        Extension(
            "hashlab.index._hamming",
            sources=["src/hashlab/index/hamming_kernels.c"],
            optional=True,
        )
    ],
    cmdclass={"build_ext": BuildWithOptionalOpenMP},
)
