"""One C call per block (csrc/chain.c): a pipeline of stepped stages gives the events its
stages give one by one, grows its buffers for any block, and names a failing step."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_graph import music

from legato.config.pipelines import load_config
from legato.engine.graph import Graph
from legato.kernels import KernelError, ffi, lib
from legato.stage import Event, SteppedStage, StreamFormat
from legato.testing import registry, run_blocks, split

RATE = 44100
AUDIO = music(2.0, channels=2, seed=3)


def analyze() -> Graph:
    graph = Graph(load_config(None, registry()).pipeline("analyze"), StreamFormat(RATE, 2))
    assert all(isinstance(node.stage, SteppedStage) for node in graph._nodes)
    assert graph._chain is not None  # so the graph runs them in one C call per block
    return graph


def through_graph(audio: np.ndarray, sizes: list[int] | None) -> list[Event]:
    graph = analyze()
    events = [e for block in split(audio, sizes) for e in graph.process(block)]
    return events + graph.finish()


def one_by_one(audio: np.ndarray, sizes: list[int] | None) -> list[Event]:
    """Each stage through its own ``process`` (legato.testing), in the graph's public form."""
    events = []
    for stage in load_config(None, registry()).pipeline("analyze").stages:
        raw = run_blocks(stage.type, audio, RATE, sizes, **attrs.asdict(stage.params))
        for e in raw:
            events.append({"stage": stage.id, "kind": e["kind"], "sample": e["sample"]} | e)
    return events


def by_stage(events: list[Event]) -> dict[str, list[Event]]:
    out: dict[str, list[Event]] = {}
    for e in events:
        out.setdefault(e["stage"], []).append({k: v for k, v in e.items() if k != "t"})
    return out


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 3000), min_size=1, max_size=6).filter(any))
def test_the_chain_gives_each_stages_own_events(sizes: list[int]) -> None:
    assert by_stage(through_graph(AUDIO, sizes)) == by_stage(one_by_one(AUDIO, sizes))


def test_blocks_beyond_every_buffer_grow_them() -> None:
    whole = by_stage(through_graph(AUDIO, None))  # one block of 88200 frames: every step grows
    assert whole == by_stage(through_graph(AUDIO, [512]))
    assert set(whole) == {"pitch", "onsets", "dynamics"}


def test_a_mono_stream_feeds_every_step_its_frames() -> None:
    mono = np.ascontiguousarray(AUDIO[:, :1])
    graph = Graph(load_config(None, registry()).pipeline("analyze"), StreamFormat(RATE, 1))
    events = [e for block in split(mono, [700]) for e in graph.process(block)]
    assert by_stage(events + graph.finish()) == by_stage(one_by_one(mono[:, 0], [700]))


def test_a_failing_step_is_named_and_stops_the_block() -> None:
    graph = analyze()
    graph.process(AUDIO[:4096])
    graph.finish()  # onsets holds frames back: after its finish, it refuses audio
    with pytest.raises(KernelError, match="lg_onsets_step failed: LG_ERR_FINISHED"):
        graph.process(AUDIO[4096:8192])


def test_bad_arguments_are_refused_in_c() -> None:
    counts = ffi.new("int[]", 1)
    assert lib.lg_chain_run(ffi.NULL, 1, 0, ffi.NULL, 0, 1, ffi.NULL, counts) == lib.LG_ERR_ARGUMENT
    steps = ffi.new("lg_step *[]", 1)
    assert lib.lg_chain_run(steps, 1, 2, ffi.NULL, 0, 1, ffi.NULL, counts) == lib.LG_ERR_ARGUMENT
    assert lib.lg_step_run(ffi.NULL, ffi.NULL, 0) == lib.LG_ERR_ARGUMENT
