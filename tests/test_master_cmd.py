"""`legato master INPUT OUTPUT`, run as a user runs it (a subprocess against a temporary SQLite
database), and a smoke run of bench/master.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

SR = 44100
BENCH = Path(__file__).resolve().parent.parent / "bench"


def legato(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "legato.cli", *args], capture_output=True, text=True
    )


def master(src: Path, out: Path, db: Path, *extra: str) -> dict[str, Any]:
    proc = legato("master", str(src), str(out), "--db", f"sqlite:///{db}", *extra)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


def true_peak_dbtp(audio: np.ndarray) -> float:
    """4× oversampled peak by FFT zero-padding: a plain numpy reference for the limit."""
    n = len(audio)
    spectrum = np.fft.rfft(audio, axis=0)
    up = np.fft.irfft(spectrum, n * 4, axis=0) * 4
    return 20 * np.log10(max(np.abs(up).max(), np.abs(audio).max()))


@pytest.fixture
def loud(tmp_path: Path) -> Path:
    """A clipped, heavily driven chord: loud and with a tiny crest factor."""
    t = np.arange(SR * 6) / SR
    x = sum(np.sin(2 * np.pi * f * t) for f in (110.0, 165.0, 220.0, 330.0))
    rng = np.random.default_rng(1)
    stereo = np.stack([x, np.roll(x, 37)], 1) * 1.2 + 0.05 * rng.standard_normal((len(t), 2))
    path = tmp_path / "loud.wav"
    sf.write(str(path), np.clip(stereo, -1.0, 1.0).astype(np.float32), SR, "FLOAT")
    return path


@pytest.fixture
def quiet(tmp_path: Path) -> Path:
    """Decaying plucks around -40 LUFS."""
    t = np.arange(SR * 6) / SR
    x = 0.02 * np.sin(2 * np.pi * 330 * t) * np.exp(-(t % 0.5) * 6)
    path = tmp_path / "quiet.flac"
    sf.write(str(path), np.stack([x, 0.8 * x], 1).astype(np.float32), SR, "PCM_24")
    return path


def test_loud_input_is_compressed_loud_and_limited(loud: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    report = master(loud, out, tmp_path / "fp.db")
    assert report["class"] == "compressed_loud"
    assert report["fingerprint_tier"] == "generated"
    assert not report["fallback"]
    written, sr = sf.read(str(out), always_2d=True)
    assert sr == SR and written.shape == sf.read(str(loud), always_2d=True)[0].shape
    assert sf.info(str(out)).subtype == "FLOAT"
    ceiling = report["ceiling_dbtp"]
    assert report["output"]["true_peak_dbtp"] <= ceiling + 0.05
    assert true_peak_dbtp(written) <= ceiling + 0.1
    assert report["input"]["true_peak_dbtp"] > ceiling
    assert report["output"]["integrated_lufs"] < report["input"]["integrated_lufs"]


def test_quiet_input_gets_gain(quiet: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.flac"
    report = master(quiet, out, tmp_path / "fp.db")
    assert report["class"] == "quiet"
    assert report["gain_db"] > 0
    assert sf.info(str(out)).format == "FLAC" and sf.info(str(out)).subtype == "PCM_24"
    gained = report["output"]["integrated_lufs"] - report["input"]["integrated_lufs"]
    assert gained == pytest.approx(report["gain_db"], abs=1.0)
    written = sf.read(str(out), always_2d=True)[0]
    assert report["output"]["true_peak_dbtp"] == pytest.approx(true_peak_dbtp(written), abs=0.5)


def test_second_run_uses_cached_fingerprint(quiet: Path, tmp_path: Path) -> None:
    db = tmp_path / "fp.db"
    first = master(quiet, tmp_path / "a.wav", db)
    second = master(quiet, tmp_path / "b.wav", db)
    assert (first["fingerprint_tier"], second["fingerprint_tier"]) == ("generated", "database")
    fresh = master(quiet, tmp_path / "c.wav", tmp_path / "fresh.db")
    assert fresh["fingerprint_tier"] == "sidecar"
    assert first["class"] == second["class"] == fresh["class"]
    assert np.array_equal(sf.read(str(tmp_path / "a.wav"))[0], sf.read(str(tmp_path / "b.wav"))[0])


def test_no_sidecar_skips_the_sidecar_tier(quiet: Path, tmp_path: Path) -> None:
    master(quiet, tmp_path / "a.wav", tmp_path / "one.db", "--no-sidecar")
    assert not list(tmp_path.glob("*.25d"))
    again = master(quiet, tmp_path / "b.wav", tmp_path / "two.db", "--no-sidecar")
    assert again["fingerprint_tier"] == "generated"


def test_bad_inputs(loud: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fp.db'}"
    cases = [
        (str(tmp_path / "missing.wav"), str(tmp_path / "o.wav")),
        (str(loud), str(tmp_path / "o.xyz")),
        (str(loud), str(tmp_path / "no" / "such" / "dir" / "o.wav")),
        (str(tmp_path / "text.wav"), str(tmp_path / "o.wav")),
    ]
    (tmp_path / "text.wav").write_text("not audio")
    for src, out in cases:
        proc = legato("master", src, out, "--db", db)
        assert proc.returncode == 1, (src, out, proc.stderr)
        assert proc.stdout == ""
        assert len(proc.stderr.strip().splitlines()) == 1
        assert proc.stderr.startswith("legato: error:")
    assert not list(tmp_path.glob("o.*")) and not list(tmp_path.glob(".o.*"))


def test_bench_quick_smoke() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "master.py"), "--quick"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["first_chunk_warm"]["fingerprint_tier"] == "database"
    assert report["first_chunk_cold"]["fingerprint_tier"] == "generated"
    assert report["lookup_sidecar"]["tier"] == "sidecar"
    assert report["mastering"]["x_realtime"] > 0
    assert isinstance(report["targets_met"], bool)
