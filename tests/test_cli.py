"""The `legato` command line, run as a user runs it: a subprocess with real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def legato(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "legato.cli", *args], capture_output=True, text=True, cwd=cwd
    )


@pytest.fixture(scope="module")
def tone_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seconds of a plucked A3 (220 Hz) note, stereo, 44.1 kHz."""
    rate = 44100
    t = np.arange(2 * rate) / rate
    note = sum(0.5 / k * np.sin(2 * np.pi * 220 * k * t) for k in range(1, 5))
    note *= np.exp(-t * 1.5) * (t >= 0.5)
    path = tmp_path_factory.mktemp("audio") / "take1.wav"
    sf.write(path, np.stack([note, 0.8 * note], axis=1).astype(np.float32), rate)
    return path


def test_run_writes_event_contract(tone_wav: Path) -> None:
    done = legato("run", "--pipeline", "analyze", str(tone_wav))
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    kinds = {(e["stage"], e["kind"]) for e in events}
    assert {("pitch", "pitch"), ("onsets", "onset"), ("dynamics", "dynamics")} <= kinds
    assert {("pitch", "summary"), ("onsets", "summary"), ("dynamics", "summary")} <= kinds
    for event in events:
        assert list(event)[:4] == ["stage", "kind", "sample", "t"]
        assert isinstance(event["sample"], int)
        assert event["t"] == pytest.approx(event["sample"] / 44100)
    voiced = [e for e in events if e["kind"] == "pitch" and e["voiced"]]
    assert voiced and {e["note"] for e in voiced[5:-5]} == {"A3"}
    onsets = [e for e in events if e["kind"] == "onset"]
    assert len(onsets) == 1 and abs(onsets[0]["t"] - 0.5) < 0.03


def test_run_out_file_matches_stdout(tone_wav: Path, tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    done = legato("run", str(tone_wav), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_text() == legato("run", str(tone_wav)).stdout


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.wav", "missing.wav: no such file"),
        (lambda d: _write(d / "notes.wav", b"this is not audio"), "not a readable audio file"),
        (lambda d: _empty_wav(d / "empty.wav"), "empty.wav: contains no audio samples"),
        (lambda d: d, "is a directory"),
    ],
)
def test_run_bad_input_is_one_line(tmp_path: Path, make, message: str) -> None:
    done = legato("run", str(make(tmp_path)))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and message in done.stderr
    assert "Traceback" not in done.stderr


def test_run_unknown_pipeline(tone_wav: Path) -> None:
    done = legato("run", "--pipeline", "analyse", str(tone_wav))
    assert done.returncode == 1
    assert "unknown pipeline 'analyse'" in done.stderr and "did you mean 'analyze'" in done.stderr


def test_check_reports_problems_with_lines(tmp_path: Path) -> None:
    config = tmp_path / "pipelines.toml"
    config.write_text(
        '[pipelines.p.stages.pitch]\ntype = "pitch_yin"\ninputs = ["audio"]\nwindw = 1024\n'
    )
    done = legato("check", str(config))
    assert done.returncode == 1
    assert f"{config}:4: pipelines.p.stages.pitch.windw: unknown param" in done.stderr
    assert "did you mean 'window'?" in done.stderr


def test_check_accepts_valid_config(tmp_path: Path) -> None:
    config = tmp_path / "pipelines.toml"
    config.write_text('[pipelines.p.stages.levels]\ntype = "dynamics"\ninputs = ["audio"]\n')
    done = legato("check", str(config))
    assert done.returncode == 0, done.stderr
    assert "OK, 1 pipeline(s)" in done.stdout


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _empty_wav(path: Path) -> Path:
    sf.write(path, np.zeros((0, 1), np.float32), 44100)
    return path
