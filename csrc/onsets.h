/* Streaming spectral-flux onset detector (SuperFlux: Böck & Widmer, DAFx 2013).
 *
 * Frame k covers samples [k*hop, k*hop + window): periodic Hann window, FFT, magnitudes
 * normalised by the window sum, a triangular filterbank with bands_per_octave bands between
 * fmin and fmax, log compression ln(1 + compression * band), and the flux
 *   flux[k] = sum_b max(0, L[k][b] - max(L[k-mu][b-1], L[k-mu][b], L[k-mu][b+1]))
 * where mu ("diff frames") is the frame distance at which the Hann windows overlap by half.
 * Frames before the stream start are silent. Non-finite input samples are replaced by 0.0
 * and counted. Peak picking, in frames: flux[j] is the maximum of flux[j-pre_max .. j+post_max],
 * at least mean(flux[j-pre_avg .. j+post_avg]) + delta, the loudest frame of j .. j+latency
 * reaches silence_db (mean square re full scale), and the estimated onset lies at least
 * min_gap samples after the previous one. A decision on frame j needs frame j+latency,
 * latency = max(post_max, post_avg, 1) frames. */
#ifndef LEGATO_ONSETS_H
#define LEGATO_ONSETS_H

#include <stdint.h>

/* cffi:begin */
typedef struct lg_onsets lg_onsets;

/* NULL if any parameter is invalid (hop > window, window < 16, fewer than 3 filter bands
 * between fmin and min(fmax, sample_rate / 2), negative frame counts, ...). */
lg_onsets *lg_onsets_new(int sample_rate, int window, int hop, int bands_per_octave,
                         double fmin, double fmax, double compression, double level_release,
                         int span, int persist, int pre_avg, int post_avg, int pre_max,
                         int post_max, double lambda, double delta, double silence_db,
                         int min_gap);
void lg_onsets_free(lg_onsets *s);
/* Back to the state of a fresh detector (stream position 0). */
void lg_onsets_reset(lg_onsets *s);

/* Largest number of onsets one call to lg_onsets_process with n samples (n < 0: the call to
 * lg_onsets_finish) can report; pass at least this as cap. */
int lg_onsets_max_outputs(const lg_onsets *s, int n);

/* Consume in[0..n) and write the onsets decided by it: estimated onset sample (since stream
 * start) and strength (the flux at the peak frame). Returns the count, -1 on bad arguments,
 * -2 if cap is too small (nothing consumed), -3 after lg_onsets_finish. */
int lg_onsets_process(lg_onsets *s, const float *in, int n, int64_t *onset_sample,
                      double *strength, int cap);

/* End of stream: decide every pending frame with the future context that exists (only
 * complete frames are analysed: zero-padding a cut-off sound would add a false attack).
 * Same return values as process. */
int lg_onsets_finish(lg_onsets *s, int64_t *onset_sample, double *strength, int cap);

/* The onset detection function alone: consume in[0..n) and write the flux of each frame it
 * completes, without peak picking. Returns the count, -1 or -2 as process. A detector is used
 * either through this or through process/finish, not both. */
int lg_onsets_flux(lg_onsets *s, const float *in, int n, double *flux, int cap);

/* Non-finite input samples seen (and replaced by 0.0) since creation or reset. */
int64_t lg_onsets_nonfinite(const lg_onsets *s);
/* Diff frames mu and decision latency in frames, as derived from the parameters. */
int lg_onsets_diff_frames(const lg_onsets *s);
int lg_onsets_latency(const lg_onsets *s);
/* Number of filter bands actually used (duplicates at low frequencies merged). */
int lg_onsets_bands(const lg_onsets *s);
/* Calibrated position of an onset within the frame whose flux peaks on it, in samples. */
int64_t lg_onsets_offset(const lg_onsets *s);
/* cffi:end */

#endif
