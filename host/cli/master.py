"""`legato master INPUT OUTPUT`: master one audio file through the ``lwrp_master`` stage.

The track's fingerprint comes from the cache tiers (database, sidecar, generation under a
timeout, else none: the stage's fallback chain). The file is then streamed through the stage
in 4096-frame blocks, never whole in memory, and written to a temporary file next to OUTPUT
that replaces OUTPUT only once it is complete, so a failed run never leaves a half-written
file under OUTPUT's name. Input and output are measured with the ``dynamics`` stage; the
output is measured by reading the written file back, so quantisation and lossy encoding are
counted. One JSON object goes to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import soundfile as sf
import trio

from ..config.params import build_params, with_values
from ..engine.files import BLOCK_FRAMES, AudioFile
from ..errors import LegatoError
from ..library.fingerprints import FingerprintResult, open_fingerprint_cache, track_measurements
from ..registry import Registry
from ..stage import Stage, StreamFormat
from ..storage import Storage, StorageUnavailable

FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "FLOAT"),
    "wave": ("WAV", "FLOAT"),
    "w64": ("W64", "FLOAT"),
    "rf64": ("RF64", "FLOAT"),
    "aif": ("AIFF", "FLOAT"),
    "aiff": ("AIFF", "FLOAT"),
    "caf": ("CAF", "FLOAT"),
    "flac": ("FLAC", "PCM_24"),
    "ogg": ("OGG", "VORBIS"),
    "oga": ("OGG", "VORBIS"),
    "opus": ("OGG", "OPUS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
"""Container and sample format by OUTPUT's extension. Float where the container has it, so the
limiter's output is stored exactly (no requantisation that could move the true peak); FLAC has
no float samples, and 24-bit PCM keeps the noise floor ~144 dB down; lossy formats (Vorbis,
Opus, MP3) can raise the true peak above the ceiling, which the reported output peak shows."""


def output_format(path: Path) -> tuple[str, str]:
    """The (format, subtype) soundfile writes ``path`` with, by its extension."""
    ext = path.suffix.lower().lstrip(".")
    chosen = FORMATS.get(ext)
    if chosen is None or chosen[0] not in sf.available_formats():
        names = ", ".join(e for e, (f, _) in FORMATS.items() if f in sf.available_formats())
        raise LegatoError(f"{path}: unknown output extension {path.suffix!r} (use one of {names})")
    if chosen[1] not in sf.available_subtypes(chosen[0]):
        raise LegatoError(f"{path}: this libsndfile cannot write {chosen[1]} {chosen[0]} files")
    return chosen


def make_stage(
    registry: Registry, name: str, fmt: StreamFormat, measurements: Mapping[str, float] = {}
) -> Stage:
    """A stage from its registered type with its default params and those of the track's
    ``measurements`` it accepts, as a playback pipeline builds it."""
    try:
        st = registry.stage_type(name)
    except KeyError:
        raise LegatoError(f"stage type {name!r} is not installed") from None
    return st.create(with_values(st, build_params(st, {}), measurements), fmt)


def measurement(summary: dict[str, Any]) -> dict[str, float | None]:
    """Integrated loudness, true peak and crest factor (sample peak over RMS, as the
    fingerprint defines it) from a ``dynamics`` summary event."""
    peak, rms = summary["peak_db"], summary["rms_db"]
    crest = peak - rms if math.isfinite(peak) and math.isfinite(rms) and rms > -120.0 else None
    return {
        "integrated_lufs": summary["integrated_lufs"],
        "true_peak_dbtp": summary["true_peak_dbtp"],
        "crest_db": crest,
    }


def _summary(events: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in events if e["kind"] == "summary")


async def lookup(
    path: Path, storage: Storage | None, timeout_s: float, sidecars: bool
) -> FingerprintResult:
    """The input's fingerprint through the cache tiers; an unreachable database is skipped."""
    if storage is not None:
        try:
            await storage.connect()
            await storage.migrate()
        except StorageUnavailable:
            storage = None
    try:
        async with open_fingerprint_cache(storage, timeout_s, sidecars=sidecars) as cache:
            return await cache.lookup(path)
    finally:
        if storage is not None:
            await storage.close()


def master_file(
    registry: Registry, source: AudioFile, sink: sf.SoundFile, params: dict[str, float]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Stream ``source`` through the mastering stage into ``sink``, measuring the input on the
    way; returns the ``mastering`` event, the stage's summary and the input's dynamics."""
    fmt = source.format
    master = make_stage(registry, "lwrp_master", fmt, params)
    meter = make_stage(registry, "dynamics", fmt)
    events: list[dict[str, Any]] = []
    written = 0
    for block in source.blocks(BLOCK_FRAMES):
        meter.process(block)
        out, new = master.process_audio(block)  # type: ignore[attr-defined]
        events += new
        sink.write(out)
        written += len(out)
    tail, new = master.finish_audio()  # type: ignore[attr-defined]
    events += new
    sink.write(tail)
    written += len(tail)
    if written != source.frames:
        raise LegatoError(f"mastering wrote {written} frames for {source.frames} input frames")
    plan = next(e for e in events if e["kind"] == "mastering")
    return plan, _summary(events), _summary(meter.finish())


def measure_file(registry: Registry, path: Path) -> dict[str, Any]:
    """The ``dynamics`` summary of an audio file, streamed."""
    with AudioFile(path) as audio:
        meter = make_stage(registry, "dynamics", audio.format)
        for block in audio.blocks(BLOCK_FRAMES):
            meter.process(block)
        return _summary(meter.finish())


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to write to; it replaces ``path`` when the block ends
    without an error and is removed otherwise, so ``path`` is never left half-written. OS and
    libsndfile errors become LegatoError naming ``path``."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(name, 0o666 & ~umask)
    except OSError as exc:
        raise LegatoError(f"{path}: cannot write: {exc.strerror or exc}") from None
    temp = Path(name)
    try:
        yield temp
        os.replace(temp, path)
    except (OSError, sf.LibsndfileError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise LegatoError(f"{path}: cannot write: {reason}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def open_sink(temp: Path, path: Path, sample_rate: int, channels: int) -> sf.SoundFile:
    """``temp`` opened for writing audio in the format ``path``'s extension names."""
    fmt_name, subtype = output_format(path)
    try:
        return sf.SoundFile(
            str(temp),
            "w",
            samplerate=sample_rate,
            channels=channels,
            format=fmt_name,
            subtype=subtype,
        )
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise LegatoError(f"{path}: cannot write: {exc}") from None


def run(args: argparse.Namespace, registry: Registry, storage: Storage | None) -> dict[str, Any]:
    """Master ``args.input`` into ``args.output``; the JSON report."""
    started = time.perf_counter()
    source_path, out_path = Path(args.input), Path(args.output)
    if not args.timeout > 0:
        raise LegatoError(f"--timeout must be > 0, got {args.timeout}")
    fmt_name, subtype = output_format(out_path)
    if out_path.is_dir():
        raise LegatoError(f"{out_path}: is a directory")
    with AudioFile(source_path) as source:
        result = trio.run(lookup, source_path, storage, args.timeout, not args.no_sidecar)
        params = track_measurements(result)
        with replacing(out_path) as temp:
            fmt = source.format
            with open_sink(temp, out_path, fmt.sample_rate, fmt.channels) as sink:
                plan, summary, measured_in = master_file(registry, source, sink, params)
            measured_out = measure_file(registry, temp)
        return {
            "input_path": str(source_path),
            "output_path": str(out_path),
            "format": fmt_name,
            "subtype": subtype,
            "sample_rate": source.format.sample_rate,
            "channels": source.format.channels,
            "frames": source.frames,
            "class": plan["class"],
            "fallback": plan["fallback"],
            "gain_db": plan["gain_db"],
            "expander_amount": plan["expander_amount"],
            "ceiling_dbtp": plan["ceiling_dbtp"],
            "fingerprint_tier": result.tier,
            "fingerprint_reason": result.reason,
            "fingerprint": {k: params.get(k) for k in ("integrated_lufs", "crest_db")},
            "input": measurement(measured_in),
            "output": measurement(measured_out),
            "limited_samples": summary["limited_samples"],
            "max_gain_reduction_db": summary["max_gain_reduction_db"],
            "nonfinite_samples": summary["nonfinite_samples"],
            "seconds": time.perf_counter() - started,
        }


def main(args: argparse.Namespace, registry: Registry, storage: Storage | None) -> int:
    """The command's body: print the report as one JSON object."""
    print(json.dumps(run(args, registry, storage)))
    return 0
