/* Lookahead true-peak limiter: the gain is computed from the 4x-oversampled peak (the same
 * interpolator as the true-peak meter, truepeak.c) and is already down around every
 * interpolated point before it is reached, so the output's true peak stays under the ceiling.
 * Not exposed to Python: the mastering chain (master.h) wraps it. */
#ifndef LEGATO_LIMITER_H
#define LEGATO_LIMITER_H

#include "checkpoint.h"
#include "status.h"

typedef struct lg_limiter lg_limiter;

/* 1..64 interleaved channels at 1000..1e6 Hz; the true peak is kept at or below ceiling
 * (linear, 0 < ceiling <= 1) less 0.001 dB for rounding; the gain ramps down over lookahead_ms
 * (at least 1.5 frames, at most 1000 ms) and recovers with time constant release_ms
 * (0 < release_ms <= 60000). NULL on bad params. */
lg_limiter *lg_limiter_new(int channels, double sample_rate, double ceiling, double lookahead_ms,
                           double release_ms);
void lg_limiter_free(lg_limiter *lim);
void lg_limiter_reset(lg_limiter *lim);

/* Frames between a frame going in and the same frame coming out (LG_ERR_ARGUMENT for NULL). */
int lg_limiter_latency(const lg_limiter *lim);

/* Feeds n interleaved finite frames and writes the output frames that became ready (at most n),
 * each the input frame `latency` frames earlier times its gain. Frames before the stream count
 * as silence; to end a stream, feed `latency` frames of silence. Returns the count written or
 * LG_ERR_ARGUMENT. */
int lg_limiter_process(lg_limiter *lim, const double *in, int n, double *out);

/* Output frames written so far with a gain below 1, and the smallest gain (1.0 if none). */
long long lg_limiter_limited(const lg_limiter *lim);
double lg_limiter_min_gain(const lg_limiter *lim);

/* The state's part of a checkpoint (checkpoint.h), for the kernels that embed the limiter. */
void lg_limiter_transfer(lg_ck *ck, lg_limiter *lim);

#endif
