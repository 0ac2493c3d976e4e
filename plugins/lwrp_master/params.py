"""Parameters of the lwrp_master stage, with the reasoning behind each default."""

from __future__ import annotations

import attrs

from legato.stage import param


@attrs.frozen
class MasterParams:
    """The track's measurements (from its fingerprint), the classification thresholds, and the
    settings of the expander, the makeup gain and the true-peak limiter."""

    integrated_lufs: float | None = param(
        None,
        doc=(
            "The whole track's ITU-R BS.1770-4 gated integrated loudness, from its fingerprint. "
            "Unset: the track cannot be classified and gets the fallback chain (limiter only)."
        ),
        unit="LUFS",
        min=-70.0,
        max=10.0,
    )
    crest_db: float | None = param(
        None,
        doc=(
            "The whole track's crest factor, 20 log10(sample peak / RMS), from its fingerprint. "
            "Needed to tell compressed from dynamic loud tracks (unset for a loud track: "
            "fallback chain); with true_peak_dbtp unset, integrated_lufs + crest_db estimates "
            "the track's peak for the static gain."
        ),
        unit="dB",
        min=0.0,
        max=60.0,
    )
    true_peak_dbtp: float | None = param(
        None,
        doc=(
            "The track's true peak, if known: sets the static gain from the peak itself instead "
            "of the estimate integrated_lufs + crest_db (which counts silences in the RMS and "
            "so errs high, on the safe side). Unset with crest_db unset too, a quiet track's "
            "peak is taken as 0 dBTP."
        ),
        unit="dBTP",
        min=-70.0,
        max=20.0,
    )
    loud_lufs: float = param(
        -12.0,
        doc=(
            "Tracks above this integrated loudness are loud. -12 LUFS is 2 LU above the -14 LUFS "
            "that the main streaming services normalise music to: masters above it were made "
            "loud on purpose, the territory of the loudness war."
        ),
        unit="LUFS",
        min=-40.0,
        max=0.0,
    )
    compressed_crest_db: float = param(
        13.0,
        doc=(
            "Loud tracks with a crest factor below this are compressed. Unprocessed acoustic "
            "and rock recordings keep peaks 15-20 dB over their RMS; brickwall-limited masters "
            "sit at 6-10 dB. The expander's amount is (compressed_crest_db - crest_db) / 10, "
            "between 0.1 and 1: the more crushed the track, the more dynamics it restores."
        ),
        unit="dB",
        min=3.0,
        max=30.0,
    )
    target_lufs: float = param(
        -14.0,
        doc=(
            "Loudness a quiet track is raised towards: the -14 LUFS reference of Spotify, "
            "YouTube and Tidal, so a quiet track plays as loud as normalised loud ones. Quiet "
            "tracks are never turned down."
        ),
        unit="LUFS",
        min=-40.0,
        max=0.0,
    )
    max_makeup_db: float = param(
        12.0,
        doc=(
            "Most a quiet track is raised: enough to bring a -26 LUFS classical recording to "
            "the target, little enough not to lift the noise floor of a very quiet recording "
            "into audibility."
        ),
        unit="dB",
        min=0.0,
        max=24.0,
    )
    max_reduction_db: float = param(
        3.0,
        doc=(
            "Most a compressed loud track is turned down: its static gain brings its "
            "(estimated) peak to the ceiling, so the peaks the expander leaves in place pass "
            "the limiter instead of being compressed by it, and the few dB between a "
            "loudness-war master's peaks and the ceiling are all it takes; the loudness itself "
            "is left to playback normalisation."
        ),
        unit="dB",
        min=0.0,
        max=12.0,
    )
    max_limiting_db: float = param(
        2.0,
        doc=(
            "Headroom bound on the makeup gain: the track's peak may be raised at most this far "
            "above the ceiling, for the limiter to take back. 1-2 dB of true-peak limiting on "
            "the loudest transients is inaudible on most material; more would add the very "
            "compression the stage exists to avoid."
        ),
        unit="dB",
        min=0.0,
        max=6.0,
    )
    ceiling_dbtp: float = param(
        -1.0,
        doc=(
            "The output's true peak never exceeds this. -1 dBTP is the maximum EBU R128 and the "
            "AES streaming recommendation (TD1008) allow, leaving room for lossy encoders' "
            "overshoots."
        ),
        unit="dBTP",
        min=-20.0,
        max=0.0,
    )
    lookahead_ms: float = param(
        2.0,
        doc=(
            "The limiter's gain ramps down over this time before a peak (S-shaped, from two "
            "running means). 2 ms keeps the gain change slow next to the interpolator's "
            "0.5 ms span and the ramp's modulation below 500 Hz, yet short enough that the "
            "gain does not audibly dip before a transient. The output lags the input by about "
            "twice this plus 1 ms; the stage realigns it."
        ),
        unit="ms",
        min=0.5,
        max=20.0,
    )
    release_ms: float = param(
        100.0,
        doc=(
            "Time constant of the limiter's recovery (in dB). 100 ms is longer than the period "
            "of any bass note (so the gain does not follow the waveform and distort it) and "
            "recovers between beats (5 time constants in half a second)."
        ),
        unit="ms",
        min=10.0,
        max=2000.0,
    )
    expander_depth_db: float = param(
        6.0,
        doc=(
            "Most the expander turns a passage down (compressed_loud only): its gain is amount "
            "times how far the short-term level falls below the program level, never up. 6 dB "
            "restores the drop after an attack that a limiter's 3-6 dB of gain reduction "
            "filled in, without gating the quiet passages of the track."
        ),
        unit="dB",
        min=0.0,
        max=12.0,
    )
    expander_fast_ms: float = param(
        10.0,
        doc=(
            "Time constant of the expander's short-term level (two cascaded one-pole smoothers "
            "of the mean square): resolves drum attacks and note onsets, the transients "
            "limiting flattened, while smoothing the ripple of a 50 Hz bass to about 0.1 dB, "
            "so the expander does not distort low notes."
        ),
        unit="ms",
        min=1.0,
        max=100.0,
    )
    expander_slow_ms: float = param(
        400.0,
        doc=(
            "Time constant of the expander's program level (one-pole mean square), what the "
            "short-term level is compared with: BS.1770's 400 ms momentary window, the scale "
            "at which loudness, and the loudness war's compression, are judged."
        ),
        unit="ms",
        min=50.0,
        max=5000.0,
    )


def check(params: MasterParams) -> list[tuple[str, str]]:
    """Cross-field constraints."""
    problems = []
    if params.target_lufs > params.loud_lufs:
        problems.append(
            (
                "target_lufs",
                f"must not exceed loud_lufs ({params.loud_lufs} LUFS), got "
                f"{params.target_lufs} LUFS: quiet tracks would be made loud",
            )
        )
    if params.expander_slow_ms <= params.expander_fast_ms:
        problems.append(
            (
                "expander_slow_ms",
                f"must exceed expander_fast_ms ({params.expander_fast_ms} ms), got "
                f"{params.expander_slow_ms} ms",
            )
        )
    return problems
