"""What a live session needs to continue on another host: its ``SessionState`` (the client's
``start``, where the stream stands, the practice summary so far and every stage's checkpoint),
as the bytes stored in a ``CheckpointRecord``.

Stages are chunk-invariant and deterministic, so a session restored from its state and fed
the audio after ``samples`` produces the events after ``seq`` again, identical and with the
same seq numbers: the client is sent those it lacks and storage keeps each once. The resume
token is kept as a digest, so a stored checkpoint does not let anyone resume the session.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import attrs

from ..checkpoints import CheckpointError, pack, reading, unpack
from ..config.pipelines import Pipeline

CHECKPOINT = ("session", 1)
"""The name and version of a session's checkpoint (raised whenever what it holds changes)."""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def pipeline_signature(pipeline: Pipeline) -> str:
    """What a restored session's pipeline must be: the same stages with the same params and
    wiring (hosts of a cluster must run the same config)."""
    stages = [[s.id, s.type.name, list(s.inputs), repr(s.params)] for s in pipeline.stages]
    text = json.dumps([pipeline.name, pipeline.output, stages], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@attrs.frozen
class SessionState:
    """A live session between two blocks: everything before ``samples`` analysed, events up to
    ``seq`` produced."""

    session_id: str
    token: str  # token_digest of the resume token
    start: str  # the client's `start` message, encoded
    pipeline: str  # pipeline_signature
    samples: int
    seq: int
    started_at: float  # the session's start (Unix time), as first recorded
    processing_s: float
    practice: dict[str, Any]
    stages: dict[str, bytes] = attrs.field(repr=lambda s: f"<{len(s)} stages>")

    def to_bytes(self) -> bytes:
        fields = attrs.asdict(self)
        stages = fields.pop("stages")
        return pack(*CHECKPOINT, fields, stages)

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionState:
        """The state ``to_bytes`` made; ``CheckpointError`` when it is not one."""
        fields, stages = unpack(data, *CHECKPOINT)
        with reading(CHECKPOINT[0]):
            return cls(
                session_id=str(fields["session_id"]),
                token=str(fields["token"]),
                start=str(fields["start"]),
                pipeline=str(fields["pipeline"]),
                samples=int(fields["samples"]),
                seq=int(fields["seq"]),
                started_at=float(fields["started_at"]),
                processing_s=float(fields["processing_s"]),
                practice=dict(fields["practice"]),
                stages=stages,
            )

    def check(self, session_id: str, token: str, pipeline: Pipeline) -> None:
        """``CheckpointError`` unless this is the state of ``session_id``, resumable with
        ``token``, on this host's version of its ``pipeline``."""
        if self.session_id != session_id:
            raise CheckpointError(f"the checkpoint is of session {self.session_id}")
        if not hmac.compare_digest(self.token, token_digest(token)):
            raise CheckpointError("wrong resume token")
        if self.pipeline != pipeline_signature(pipeline):
            raise CheckpointError(
                f"pipeline {pipeline.name!r} is configured differently on this host than on the"
                " host that started the session"
            )
