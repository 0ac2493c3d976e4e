"""Builds every C kernel in csrc/ into one cffi API-mode extension, ``legato._kernels``.

Each header exposes its Python-visible declarations between ``/* cffi:begin */`` and
``/* cffi:end */`` markers, so the header stays the single source of truth for the interface.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cffi import FFI

CSRC = Path(__file__).resolve().parent
MARKED = re.compile(r"/\* cffi:begin \*/(.*?)/\* cffi:end \*/", re.S)
INCLUDE = re.compile(r'^#include "([^"]+\.h)"', re.M)


def _declarations(header: Path) -> str:
    return "\n".join(block.strip() for block in MARKED.findall(header.read_text()))


def _in_include_order(headers: list[Path]) -> list[Path]:
    """Each header after the headers it includes, so the declarations it uses come first."""
    ordered: list[Path] = []

    def visit(header: Path) -> None:
        if header in ordered:
            return
        for name in INCLUDE.findall(header.read_text()):
            visit(CSRC / name)
        ordered.append(header)

    for header in headers:
        visit(header)
    return ordered


def _extra(kind: str) -> list[str]:
    """Flags added from ``LEGATO_KERNEL_CFLAGS``/``LEGATO_KERNEL_LDFLAGS`` (the sanitizer build,
    csrc/sanitize-test)."""
    return os.environ.get(f"LEGATO_KERNEL_{kind}", "").split()


def _build() -> FFI:
    headers = _in_include_order(sorted(CSRC.glob("*.h")))
    sources = sorted(CSRC.glob("*.c"))
    builder = FFI()
    builder.cdef("\n".join(_declarations(h) for h in headers))
    builder.set_source(
        "legato._kernels",
        "\n".join(f'#include "{h.name}"' for h in headers),
        sources=[str(s.relative_to(CSRC.parent)) for s in sources],
        include_dirs=[str(CSRC.relative_to(CSRC.parent))],
        extra_compile_args=[
            "-std=c11",
            "-O3",
            "-fno-math-errno",
            "-Wall",
            "-Wextra",
            *_extra("CFLAGS"),
        ],
        extra_link_args=_extra("LDFLAGS"),
        libraries=["m"],
    )
    return builder


ffibuilder = _build()

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
