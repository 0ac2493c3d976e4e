/* Channel downmix for the stages that analyse one signal, and the finite copy of wire samples. */
#ifndef LEGATO_MIX_H
#define LEGATO_MIX_H

#include "status.h"

/* cffi:begin */
/* out[i] = the mean of frame i's channels in float arithmetic: the channels summed in order,
 * then multiplied by (float)(1.0 / channels), as numpy computes it on float32 columns. n frames
 * of 1..64 interleaved channels; returns n or LG_ERR_ARGUMENT. */
int lg_downmix(const float *in, int n, int channels, float *out);

/* out[i] = the i-th native float32 of the bytes at in (no alignment assumed), NaN and +-Inf
 * replaced by 0.0f: how a wire block of f32le samples becomes what stages see, in one pass.
 * Returns how many samples were replaced, or LG_ERR_ARGUMENT. */
int lg_finite_copy(const void *in, int n, float *out);
/* cffi:end */

#endif
