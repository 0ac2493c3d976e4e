/* Loudness-war restraint mastering: a static gain and an optional downward expander, then the
 * lookahead true-peak limiter (limiter.h). The output is the input delayed by the limiter's
 * latency; lg_master_finish returns the delayed tail, so output length equals input length. */
#ifndef LEGATO_MASTER_H
#define LEGATO_MASTER_H

#include "status.h"

/* cffi:begin */
typedef struct lg_master lg_master;

/* 1..64 interleaved channels at sample_rate (1000..1e6 Hz). gain_db (-60..+60) is applied to
 * every sample. The expander's gain in dB is expander_amount (0..1; 0 turns it off) times how far
 * the short-term level is below the program level, at most expander_depth_db (0..24) down and
 * never up; the short-term level is the mean square over the channels smoothed by two cascaded
 * one-poles of time constant expander_fast_ms, the program level by one of expander_slow_ms
 * (> fast). The limiter keeps the 4x-oversampled peak at or below ceiling_dbtp (-60..0)
 * (limiting to 0.05 dB under it), ramps down over lookahead_ms (0.1..50, at least 1.5 frames)
 * and recovers with time constant release_ms (1..10000). NULL on bad params. */
lg_master *lg_master_new(int channels, double sample_rate, double gain_db,
                         double expander_amount, double expander_depth_db,
                         double expander_fast_ms, double expander_slow_ms, double ceiling_dbtp,
                         double lookahead_ms, double release_ms);
void lg_master_free(lg_master *m);
void lg_master_reset(lg_master *m);

/* Frames the output lags the input (LG_ERR_ARGUMENT for NULL). */
int lg_master_latency(const lg_master *m);

/* Feeds n interleaved frames and writes the output frames that became ready (at most n: out
 * must hold cap >= n frames). Non-finite input samples are processed as 0.0 and counted.
 * Returns the frames written, LG_ERR_ARGUMENT, LG_ERR_FINISHED after lg_master_finish, or
 * LG_ERR_CAPACITY if cap < n. */
int lg_master_process(lg_master *m, const float *in, int n, float *out, int cap);

/* End of stream: writes the frames still held (min(frames fed, latency)), as if silence
 * followed. Returns their count, LG_ERR_ARGUMENT, LG_ERR_FINISHED if already finished, or
 * LG_ERR_CAPACITY if cap is smaller than the count (cap >= latency always suffices). */
int lg_master_finish(lg_master *m, float *out, int cap);

/* Output frames so far whose limiter gain was below 1; the largest gain reduction in dB (>= 0);
 * non-finite input samples seen. */
long long lg_master_limited(const lg_master *m);
double lg_master_max_reduction_db(const lg_master *m);
long long lg_master_nonfinite(const lg_master *m);

/* A checkpoint of the stream (checkpoint.h) in buf (cap bytes): its size (buf NULL: only the
 * size), or LG_ERR_CAPACITY. */
long long lg_master_save(const lg_master *m, void *buf, long long cap);
/* Restores a checkpoint into a chain made with the same parameters: LG_OK, or
 * LG_ERR_CORRUPT / LG_ERR_MISMATCH with the chain unchanged. */
int lg_master_load(lg_master *m, const void *buf, long long n);
/* cffi:end */

#endif
