"""Pipeline config validation: every mistake is reported with its key path and line."""

from __future__ import annotations

import textwrap
from types import ModuleType

import attrs
import numpy as np
import pytest

from legato import hookimpl
from legato.config.pipelines import ConfigError, load_config, parse_config
from legato.errors import LegatoError
from legato.registry import Registry, load_registry
from legato.stage import Event, OutputSpec, StageType, StreamFormat, param


@attrs.frozen
class GainParams:
    db: float = param(0.0, doc="gain", unit="dB", min=-60.0, max=24.0)


class Gain:
    """An audio-producing stage, so configs can chain stages and form cycles."""

    def __init__(self, params: GainParams, fmt: StreamFormat) -> None:
        self.factor = np.float32(10 ** (params.db / 20))

    def process_audio(self, block: np.ndarray) -> tuple[np.ndarray, list[Event]]:
        return block * self.factor, []

    def finish_audio(self) -> tuple[np.ndarray, list[Event]]:
        return np.zeros((0,), np.float32), []


def _gain_module() -> ModuleType:
    module = ModuleType("gain_plugin")
    module.LEGATO_API_VERSION = 1  # type: ignore[attr-defined]

    @hookimpl
    def register_stages(register):
        register(
            StageType(
                name="gain",
                doc="multiply by a constant gain",
                params=GainParams,
                create=Gain,
                outputs=(OutputSpec("none", "audio only", "variable", {}),),
                produces_audio=True,
            )
        )

    module.register_stages = register_stages  # type: ignore[attr-defined]
    return module


@pytest.fixture
def registry(example_registry: Registry) -> Registry:
    return load_registry(extra_modules={"gain_plugin": _gain_module()})


def check(registry: Registry, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), "p.toml", registry)
    return [issue.render(info.value.filename) for issue in info.value.issues]


def test_valid_config_orders_stages_topologically(registry: Registry) -> None:
    config = parse_config(
        textwrap.dedent(
            """
            [pipelines.chain]
            doc = "louder, then count"
            [pipelines.chain.stages.zc]
            type = "zero_crossings"
            inputs = ["loud"]
            hop = 128
            [pipelines.chain.stages.loud]
            type = "gain"
            inputs = ["audio"]
            db = 6
            """
        ),
        "p.toml",
        registry,
    )
    pipeline = config.pipeline("chain")
    assert [s.id for s in pipeline.stages] == ["loud", "zc"]
    assert pipeline.stages[0].params.db == 6.0 and isinstance(pipeline.stages[0].params.db, float)
    assert pipeline.stages[1].params.hop == 128


def test_toml_syntax_error_points_at_line(registry: Registry) -> None:
    errors = check(registry, "[pipelines.a]\nstages = 3\n[pipelines.a.stages.x\n")
    assert len(errors) == 1 and errors[0].startswith("p.toml:3: invalid TOML")


def test_unknown_stage_type_suggests_closest(registry: Registry) -> None:
    errors = check(
        registry,
        """
        [pipelines.a.stages.zc]
        type = "zero_crossing"
        inputs = ["audio"]
        """,
    )
    assert errors[0].startswith("p.toml:3: pipelines.a.stages.zc.type: unknown stage type")
    assert "did you mean 'zero_crossings'?" in errors[0]


def test_param_errors_are_all_reported_with_lines(registry: Registry) -> None:
    errors = check(
        registry,
        """
        [pipelines.a.stages.zc]
        type = "zero_crossings"
        inputs = ["audio"]
        hopp = 128

        [pipelines.a.stages.loud]
        type = "gain"
        inputs = ["audio"]
        db = "loud"

        [pipelines.b.stages.zc]
        type = "zero_crossings"
        inputs = ["audio"]
        hop = 0
        """,
    )
    assert errors[0].startswith("p.toml:5: pipelines.a.stages.zc.hopp: unknown param")
    assert "did you mean 'hop'?" in errors[0]
    assert errors[1] == "p.toml:10: pipelines.a.stages.loud.db: must be a number, got str 'loud'"
    assert errors[2] == "p.toml:15: pipelines.b.stages.zc.hop: must be at least 1 samples, got 0"


def test_dangling_input_and_format_mismatch(registry: Registry) -> None:
    errors = check(
        registry,
        """
        [pipelines.a.stages.zc]
        type = "zero_crossings"
        inputs = ["aduio"]

        [pipelines.a.stages.zc2]
        type = "zero_crossings"
        inputs = ["zc"]
        """,
    )
    assert errors[0].startswith("p.toml:4: pipelines.a.stages.zc.inputs: input 0 names 'aduio'")
    assert "did you mean 'audio'?" in errors[0]
    assert errors[1] == (
        "p.toml:8: pipelines.a.stages.zc2.inputs: incompatible formats: zero_crossings consumes"
        " audio, but 'zc' (zero_crossings) produces only events"
    )


def test_cycle_is_named(registry: Registry) -> None:
    errors = check(
        registry,
        """
        [pipelines.loop.stages.one]
        type = "gain"
        inputs = ["two"]

        [pipelines.loop.stages.two]
        type = "gain"
        inputs = ["one"]
        """,
    )
    assert errors == ["p.toml:4: pipelines.loop.stages.one.inputs: cycle: one -> two -> one"]


def test_structure_errors(registry: Registry) -> None:
    errors = check(
        registry,
        """
        [pipeline.a]
        x = 1
        [pipelines.empty]
        doc = "nothing"
        [pipelines.b.stages.audio]
        type = "gain"
        inputs = ["audio"]
        [pipelines.b.stages.c]
        inputs = "audio"
        """,
    )
    assert errors[0].startswith("p.toml:2: pipeline: unknown key; did you mean 'pipelines'?")
    assert any("pipelines.empty.stages: define at least one stage" in e for e in errors)
    assert any("p.toml:6: pipelines.b.stages.audio: 'audio' is reserved" in e for e in errors)
    assert any("pipelines.b.stages.c.type: missing" in e for e in errors)
    assert any("p.toml:10: pipelines.b.stages.c.inputs: must be a list" in e for e in errors)


def test_unknown_pipeline_and_missing_file(registry: Registry, tmp_path) -> None:
    config = load_config(None, registry)
    with pytest.raises(LegatoError, match="unknown pipeline 'analyse'.*did you mean 'analyze'"):
        config.pipeline("analyse")
    with pytest.raises(LegatoError, match="config file not found"):
        load_config(tmp_path / "missing.toml", registry)


def test_default_config_is_valid() -> None:
    config = load_config(None, load_registry())
    stages = {s.id: s.type.name for s in config.pipeline("analyze").stages}
    assert stages == {"pitch": "pitch_yin", "onsets": "onsets_flux", "dynamics": "dynamics"}


def test_library_pipelines_name_the_stage_they_play(registry: Registry) -> None:
    config = parse_config(
        textwrap.dedent(
            """
            [library]
            path = "/srv/music"
            fingerprint_timeout_s = 5

            [pipelines.play]
            source = "library"

            [pipelines.play.stages.quieter]
            type = "gain"
            inputs = ["audio"]
            db = -6

            [pipelines.play.stages.louder]
            type = "gain"
            inputs = ["quieter"]
            """
        ),
        "p.toml",
        registry,
    )
    play = config.pipelines["play"]
    assert play.plays_tracks and play.output == "louder"  # the last stage producing audio
    assert config.library.path == "/srv/music" and config.library.fingerprint_timeout_s == 5.0
    errors = check(
        registry,
        """
        [library]
        path = 3
        sidecar = false

        [pipelines.a]
        source = "mic"
        [pipelines.a.stages.zc]
        type = "zero_crossings"
        inputs = ["audio"]

        [pipelines.b]
        source = "library"
        [pipelines.b.stages.zc]
        type = "zero_crossings"
        inputs = ["audio"]

        [pipelines.c]
        source = "library"
        output = "zc"
        [pipelines.c.stages.g]
        type = "gain"
        inputs = ["audio"]
        [pipelines.c.stages.zc]
        type = "zero_crossings"
        inputs = ["g"]

        [pipelines.d]
        output = "g"
        [pipelines.d.stages.g]
        type = "gain"
        inputs = ["audio"]
        """,
    )
    assert errors == [
        "p.toml:7: pipelines.a.source: must be 'audio' or 'library', got 'mic'",
        "p.toml:14: pipelines.b.stages: a library pipeline plays the audio of a stage that"
        " produces audio (such as lwrp_master); it has none",
        "p.toml:20: pipelines.c.output: must name a stage of this pipeline that produces audio"
        " (g), got 'zc'",
        'p.toml:29: pipelines.d.output: only a pipeline with source = "library" plays audio',
        "p.toml:3: library.path: must be a string, got int 3",
        "p.toml:4: library.sidecar: unknown param for [library]; did you mean 'sidecars'?"
        " (params: path, fingerprint_timeout_s, sidecars)",
    ]


def test_trusted_proxies_must_be_addresses(registry: Registry) -> None:
    errors = check(
        registry,
        """
        [server]
        trusted_proxies = ["127.0.0.1", "proxy.example.org"]
        """,
    )
    assert "p.toml:3: server.trusted_proxies: 'proxy.example.org' is not an IP address" in errors
