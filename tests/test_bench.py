"""Smoke test of bench/kernels.py: its --quick run prints one JSON report with every section,
with or without the reference libraries installed. Speed itself is not tested here."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from legato.testing import registry

BENCH = Path(__file__).resolve().parent.parent / "bench" / "kernels.py"
SECTIONS = {"pitch", "onsets", "loudness", "analyze", "machine", "targets_met"}
REFERENCES = {"pitch": ("aubio",), "onsets": ("aubio", "librosa"), "loudness": ("pyloudnorm",)}
OURS = {"pitch": "pitch_yin", "onsets": "onsets_flux", "loudness": "dynamics"}
WITHOUT_REFERENCES = f"""
import runpy, sys
for name in ("aubio", "librosa", "pyloudnorm"):
    sys.modules[name] = None  # makes `import name` fail as if it were not installed
sys.path.insert(0, {str(BENCH.parent)!r})
sys.argv = [{str(BENCH)!r}, "--quick"]
runpy.run_path({str(BENCH)!r}, run_name="__main__")
"""


def run(args: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # the whole of stdout must be one JSON document
    assert isinstance(report, dict)
    assert set(report) == SECTIONS
    return report


def check_ours(report: dict[str, Any]) -> None:
    """Each of our stages that is installed was measured; the others say why not."""
    for section, stage in OURS.items():
        ours = report[section]["ours"]
        if stage in registry().stages:
            assert "error" not in ours, ours
            assert all(v is None or v > 0 for k, v in ours.items() if k.startswith(("us_", "x_")))
        else:
            assert stage in ours["error"]
    if all(stage in registry().stages for stage in OURS.values()):
        assert report["analyze"]["x_realtime_512_blocks"] > 0
    targets = report["targets_met"]
    assert targets and all(v is None or isinstance(v, bool) for v in targets.values())
    assert len(report["machine"]["cores_used"]) == 1


def test_quick_run_without_reference_libraries() -> None:
    report = run(["-c", WITHOUT_REFERENCES])
    check_ours(report)
    for section, names in REFERENCES.items():
        for name in names:
            assert report[section][name] == {
                "error": f"{name} not installed: pip install '.[bench]'"
            }
    assert report["targets_met"]["loudness_within_0.1_lu"] is None
    assert report["pitch"]["ratio_ours_over_aubio"] is None


@pytest.mark.skipif(
    importlib.util.find_spec("aubio") is None or importlib.util.find_spec("pyloudnorm") is None,
    reason="reference libraries not installed (pip install '.[bench]')",
)
def test_quick_run_with_reference_libraries() -> None:
    """librosa is left out: its first call compiles numba code for ~15 s."""
    report = run([str(BENCH), "--quick", "--without", "librosa"])
    check_ours(report)
    assert report["pitch"]["aubio"]["us_per_frame"] > 0
    assert report["onsets"]["aubio"]["onsets"] >= 0
    assert report["loudness"]["pyloudnorm"]["x_realtime"] > 0
    assert report["onsets"]["librosa"] == {"error": "librosa skipped (--without librosa)"}
    if "pitch_yin" in registry().stages:
        assert report["pitch"]["agreement"]["frames_both_voiced"] > 0
