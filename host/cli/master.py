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
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine import stages
from ..engine.files import BLOCK_FRAMES, AudioFile, open_sink, output_format, replacing
from ..engine.stages import stage_type_named as stage_type
from ..errors import LegatoError
from ..registry import Registry
from ..storage import Storage, StorageUnavailable
from .common import Subparsers, config_option, db_option, open_storage_for, plugin_registry

if TYPE_CHECKING:
    import soundfile as sf

    from ..library.fingerprints import FingerprintResult


def add_parser(subparsers: Subparsers) -> None:
    """Declare `legato master`."""
    p = subparsers.add_parser(
        "master",
        parents=[db_option(), config_option()],
        help="master an audio file through lwrp_master, report as JSON",
        description="Master INPUT into OUTPUT (format by OUTPUT's extension: float WAV/AIFF,"
        " 24-bit FLAC, Vorbis OGG, ...; same rate and channels) with the lwrp_master stage,"
        " using the input's fingerprint from the database, its .25d sidecar, or generated"
        " within --timeout (else the fallback chain). OUTPUT is replaced only when complete."
        " Prints one JSON object: class, fingerprint tier, input and output loudness, true"
        " peak and crest.",
    )
    p.add_argument("input", metavar="INPUT", help="audio file (WAV, FLAC, OGG, ...)")
    p.add_argument("output", metavar="OUTPUT", help="mastered file to write")
    p.add_argument(
        "--no-sidecar",
        action="store_true",
        help="neither read nor write a .25d sidecar file next to the audio",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds to wait for a fingerprint generation (default %(default)g)",
    )
    p.set_defaults(func=command)


MASTER = "lwrp_master"
"""The stage `legato master` masters with, found through the registry by name."""
METER = "dynamics"
"""The stage that measures input and output."""


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
    from ..library.fingerprints import open_fingerprint_cache

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
    master_type = stage_type(registry, MASTER)
    master = stages.make_stage(master_type, fmt, measurements=params)
    meter = stages.make_stage(stage_type(registry, METER), fmt)
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
    plan_kind = "mastering" if master_type.track_plan is None else master_type.track_plan.plan
    plan = next(e for e in events if e["kind"] == plan_kind)
    return plan, _summary(events), _summary(meter.finish())


def measure_file(registry: Registry, path: Path) -> dict[str, Any]:
    """The ``dynamics`` summary of an audio file, streamed."""
    with AudioFile(path) as audio:
        meter = stages.make_stage(stage_type(registry, METER), audio.format)
        for block in audio.blocks(BLOCK_FRAMES):
            meter.process(block)
        return _summary(meter.finish())


def run(args: argparse.Namespace, registry: Registry, storage: Storage | None) -> dict[str, Any]:
    """Master ``args.input`` into ``args.output``; the JSON report (trio and the fingerprint
    cache load only here)."""
    import trio

    from ..library.fingerprints import track_measurements

    started = time.perf_counter()
    source_path, out_path = Path(args.input), Path(args.output)
    if not args.timeout > 0:
        raise LegatoError(f"--timeout must be > 0, got {args.timeout}")
    fmt_name, subtype = output_format(out_path)
    if out_path.is_dir():
        raise LegatoError(f"{out_path}: is a directory")
    with AudioFile(source_path) as source:
        result = trio.run(lookup, source_path, storage, args.timeout, not args.no_sidecar)
        measured = {} if result.fingerprint is None else result.fingerprint.measured()
        params = track_measurements(stage_type(registry, MASTER), measured)
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
            "fingerprint": {k: measured.get(k) for k in ("integrated_lufs", "crest_db")},
            "input": measurement(measured_in),
            "output": measurement(measured_out),
            "limited_samples": summary["limited_samples"],
            "max_gain_reduction_db": summary["max_gain_reduction_db"],
            "nonfinite_samples": summary["nonfinite_samples"],
            "seconds": time.perf_counter() - started,
        }


def command(args: argparse.Namespace) -> int:
    """The command's body: print the report as one JSON object."""
    registry = plugin_registry()
    print(json.dumps(run(args, registry, open_storage_for(args, registry))))
    return 0
