/* Streaming spectral-flux onset detector, after SuperFlux (Böck & Widmer, DAFx 2013).
 *
 * Frame k covers samples [k*hop, k*hop + window): periodic Hann window, FFT (zero-padded to a
 * power of two), magnitudes normalised by the window sum (a sinusoid of amplitude A peaks at
 * A/2), and a filterbank of triangular bands centred on a log-frequency grid of
 * bands_per_octave steps from fmin to min(fmax, sample_rate / 2) (grid points rounding to the
 * same bin are merged). With B[k][b] the band values:
 *
 *   now[b]  = min(B[j][b] .. B[j + persist][b])            what persists of frame j
 *   ref[b]  = max(B[i][b-1], B[i][b], B[i][b+1]) over frames i = j - mu - 2 .. j - mu
 *   flux[j] = sum_b ln(1 + max(0, now[b] - ref[b]) / (knee + ref[b]))
 *           = sum_b max(0, ln(1 + now[b] / knee) - ln(1 + ref[b] / knee))
 *
 * mu = max(1, round(window / (4 hop))) frames (the frames over which the Hann window falls to
 * half); persist = ceil(window / hop) frames, so spectral splatter, which lasts only while a
 * discontinuity (a note's release, a click) is inside the window, does not count as new sound;
 * knee = level / compression, level the largest band value, held with a release of
 * level_release dB/s and floored at the band value of a sinusoid at silence_db, so the
 * compression is the same at any input gain. Frames before the stream are silent.
 *
 * Peak picking: frame j is an onset if flux[j] is the maximum of flux[j - pre_max ..
 * j + post_max], flux[j] >= median_weight * median(flux[j - pre_avg .. j + post_avg]) + delta,
 * the loudest frame from j to the end of the lookahead has a mean square of at least silence_db
 * (dB re full scale), and the estimated onset lies at least min_gap samples after the previously
 * reported one. The onset sample is (j + p) * hop + offset, p the parabolic sub-frame peak and
 * offset the calibrated position of an onset inside its peak frame (lg_onsets_offset). Frame j
 * is decided once frame j + lg_onsets_latency(s) is complete.
 *
 * Non-finite input samples are read as 0.0 and counted. */
#ifndef LEGATO_ONSETS_H
#define LEGATO_ONSETS_H

#include <stdint.h>

#include "checkpoint.h"
#include "chain.h"
#include "status.h"

/* cffi:begin */
typedef struct lg_onsets lg_onsets;

/* NULL if a parameter is invalid: hop outside 1..window, window outside 16..2^20, fewer than
 * 3 bands in range, compression outside (0, 1e9], silence_db outside [-300, 0], negative frame
 * counts, weights or gaps, ... */
lg_onsets *lg_onsets_new(int sample_rate, int window, int hop, int bands_per_octave,
                         double fmin, double fmax, double compression, double level_release,
                         int pre_avg, int post_avg, int pre_max, int post_max,
                         double median_weight, double delta, double silence_db, int min_gap);
void lg_onsets_free(lg_onsets *s);
/* Back to the state of a fresh detector at stream position 0. */
void lg_onsets_reset(lg_onsets *s);

/* Most onsets one lg_onsets_process call with n samples can report (n < 0: lg_onsets_finish);
 * cap must be at least this. */
int lg_onsets_max_outputs(const lg_onsets *s, int n);

/* Consume in[0..n) and write the onsets it decides: estimated onset sample since stream start
 * and strength (flux[j], nepers summed over bands). Returns the count, LG_ERR_ARGUMENT,
 * LG_ERR_FINISHED after lg_onsets_finish, or LG_ERR_CAPACITY if cap is too small (nothing
 * consumed). */
int lg_onsets_process(lg_onsets *s, const float *in, int n, int64_t *onset_sample,
                      double *strength, int cap);
/* lg_onsets_process as a chain step (chain.h): state an lg_onsets, out[] onset samples and
 * strengths. */
int lg_onsets_step(lg_step *step, const float *in, int n);

/* End of stream: decide the frames still waiting for lookahead, with the future that exists.
 * Frames without their full persistence span are not analysed (a sound starting in the last
 * window + persist * hop samples is not reported). Return values as lg_onsets_process. */
int lg_onsets_finish(lg_onsets *s, int64_t *onset_sample, double *strength, int cap);

/* The onset detection function alone: consume in[0..n) and write flux[j] for every frame j
 * whose persistence span it completes. Same return values as lg_onsets_process. A detector
 * is used either through this or through lg_onsets_process/lg_onsets_finish. */
int lg_onsets_flux(lg_onsets *s, const float *in, int n, double *flux, int cap);

/* Non-finite input samples read as 0.0 since creation or reset. */
int64_t lg_onsets_nonfinite(const lg_onsets *s);

/* A checkpoint of the stream (checkpoint.h) in buf (cap bytes): its size (buf NULL: only the
 * size), or LG_ERR_CAPACITY. */
long long lg_onsets_save(const lg_onsets *s, void *buf, long long cap);
/* Restores a checkpoint into a detector made with the same parameters: LG_OK, or
 * LG_ERR_CORRUPT / LG_ERR_MISMATCH with the detector unchanged. */
int lg_onsets_load(lg_onsets *s, const void *buf, long long n);
/* Derived quantities: mu, frames between a frame's analysis and its decision (persist plus
 * max(post_max, post_avg, 1)), number of bands, and the onset offset in samples. */
int lg_onsets_diff_frames(const lg_onsets *s);
int lg_onsets_latency(const lg_onsets *s);
int lg_onsets_bands(const lg_onsets *s);
int64_t lg_onsets_offset(const lg_onsets *s);
/* cffi:end */

/* The state's part of a checkpoint (checkpoint.h), for the kernels that embed a detector. */
void lg_onsets_transfer(lg_ck *ck, lg_onsets *s);

#endif
