/* Sample levels per hop: mean square (power over samples and channels) and sample peak. */
#ifndef LEGATO_LEVELS_H
#define LEGATO_LEVELS_H

#include "checkpoint.h"
#include "status.h"

/* cffi:begin */
typedef struct lg_levels lg_levels;

/* 1..64 interleaved channels, hop >= 1 frames; NULL on bad params. */
lg_levels *lg_levels_new(int channels, int hop);
void lg_levels_free(lg_levels *lv);
void lg_levels_reset(lg_levels *lv);

/* Feeds n interleaved frames and writes, for every hop completed, its mean square and its peak
 * absolute sample. Returns the number of hops, LG_ERR_ARGUMENT, or LG_ERR_CAPACITY if cap is
 * smaller than the hops n frames can complete (nothing is consumed then). */
int lg_levels_process(lg_levels *lv, const float *in, int n, double *mean_square, double *peak,
                      int cap);

/* The hop in progress: writes its mean square and peak and returns its length in frames (0 when
 * no frame is pending, and nothing is written). The state is unchanged. */
int lg_levels_partial(const lg_levels *lv, double *mean_square, double *peak);

/* Over every frame fed so far (0.0 before any). */
double lg_levels_mean_square(const lg_levels *lv);
double lg_levels_peak(const lg_levels *lv);
long long lg_levels_frames(const lg_levels *lv);
/* Non-finite input samples seen so far; each was measured as 0.0. */
long long lg_levels_nonfinite(const lg_levels *lv);
/* cffi:end */

/* The state's part of a checkpoint (checkpoint.h), for the kernels that embed level meters. */
void lg_levels_transfer(lg_ck *ck, lg_levels *lv);

#endif
