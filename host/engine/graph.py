"""The runtime graph: instantiates a pipeline's stages for one stream and pushes blocks through
them in topological order, turning each stage's events into the public event contract.

A stage reads either the stream itself (input ``audio``) or the audio produced by an upstream
stage (an ``AudioStage``, such as a mastering stage); mono stages get a channel-mean downmix.
"""

from __future__ import annotations

import numpy as np

from ..checkpoints import CheckpointError, Checkpointing
from ..config.pipelines import SOURCE, Pipeline, StageConfig
from ..errors import LegatoError
from ..kernels import check, lib, view
from ..stage import AudioStage, Event, Stage, SteppedStage, StreamFormat
from .chain import Chain


class _Node:
    def __init__(self, stage_id: str, source: str, mono: bool, stage: Stage) -> None:
        self.id = stage_id
        self.source = source
        self.mono = mono
        self.stage = stage
        self.makes_audio = isinstance(stage, AudioStage)


class Graph:
    """One stream's live instance of a pipeline. Not thread-safe; one owner feeds it."""

    def __init__(self, pipeline: Pipeline, fmt: StreamFormat) -> None:
        if fmt.sample_rate <= 0 or fmt.channels <= 0:
            raise ValueError(f"invalid stream format {fmt}")
        self.pipeline = pipeline
        self.format = fmt
        self._nodes = [
            _Node(s.id, s.inputs[0], s.type.input == "mono", _create(s, fmt))
            for s in pipeline.stages
        ]
        self._chain = _chain(self._nodes, fmt.channels)

    def process(self, block: np.ndarray) -> list[Event]:
        """Feed one block of interleaved audio, shape (frames, channels), any length."""
        if self._chain is None:
            return self._run(self._checked(block), finishing=False)[1]
        counts = self._chain.run(self._checked(block))
        events: list[Event] = []
        for i, node in enumerate(self._nodes):
            if counts[i]:
                events.extend(self._decorate(node.id, node.stage.events(counts[i])))  # type: ignore[attr-defined]
        return events

    def finish(self) -> list[Event]:
        """End of stream: flush audio stages' tails downstream, then every stage's summaries."""
        return self._run(None, finishing=True)[1]

    def render(self, block: np.ndarray) -> tuple[np.ndarray, list[Event]]:
        """``process``, also returning the audio the pipeline's ``output`` stage made ready."""
        outputs, events = self._run(self._checked(block), finishing=False)
        return self._output(outputs), events

    def render_finish(self) -> tuple[np.ndarray, list[Event]]:
        """``finish``, also returning the rest of the ``output`` stage's audio."""
        outputs, events = self._run(None, finishing=True)
        return self._output(outputs), events

    def unmigratable(self) -> list[str]:
        """The ids of the stages that cannot be checkpointed (``legato.checkpoints``): while
        there is one, the stream cannot continue elsewhere."""
        return [n.id for n in self._nodes if not isinstance(n.stage, Checkpointing)]

    def checkpoint(self) -> dict[str, bytes]:
        """Every stage's checkpoint, by stage id (all must be ``Checkpointing``)."""
        return {n.id: n.stage.checkpoint() for n in self._nodes}  # type: ignore[attr-defined]

    def restore(self, states: dict[str, bytes]) -> None:
        """Every stage from ``checkpoint``'s states; ``CheckpointError`` when one cannot be,
        after which the graph must not be used."""
        missing = [n.id for n in self._nodes if n.id not in states]
        if missing or len(states) != len(self._nodes):
            raise CheckpointError(
                f"pipeline {self.pipeline.name!r}: the checkpoint holds stages "
                f"{sorted(states)}, the pipeline {[n.id for n in self._nodes]}"
            )
        for node in self._nodes:
            if not isinstance(node.stage, Checkpointing):
                raise CheckpointError(f"stage {node.id!r} cannot be restored from a checkpoint")
            node.stage.restore(states[node.id])

    def _checked(self, block: np.ndarray) -> np.ndarray:
        block = np.ascontiguousarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != self.format.channels:
            raise ValueError(
                f"expected audio of shape (frames, {self.format.channels}), got {block.shape}"
            )
        return block

    def _output(self, outputs: dict[str, np.ndarray | None]) -> np.ndarray:
        if self.pipeline.output is None:
            raise LegatoError(f"pipeline {self.pipeline.name!r} has no output stage")
        audio = outputs[self.pipeline.output]
        if audio is None:
            return np.zeros((0, self.format.channels), dtype=np.float32)
        return audio.reshape(-1, self.format.channels)

    def _run(
        self, block: np.ndarray | None, finishing: bool
    ) -> tuple[dict[str, np.ndarray | None], list[Event]]:
        outputs: dict[str, np.ndarray | None] = {SOURCE: block}
        mixes: dict[str, np.ndarray] = {}
        events: list[Event] = []
        for node in self._nodes:
            data = outputs[node.source]
            if data is not None and node.mono:
                if node.source not in mixes:
                    mixes[node.source] = downmix(data)
                data = mixes[node.source]
            elif data is not None and data.ndim == 1:
                data = data[:, None]
            raw: list[Event] = []
            if node.makes_audio:
                audio: np.ndarray | None = None
                if data is not None:
                    audio, raw = node.stage.process_audio(data)
                if finishing:
                    tail, more = node.stage.finish_audio()
                    audio = tail if audio is None else np.concatenate([audio, tail])
                    raw = raw + more
                outputs[node.id] = audio
            else:
                if data is not None:
                    raw = node.stage.process(data)
                if finishing:
                    raw = raw + node.stage.finish()
            if raw:
                events.extend(self._decorate(node.id, raw))
        return outputs, events

    def _decorate(self, stage_id: str, raw: list[Event]) -> list[Event]:
        """The public form of a stage's events: ``stage``, ``kind``, ``sample`` and ``t`` first."""
        rate = self.format.sample_rate
        out = []
        for event in raw:
            sample = event["sample"]
            out.append(
                {"stage": stage_id, "kind": event["kind"], "sample": sample, "t": sample / rate}
                | event
            )
        return out


def _chain(nodes: list[_Node], channels: int) -> Chain | None:
    """One C call per block for the nodes, when every one is a stepped stage fed the stream
    the way its step expects (the mix or the frames); None otherwise."""
    for node in nodes:
        stage = node.stage
        if not isinstance(stage, SteppedStage) or node.makes_audio or node.source != SOURCE:
            return None
        if stage.step.mono != node.mono:
            return None
    return Chain([node.stage for node in nodes], channels)  # type: ignore[misc]


def _create(config: StageConfig, fmt: StreamFormat) -> Stage:
    """Instantiate a stage; a stream it cannot handle (e.g. too many channels) is a user error."""
    try:
        return config.type.create(config.params, fmt)
    except ValueError as exc:
        raise LegatoError(
            f"stage {config.id!r} ({config.type.name}) cannot process {fmt.channels}-channel "
            f"audio at {fmt.sample_rate} Hz: {exc}"
        ) from None


def downmix(block: np.ndarray) -> np.ndarray:
    """Mono mix (channel mean) for stages that analyse one signal, in one C call (float32
    arithmetic, the channels summed in order: the same value for any split)."""
    if block.ndim == 1:
        return block
    block = np.ascontiguousarray(block, dtype=np.float32)
    frames, channels = block.shape
    if channels == 1:
        return block[:, 0]
    mix = np.empty(frames, dtype=np.float32)
    if frames:
        status = lib.lg_downmix(view(block, "float"), frames, channels, view(mix, "float"))
        check(status, "lg_downmix")
    return mix
