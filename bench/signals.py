"""Deterministic music-like test signals for benchmarks, with their ground truth.

A benchmark on sine sweeps or white noise flatters some algorithms and punishes others, so these
signals imitate a monophonic instrument line: harmonic notes with varied timbre, attacks and
decays that overlap the next note, vibrato on some notes, rests, a range of dynamics and a
light noise floor. The same seed gives the same notes at any sample rate.
"""

from __future__ import annotations

import attrs
import numpy as np

MIDI_RANGE = (36, 84)
"""C2 (65 Hz) to C6 (1047 Hz): bass to flute, inside the default pitch range (40-2000 Hz)."""
BEAT_S = 0.5
NOTE_BEATS = (0.25, 0.5, 0.5, 0.75, 1.0, 1.0, 1.5, 2.0)
REST_PROBABILITY = 0.15
VIBRATO_PROBABILITY = 0.8
"""Of the sustained (bowed, blown, sung) notes; plucked and struck notes have none."""
HARMONIC_CEILING_HZ = 10000.0
NOISE_DBFS = -60.0
"""RMS of the white noise floor: a quiet home recording."""
PEAK = 0.7


@attrs.frozen
class Note:
    """One note: where it starts and stops being played (samples) and its nominal pitch."""

    onset: int
    off: int
    midi: int

    @property
    def f0(self) -> float:
        return 440.0 * 2.0 ** ((self.midi - 69) / 12.0)


@attrs.frozen
class Music:
    """A test signal: float32 audio, shape (n,) or (n, channels), and its notes."""

    audio: np.ndarray
    sample_rate: int
    notes: tuple[Note, ...]


@attrs.frozen
class _Score:
    onset_s: float
    off_s: float
    midi: int
    level_db: float
    attack_s: float
    decay_s: float
    tilt: float
    odd_only: bool
    vibrato_cents: float
    vibrato_hz: float
    pan: float


def _score(seconds: float, rng: np.random.Generator) -> list[_Score]:
    notes: list[_Score] = []
    t = 0.05
    midi = int(rng.integers(48, 72))
    while t < seconds - 0.2:
        ioi = BEAT_S * float(rng.choice(NOTE_BEATS)) * float(rng.uniform(0.9, 1.1))
        if rng.random() < REST_PROBABILITY:
            t += ioi
            continue
        midi = int(np.clip(midi + rng.integers(-7, 8), *MIDI_RANGE))
        plucked = rng.random() < 0.5
        vibrato = not plucked and rng.random() < VIBRATO_PROBABILITY
        notes.append(
            _Score(
                onset_s=t,
                off_s=min(t + ioi * float(rng.uniform(0.7, 1.0)), seconds),
                midi=midi,
                level_db=float(rng.uniform(-24.0, 0.0)),
                attack_s=float(rng.uniform(0.002, 0.01) if plucked else rng.uniform(0.02, 0.06)),
                decay_s=float(rng.uniform(0.3, 1.2) if plucked else rng.uniform(2.0, 6.0)),
                tilt=float(rng.uniform(0.8, 1.6)),
                odd_only=bool(rng.random() < 0.2),
                vibrato_cents=float(rng.uniform(15.0, 40.0)) if vibrato else 0.0,
                vibrato_hz=float(rng.uniform(4.5, 6.5)),
                pan=float(rng.uniform(-0.6, 0.6)),
            )
        )
        t += ioi
    return notes


def _render(note: _Score, sample_rate: int, seconds: float, phases: np.ndarray) -> np.ndarray:
    """One note from its onset to the end of its release tail."""
    release_s = 0.08
    end_s = min(note.off_s + 5 * release_s, seconds)
    n = round((end_s - note.onset_s) * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = 440.0 * 2.0 ** ((note.midi - 69) / 12.0)
    vibrato_on = np.clip((t - 0.15) / 0.2, 0.0, 1.0)
    cents = note.vibrato_cents * vibrato_on * np.sin(2 * np.pi * note.vibrato_hz * t)
    phase = 2 * np.pi * np.cumsum(f0 * 2.0 ** (cents / 1200.0)) / sample_rate
    wave = np.zeros(n)
    top = min(HARMONIC_CEILING_HZ, 0.45 * sample_rate)
    for k in range(1, int(top // f0) + 1):
        if note.odd_only and k % 2 == 0:
            continue
        wave += k**-note.tilt * np.sin(k * phase + phases[k % len(phases)])
    held = note.off_s - note.onset_s
    env = np.minimum(t / note.attack_s, 1.0) * np.exp(-t / note.decay_s)
    env *= np.where(t < held, 1.0, np.exp(-(t - held) / release_s))
    return wave * env * 10.0 ** (note.level_db / 20.0)


def music(seconds: float, sample_rate: int, channels: int = 1, seed: int = 0) -> Music:
    """A monophonic instrument line of ``seconds`` at ``sample_rate``, normalised to a 0.7
    peak; stereo versions pan each note and have independent noise per channel."""
    rng = np.random.default_rng(seed)
    score = _score(seconds, rng)
    phases = rng.uniform(0.0, 2 * np.pi, 64)
    total = round(seconds * sample_rate)
    out = np.zeros((total, channels))
    for note in score:
        start = round(note.onset_s * sample_rate)
        wave = _render(note, sample_rate, seconds, phases)[: total - start]
        gains = [1.0] if channels == 1 else _pan(note.pan, channels)
        for ch, gain in enumerate(gains):
            out[start : start + len(wave), ch] += gain * wave
    out *= PEAK / max(np.abs(out).max(), 1e-12)
    noise_rms = 10.0 ** (NOISE_DBFS / 20.0)
    out += rng.normal(0.0, noise_rms, out.shape)
    notes = tuple(
        Note(
            onset=round(s.onset_s * sample_rate),
            off=round(s.off_s * sample_rate),
            midi=s.midi,
        )
        for s in score
    )
    audio = out[:, 0] if channels == 1 else out
    return Music(np.ascontiguousarray(audio, dtype=np.float32), sample_rate, notes)


def _pan(pan: float, channels: int) -> list[float]:
    """Equal-power gains for a position in [-1, 1] across the first two channels."""
    angle = (pan + 1.0) * np.pi / 4.0
    return [float(np.cos(angle)), float(np.sin(angle))] + [0.0] * (channels - 2)


def truth_f0(notes: tuple[Note, ...], centres: np.ndarray) -> np.ndarray:
    """The nominal f0 of the note being played at each sample position, 0 where none is
    (a rest or a release tail). Later notes win where notes overlap."""
    f0 = np.zeros(len(centres))
    for note in notes:
        f0[(centres >= note.onset) & (centres < note.off)] = note.f0
    return f0
