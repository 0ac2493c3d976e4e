"""A resume that reaches a host that does not hold its session, because the host that did has
died: the session restored here from its last stored checkpoint (``migration.SessionState``),
ready to take the client's audio from the checkpoint on."""

from __future__ import annotations

import logging

import trio

from ..checkpoints import CheckpointError
from ..config.pipelines import Config
from ..config.settings import ServerSettings
from ..protocol.messages import ProtocolError, Resume, Start, parse_client_message
from ..records.recorder import Recorder
from ..storage import StorageError
from .auth import Identity
from .migration import SessionState
from .session import Session, open_live

log = logging.getLogger("legato.server")


async def restore_session(
    resume: Resume,
    identity: Identity,
    config: Config,
    settings: ServerSettings,
    recorder: Recorder | None,
) -> Session | None:
    """The session ``resume`` names, restored from its checkpoint; None when there is none it
    may be restored from: no storage or checkpoints here, none stored (the session never
    checkpointed, ended, or is unknown), the wrong token or user, or a checkpoint that does
    not fit this host (said in the log)."""
    if recorder is None or settings.checkpoint_interval_s <= 0:
        return None
    session_id = resume.session_id
    try:
        with trio.fail_after(settings.storage_timeout_s):
            record = await recorder.storage.get_checkpoint(session_id)
    except (StorageError, trio.TooSlowError, AttributeError) as exc:
        log.warning("session %s: no checkpoint could be read: %s", session_id, exc)
        return None
    if record is None:
        return None
    try:
        state = SessionState.from_bytes(record.data)
        start = parse_client_message(state.start)
        pipeline = config.pipelines.get(start.pipeline) if isinstance(start, Start) else None
        if pipeline is None:
            raise CheckpointError("its pipeline is not served here")
        state.check(session_id, resume.token, pipeline)
        if identity.verified and start.user != identity.user:
            return None  # another user's session: answered as an unknown one
        session = open_live(start, pipeline, settings, (session_id, resume.token), recorder)
        session.restore(state)
    except (CheckpointError, ProtocolError) as exc:
        log.warning("session %s cannot be continued from its checkpoint: %s", session_id, exc)
        return None
    log.warning(
        "session %s continued here from its checkpoint at sample %d (after event %d)",
        session_id,
        state.samples,
        state.seq,
    )
    return session
