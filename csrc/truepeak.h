/* True-peak meter (ITU-R BS.1770-4 Annex 2 method): 4x oversampling through a polyphase
 * windowed-sinc interpolator, maximum absolute value over all channels. */
#ifndef LEGATO_TRUEPEAK_H
#define LEGATO_TRUEPEAK_H

#include "checkpoint.h"
#include "status.h"

/* cffi:begin */
typedef struct lg_truepeak lg_truepeak;

/* 1..64 interleaved channels; NULL on bad params. */
lg_truepeak *lg_truepeak_new(int channels);
void lg_truepeak_free(lg_truepeak *tp);
void lg_truepeak_reset(lg_truepeak *tp);

/* Feeds n interleaved frames; returns n, or LG_ERR_ARGUMENT. */
int lg_truepeak_process(lg_truepeak *tp, const float *in, int n);

/* Largest absolute value of the 4x-oversampled signal so far, linear (1.0 = 0 dBTP), over all
 * channels or one. The stream is taken as silent before its start and after the last frame fed,
 * so the interpolator's tail over the final frames is included. */
double lg_truepeak_max(const lg_truepeak *tp);
double lg_truepeak_channel_max(const lg_truepeak *tp, int channel);
/* Non-finite input samples seen so far; each was measured as 0.0. */
long long lg_truepeak_nonfinite(const lg_truepeak *tp);

/* A checkpoint of the stream (checkpoint.h) in buf (cap bytes): its size (buf NULL: only the
 * size), or LG_ERR_CAPACITY. */
long long lg_truepeak_save(const lg_truepeak *tp, void *buf, long long cap);
/* Restores a checkpoint into a meter of the same channel count: LG_OK, or LG_ERR_CORRUPT /
 * LG_ERR_MISMATCH with the meter unchanged. */
int lg_truepeak_load(lg_truepeak *tp, const void *buf, long long n);
/* cffi:end */

/* The state's part of a checkpoint (checkpoint.h), for the kernels that embed the meter. */
void lg_truepeak_transfer(lg_ck *ck, lg_truepeak *tp);

#endif
