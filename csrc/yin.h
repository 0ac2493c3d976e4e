/* Streaming YIN fundamental-frequency estimator (de Cheveigné & Kawahara, JASA 2002).
 *
 * Frame k covers samples [k*hop, k*hop + W) of the stream, W the effective window, and is
 * analysed as soon as its last sample arrives. Lags are searched in [min_lag, max_lag] with
 * min_lag = floor(sr / fmax) (at least 2) and max_lag = ceil(sr / fmin); the integration window
 * is w = W - max_lag. W is the requested window unless that leaves w < max_lag / 2 (too few
 * periods of fmin to integrate over), in which case W is the smallest power of two with
 * W - max_lag >= max_lag / 2.
 *
 * Per frame: the difference function d(tau) = sum_{j<w} (x[j] - x[j+tau])^2 for tau <= max_lag,
 * computed as e(0) + e(tau) - 2 r(tau) with the energies e from prefix sums of squares and the
 * cross-correlation r of the frame with its first w samples through the FFT; the cumulative mean
 * normalised difference d'(tau) = d(tau) tau / sum_{1<=j<=tau} d(j), d'(0) = 1; the first lag
 * whose d' is below the threshold, walked down to the local minimum of d' (a dip that is still
 * falling at min_lag belongs to a period below the range and is skipped); if there is none, the
 * lag of the smallest d' in range, reported unvoiced. The period is refined by parabolic
 * interpolation on d rather than d', as the paper does: the normalisation by the running mean
 * skews d' most at short lags, i.e. high f0, and biases the vertex (on sines from 40 Hz to
 * 2 kHz at 44.1 kHz the worst error is 0.06 cents on d, 1.8 cents on d'). confidence = 1 - d'
 * at the dip, clamped to [0, 1]. A frame whose RMS (over W samples, relative to full scale 1.0) is
 * below silence_db is unvoiced with confidence 0. Non-finite input samples are replaced by 0.0
 * and counted. */
#ifndef LEGATO_YIN_H
#define LEGATO_YIN_H

#include <stdint.h>

#include "chain.h"
#include "status.h"

/* cffi:begin */
typedef struct lg_yin lg_yin;

/* NULL if a parameter is invalid: sample_rate <= 0, window < 32, hop < 1 or hop > window,
 * 0 < fmin < fmax, min_lag < max_lag, threshold in (0, 1], non-finite values, or an effective
 * window above 2^20 samples. */
lg_yin *lg_yin_new(double sample_rate, int window, int hop, double fmin, double fmax,
                   double threshold, double silence_db);
void lg_yin_free(lg_yin *y);
/* Back to the state of a fresh estimator (stream position 0, no non-finite samples seen). */
void lg_yin_reset(lg_yin *y);

/* Number of frames one call to lg_yin_process with n more samples completes: pass at least
 * this as cap. */
int lg_yin_max_outputs(const lg_yin *y, int n);

/* Consume in[0..n) and write, for each frame it completes, f0 in Hz (0.0 when unvoiced),
 * confidence in [0, 1] and the voiced flag. Returns the number of frames, LG_ERR_ARGUMENT, or
 * LG_ERR_CAPACITY if cap is too small (nothing consumed then). */
int lg_yin_process(lg_yin *y, const float *in, int n, double *f0, double *confidence,
                   int *voiced, int cap);
/* lg_yin_process as a chain step (chain.h): state an lg_yin, out[] f0, confidence, voiced. */
int lg_yin_step(lg_step *step, const float *in, int n);

/* One frame in isolation (frame[0..W), streaming state untouched): writes d and d' for lags
 * 0..max_lag into diff and cmnd, and returns max_lag + 1 (LG_ERR_ARGUMENT on bad arguments). */
int lg_yin_frame_cmnd(lg_yin *y, const float *frame, double *diff, double *cmnd);

/* Effective window W, lag range and FFT size derived from the parameters. */
int lg_yin_window(const lg_yin *y);
int lg_yin_min_lag(const lg_yin *y);
int lg_yin_max_lag(const lg_yin *y);
int lg_yin_fft_size(const lg_yin *y);
/* Non-finite input samples seen (and replaced by 0.0) since creation or reset. */
int64_t lg_yin_nonfinite(const lg_yin *y);

/* A checkpoint of the stream (checkpoint.h) in buf (cap bytes): its size (buf NULL: only the
 * size), or LG_ERR_CAPACITY. */
long long lg_yin_save(const lg_yin *y, void *buf, long long cap);
/* Restores a checkpoint into an estimator made with the same parameters: LG_OK, or
 * LG_ERR_CORRUPT / LG_ERR_MISMATCH with the estimator unchanged. */
int lg_yin_load(lg_yin *y, const void *buf, long long n);
/* cffi:end */

#endif
