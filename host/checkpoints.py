"""Checkpoints of stages: a stage's streaming state as bytes, so that a session can continue in
another process exactly where it stopped (the same events, bit for bit).

A stage that can be checkpointed implements ``Checkpointing`` (``checkpoint`` and ``restore``)
beside ``process`` and ``finish``. This module gives what such a stage needs: ``pack`` and
``unpack`` for its own checkpoint (named and versioned, its Python fields as JSON and its
kernels' checkpoints and other arrays as blobs, all under one checksum), ``save_kernel`` and
``load_kernel`` for a C kernel's ``lg_<kernel>_save``/``_load`` (csrc/checkpoint.h). A
checkpoint that is corrupt, of another stage or version, or made with other parameters is
refused with a ``CheckpointError`` that says which, and the stage is left as it was.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

from .errors import LegatoError
from .kernels import check, ffi, lib

MAGIC = b"LGST"
_HEAD = struct.Struct("<4sI")  # magic, length of the JSON description


class CheckpointError(LegatoError):
    """A checkpoint that cannot be restored, and why."""


@runtime_checkable
class Checkpointing(Protocol):
    """What a stage implements to be checkpointed: ``checkpoint`` returns its state as bytes;
    ``restore`` takes such bytes into an instance made with the same params and stream format
    (or raises ``CheckpointError`` and changes nothing). Feeding the rest of a stream to a
    restored instance gives what the original would have given."""

    def checkpoint(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...


def pack(kind: str, version: int, fields: Mapping[str, Any], blobs: Mapping[str, bytes]) -> bytes:
    """A stage's checkpoint: its name and checkpoint version, JSON-ready ``fields`` (floats
    round-trip exactly) and named binary ``blobs`` (kernel checkpoints)."""
    description = json.dumps(
        {
            "kind": kind,
            "version": version,
            "fields": fields,
            "blobs": {name: len(blob) for name, blob in blobs.items()},
        },
        allow_nan=False,
        separators=(",", ":"),
    ).encode()
    # One buffer, its checksum written in place: a checkpoint is mostly kernel state (hundreds
    # of KB), so every copy of it counts.
    packed = bytearray().join(
        [_HEAD.pack(MAGIC, len(description)), description, *blobs.values(), bytes(8)]
    )
    struct.pack_into("<Q", packed, len(packed) - 8, _checksum(memoryview(packed)[:-8]))
    return packed


def unpack(data: bytes, kind: str, version: int) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(fields, blobs) of a checkpoint ``pack`` made for ``kind`` at ``version``."""
    if len(data) < _HEAD.size + 8 or data[:4] != MAGIC:
        raise CheckpointError(f"{kind}: not a stage checkpoint")
    body, checksum = memoryview(data)[:-8], struct.unpack("<Q", data[-8:])[0]
    if _checksum(body) != checksum:
        raise CheckpointError(f"{kind}: the checkpoint is corrupt (its checksum does not match)")
    _, size = _HEAD.unpack_from(body)
    try:
        description = json.loads(bytes(body[_HEAD.size : _HEAD.size + size]))
        found_kind, found_version = description["kind"], description["version"]
        fields, lengths = description["fields"], description["blobs"]
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(f"{kind}: the checkpoint's description is unreadable") from None
    if found_kind != kind or found_version != version:
        raise CheckpointError(
            f"{kind}: the checkpoint is of {found_kind!r} version {found_version}, not version"
            f" {version}"
        )
    blobs: dict[str, bytes] = {}
    at = _HEAD.size + size
    for name, length in lengths.items():
        blobs[name] = bytes(body[at : at + length])
        at += length
    if at != len(body):
        raise CheckpointError(f"{kind}: the checkpoint's length does not match its description")
    return fields, blobs


@contextmanager
def reading(kind: str) -> Iterator[None]:
    """Around a stage's reading of its checkpoint's fields: what does not fit (a missing field,
    a wrong type, a value out of range) becomes a ``CheckpointError`` naming the stage."""
    try:
        yield
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CheckpointError(f"{kind}: the checkpoint's fields do not fit ({exc!r})") from None


def _checksum(data: bytes | memoryview) -> int:
    return int(lib.lg_checksum(ffi.from_buffer(data), len(data)))


def save_kernel(save: Callable[..., int], state: Any) -> bytes:
    """The checkpoint of a kernel state through its ``lg_<kernel>_save`` (written in place,
    returned without a copy)."""
    size = check(save(state, ffi.NULL, 0), "checkpoint size")
    buffer = bytearray(size)
    check(save(state, ffi.from_buffer(buffer), size), "checkpoint")
    return buffer


def load_kernel(load: Callable[..., int], state: Any, data: bytes, what: str) -> None:
    """Restore a kernel state through its ``lg_<kernel>_load``; ``what`` names it in errors."""
    status = load(state, ffi.from_buffer(data), len(data))
    if status == lib.LG_ERR_CORRUPT:
        raise CheckpointError(f"{what}: the checkpoint is corrupt (cut short or altered)")
    if status == lib.LG_ERR_MISMATCH:
        raise CheckpointError(
            f"{what}: the checkpoint does not fit (another kernel version or platform, or other"
            " parameters)"
        )
    check(status, "checkpoint load")
