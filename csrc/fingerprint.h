/* 25-dimension track fingerprint (algorithm version 1), streaming over interleaved float frames.
 *
 * Framing. Spectral frames: the mono mix (mean of the channels), the power of two N nearest (in
 * log) to 100 ms (4096 at 44.1 and 48 kHz), periodic Hann window, hop N / 2, frames centred on
 * multiples of the hop from sample 0 up to the last sample, silence before the stream and after
 * its end. The analysis range is the bins with 20 Hz <= f < min(20 kHz, Nyquist); a frame has
 * energy if its Hann-weighted mean square in that range is at least -60 dBFS. Onset envelope:
 * the SuperFlux detection function of csrc/onsets.h on the mono mix (window N / 4, hop N / 8:
 * 23 and 11.6 ms at 44.1 kHz; 24 bands per octave from 30 Hz to 17 kHz, compression 100, level
 * release 10 dB/s: the onsets_flux stage's defaults), over the frames whose persistence span
 * lies within the stream.
 *
 * The dimensions, with unit and range, in output order (index: name):
 *
 * Frequency: shares of the long-term power spectrum (the spectral frames' powers summed, bins
 * by centre frequency) in seven bands; they sum to 1, or are all 0 when the analysis range
 * holds no energy. Bands above the Nyquist frequency hold 0.
 *   0 sub_bass 20-60 Hz, 1 bass 60-250, 2 low_mid 250-500, 3 mid 500-2k, 4 upper_mid 2k-4k,
 *   5 presence 4k-8k, 6 air 8k-20k Hz (fraction, 0..1).
 * Dynamics:
 *   7 loudness_lufs: ITU-R BS.1770-4 gated integrated loudness (csrc/loudness.h); a stream
 *     shorter than one 400 ms gating block gets the ungated K-weighted loudness of all of it.
 *     Floored at -70 LUFS (the absolute gate), so silence is -70.
 *   8 crest_db: 20 log10(sample peak / RMS), the peak the largest absolute sample of any channel,
 *     the RMS over all samples of all channels (dB, >= 0; a sine 3.01, a square wave 0; 0 for
 *     silence).
 *   9 bass_mid_db: 10 log10(energy 20-250 Hz / energy 250 Hz-4 kHz) of the long-term spectrum
 *     (dB, -60..60: +-60 when only one side has energy, 0 when neither has).
 * Temporal:
 *   10 tempo_bpm: the tempo T in 60..200 BPM (0.05 BPM grid) maximising
 *      w(T) * mean_{k=1..4} c(k * 60 / T), c the autocorrelation of the onset envelope after a
 *      first-order 0.5 Hz high-pass, over lags up to 4 s, normalised at lag 0 and linearly
 *      interpolated at a lag in seconds, w a log-normal prior on 120 BPM with a standard
 *      deviation of one octave. 0 when no tempo scores above 0.
 *   11 rhythm_stability: mean_{k=1..4} c(k * 60 / tempo), at most 1: how strongly the onset
 *      envelope repeats one to four beats later over the whole track (0..1; 0 without a tempo).
 *   12 transient_density: onsets per second of stream. An onset is an envelope frame that is the
 *      maximum within +-30 ms, exceeds the mean within +-100 ms by 2 (nepers summed over the
 *      bands), lies at least 30 ms after the previous onset and whose window has a mono mean
 *      square of at least -60 dBFS.
 *   13 silence_ratio: share of the stream's frames lying in 100 ms blocks (from the stream start;
 *      the last, shorter block judged on its own frames) whose mean square over all channels is
 *      below -60 dBFS (0..1).
 * Spectral, each the mean over the spectral frames with energy of a per-frame value from the
 * analysis range (0 without such frames):
 *   14 centroid_hz: power-weighted mean frequency (Hz).
 *   15 rolloff_hz: lowest bin frequency at which the cumulative power reaches 85 % (Hz).
 *   16 flatness: geometric over arithmetic mean of the bin powers, each floored at 1e-10 times
 *      their mean (0..1; a sine ~0, the periodogram of white noise ~0.56).
 * Harmonic, over the same frames (0 without them):
 *   17 harmonic_ratio: the highest local maximum at lags of 1 - 20 ms (pitch 50 - 1000 Hz) of
 *      the frame's autocorrelation (content below fs / 4, DC removed, even lags) normalised at
 *      lag 0 and divided by the Hann window's own (Boersma 1993), at most 1; mean over frames.
 *   18 pitch_stability: mean over pairs of consecutive frames with energy of the Pearson
 *      correlation of their chroma vectors, floored at 0 (0..1).
 *   19 chroma_energy: mean over frames of the chroma vector's concentration
 *      (12 sum p_i^2 - 1) / 11, p the chroma normalised to sum 1 (0 flat .. 1 one pitch class).
 *      Chroma: bin powers from 220 to 3520 Hz summed by nearest equal-tempered pitch class.
 * Variation, over the complete 1 s blocks (ten 100 ms blocks) whose mean square over all
 * channels is at least -60 dBFS:
 *   20 dynamic_range_variation_db: standard deviation of the blocks' crest factors (dB; 0 below
 *      two blocks).
 *   21 loudness_variation_lu: standard deviation of the BS.1770 short-term (3 s) loudness, taken
 *      every 100 ms once 3 s have been fed, over the values passing the EBU Tech 3342 gates
 *      (-70 LUFS absolute, 20 LU below their power mean) (LU; 0 below two values).
 *   22 peak_consistency: mean block sample peak over the largest block sample peak (0..1; 1
 *      without blocks).
 * Stereo, from the first two channels (L, R) over the whole stream:
 *   23 stereo_width: E[S^2] / (E[M^2] + E[S^2]), M = (L + R) / 2, S = (L - R) / 2 (0 identical
 *      channels or mono, 0.5 uncorrelated, 1 opposite).
 *   24 phase_correlation: sum(LR) / sqrt(sum(L^2) sum(R^2)) (-1..1; 1 for mono or silence, 0 when
 *      one channel is silent).
 *
 * The result is available at any time and describes the stream fed so far as if it ended there
 * (the open spectral frame and the peak picker's lookahead are completed on copies). Memory is
 * fixed at creation and does not grow with the stream; the result does not depend on how the
 * stream was split into blocks (bit-identical). Non-finite input samples are read as 0.0 and
 * counted. */
#ifndef LEGATO_FINGERPRINT_H
#define LEGATO_FINGERPRINT_H

#include "status.h"

/* cffi:begin */
typedef struct lg_fingerprint lg_fingerprint;

/* Algorithm version of the values (bumped whenever any value can change) and dimension count. */
int lg_fingerprint_version(void);
int lg_fingerprint_dimensions(void);
/* Name of dimension i (snake_case, unit suffix where it has one), NULL outside 0..24. */
const char *lg_fingerprint_name(int i);

/* 8000..384000 Hz, 1..6 channels (the BS.1770 layouts of csrc/loudness.h); NULL otherwise. */
lg_fingerprint *lg_fingerprint_new(int sample_rate, int channels);
void lg_fingerprint_free(lg_fingerprint *s);
/* Back to the state of a new fingerprint. */
void lg_fingerprint_reset(lg_fingerprint *s);

/* Feeds n interleaved frames; returns n, or LG_ERR_ARGUMENT. */
int lg_fingerprint_process(lg_fingerprint *s, const float *in, int n);

/* Writes the 25 values for the stream fed so far into out; returns LG_OK, or LG_ERR_ARGUMENT.
 * Does not change what later calls compute. */
int lg_fingerprint_result(lg_fingerprint *s, double *out);

long long lg_fingerprint_frames(const lg_fingerprint *s);
/* Non-finite input samples seen so far; each was read as 0.0. */
long long lg_fingerprint_nonfinite(const lg_fingerprint *s);
/* Onsets found so far in the completed onset frames. */
long long lg_fingerprint_onsets(const lg_fingerprint *s);

/* A checkpoint of the stream (checkpoint.h) in buf (cap bytes): its size (buf NULL: only the
 * size), or LG_ERR_CAPACITY. */
long long lg_fingerprint_save(const lg_fingerprint *s, void *buf, long long cap);
/* Restores a checkpoint into a fingerprinter of the same rate and channels: LG_OK, or
 * LG_ERR_CORRUPT / LG_ERR_MISMATCH with it unchanged. */
int lg_fingerprint_load(lg_fingerprint *s, const void *buf, long long n);
/* cffi:end */

#endif
