"""Practice scoring: the summary of a session accumulated from its events as they stream by
(constant memory: pitch accuracy, timing consistency, dynamics range and counts), the scores
derived from it and the stored result they make."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

from .. import __version__
from ..stage import Event
from ..storage import ResultRecord

IN_TUNE_CENTS = 20.0
"""A voiced frame within this many cents of an equal-tempered note counts as in tune."""


class PracticeSummary:
    """Feed every event with ``add``; ``result`` gives the summary at any time."""

    def __init__(self, sample_rate: int, target_tempo: float | None = None) -> None:
        self.sample_rate = sample_rate
        self.target_tempo = target_tempo
        self.counts: dict[str, int] = {}
        self.voiced = 0
        self.in_tune = 0
        self.abs_cents = 0.0
        self.last_onset: int | None = None
        self.ioi_n = 0
        self.ioi_mean = 0.0
        self.ioi_m2 = 0.0
        self.stage_summaries: dict[str, dict[str, Any]] = {}

    def add(self, event: Event) -> None:
        kind = event["kind"]
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind == "pitch" and event.get("voiced") and event.get("cents") is not None:
            self.voiced += 1
            cents = abs(float(event["cents"]))
            self.abs_cents += cents
            self.in_tune += cents <= IN_TUNE_CENTS
        elif kind == "onset":
            self._onset(event)
        elif kind == "summary":
            self.stage_summaries[event["stage"]] = {
                k: v for k, v in event.items() if k not in ("stage", "kind")
            }

    def state(self) -> dict[str, Any]:
        """What ``add`` accumulated before the stages' summaries, as JSON-ready data (for a
        session's checkpoint)."""
        return {
            "counts": self.counts,
            "voiced": self.voiced,
            "in_tune": self.in_tune,
            "abs_cents": self.abs_cents,
            "last_onset": self.last_onset,
            "ioi_n": self.ioi_n,
            "ioi_mean": self.ioi_mean,
            "ioi_m2": self.ioi_m2,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from ``state``; KeyError/TypeError/ValueError (and nothing changed) when it
        is not one."""
        counts = {str(k): int(v) for k, v in state["counts"].items()}
        last = state["last_onset"]
        values = {
            "counts": counts,
            "voiced": int(state["voiced"]),
            "in_tune": int(state["in_tune"]),
            "abs_cents": float(state["abs_cents"]),
            "last_onset": None if last is None else int(last),
            "ioi_n": int(state["ioi_n"]),
            "ioi_mean": float(state["ioi_mean"]),
            "ioi_m2": float(state["ioi_m2"]),
        }
        for name, value in values.items():
            setattr(self, name, value)

    def _onset(self, event: Event) -> None:
        if self.last_onset is not None:
            ioi = (event["sample"] - self.last_onset) / self.sample_rate
            self.ioi_n += 1  # Welford's running mean and variance
            delta = ioi - self.ioi_mean
            self.ioi_mean += delta / self.ioi_n
            self.ioi_m2 += delta * (ioi - self.ioi_mean)
        self.last_onset = event["sample"]

    def result(self) -> dict[str, Any]:
        """Scores in 0..1 where higher is better; None where there was nothing to judge."""
        accuracy = self.in_tune / self.voiced if self.voiced else None
        mean_cents = self.abs_cents / self.voiced if self.voiced else None
        cv = None
        if self.ioi_n >= 2 and self.ioi_mean > 0:
            cv = math.sqrt(self.ioi_m2 / (self.ioi_n - 1)) / self.ioi_mean
        # One onset per beat is assumed: the tempo of the played notes, not of the score.
        tempo = 60.0 / self.ioi_mean if self.ioi_n and self.ioi_mean > 0 else None
        deviation = None
        if tempo is not None and self.target_tempo:
            deviation = (tempo - self.target_tempo) / self.target_tempo * 100.0
        dynamics = next((s for s in self.stage_summaries.values() if "integrated_lufs" in s), {})
        return {
            "pitch_accuracy": accuracy,
            "mean_abs_cents": mean_cents,
            "in_tune_cents": IN_TUNE_CENTS,
            "timing_consistency": None if cv is None else max(0.0, 1.0 - cv),
            "ioi_cv": cv,
            "tempo_bpm": tempo,
            "target_tempo_bpm": self.target_tempo,
            "tempo_deviation_pct": deviation,
            "dynamics_range_db": dynamics.get("dynamic_range_db"),
            "integrated_lufs": dynamics.get("integrated_lufs"),
            "counts": {"voiced_frames": self.voiced, "notes": self.counts.get("onset", 0)}
            | {f"{k}_events": v for k, v in sorted(self.counts.items())},
        }


def scores(practice: dict[str, Any]) -> dict[str, float | None]:
    """The result's scores from a practice summary, each in 0..1 (higher is better):

    - ``tempo_stability``: with a target tempo, 1 - |tempo deviation| / target (the played
      tempo is 60 / mean inter-onset interval), floored at 0; without one, the steadiness of
      the player's own tempo, 1 - coefficient of variation of the inter-onset intervals
      (then equal to ``timing_consistency``).
    - ``overall_score``: the mean of pitch accuracy, timing consistency and, when a target
      tempo was given, tempo stability, over those that could be judged; None if none could.
      Dynamics range is reported but not scored: a wider range is not better in itself.
    """
    deviation = practice.get("tempo_deviation_pct")
    cv = practice.get("ioi_cv")
    if deviation is not None:
        tempo_stability: float | None = max(0.0, 1.0 - abs(deviation) / 100.0)
    elif cv is not None:
        tempo_stability = max(0.0, 1.0 - cv)
    else:
        tempo_stability = None
    parts = [practice.get("pitch_accuracy"), practice.get("timing_consistency")]
    if deviation is not None:
        parts.append(tempo_stability)
    judged = [p for p in parts if p is not None]
    return {
        "tempo_stability": tempo_stability,
        "overall_score": sum(judged) / len(judged) if judged else None,
    }


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def result_record(
    session_id: str, summary: dict[str, Any], processing_time_ms: float
) -> ResultRecord:
    """The analysis result of a session from its summary (``practice`` and ``stages``)."""
    practice: dict[str, Any] = summary.get("practice", {})
    counts: dict[str, int] = practice.get("counts", {})
    scored = scores(practice)
    return ResultRecord(
        session_id=session_id,
        pitch_accuracy=_finite(practice.get("pitch_accuracy")),
        timing_consistency=_finite(practice.get("timing_consistency")),
        tempo_stability=_finite(scored["tempo_stability"]),
        dynamics_range_db=_finite(practice.get("dynamics_range_db")),
        overall_score=_finite(scored["overall_score"]),
        notes=int(counts.get("notes", 0)),
        voiced_frames=int(counts.get("voiced_frames", 0)),
        counts=json.dumps(counts, separators=(",", ":")),
        feedback=json.dumps(
            _finite({"practice": practice, "stages": summary.get("stages", {})}),
            allow_nan=False,
            separators=(",", ":"),
        ),
        engine_version=__version__,
        processing_time_ms=processing_time_ms,
        created_at=dt.datetime.now(dt.UTC),
    )
