/* The dynamics stage's meters in one call per block: per-hop levels (levels.c) and loudness
 * (loudness.c) as reportable decibels, and the true peak (truepeak.c), over interleaved float
 * frames. One C call per block keeps the stage's Python to building its events. */
#ifndef LEGATO_DYNAMICS_H
#define LEGATO_DYNAMICS_H

#include "levels.h"
#include "loudness.h"
#include "chain.h"
#include "status.h"
#include "truepeak.h"

/* cffi:begin */
typedef struct lg_dynamics lg_dynamics;

/* channels 1..6 (the loudness meter's layouts), hop >= 1 frames; NULL on bad params. */
lg_dynamics *lg_dynamics_new(int sample_rate, int channels, int hop);
void lg_dynamics_free(lg_dynamics *d);
void lg_dynamics_reset(lg_dynamics *d);

/* Hops that n more frames complete: the capacity process() needs. */
int lg_dynamics_max_outputs(const lg_dynamics *d, int n);

/* Feeds n interleaved frames to all three meters and writes, for every hop completed, its RMS
 * and sample peak in dBFS and the momentary and short-term loudness of the windows ending at it
 * in LUFS, each clamped to [-120, 20 log10(FLT_MAX)] (silence and NaN read -120). Returns the
 * number of hops, LG_ERR_ARGUMENT, or LG_ERR_CAPACITY (nothing is consumed then). */
int lg_dynamics_process(lg_dynamics *d, const float *in, int n, double *rms_db, double *peak_db,
                        double *momentary, double *short_term, int cap);
/* lg_dynamics_process as a chain step (chain.h; interleaved frames): state an lg_dynamics,
 * out[] rms, peak, momentary and short-term. */
int lg_dynamics_step(lg_step *step, const float *in, int n);

/* The meters themselves, for their whole-stream measures (owned by d). */
lg_levels *lg_dynamics_levels(lg_dynamics *d);
lg_loudness *lg_dynamics_loudness(lg_dynamics *d);
lg_truepeak *lg_dynamics_truepeak(lg_dynamics *d);

/* dB of a power (mean square) and of an amplitude, clamped as process() does. */
double lg_power_db(double power);
double lg_amplitude_db(double amplitude);
/* A loudness or level in dB clamped as process() does (NaN reads -120). */
double lg_finite_db(double db);

/* A checkpoint of the stream (checkpoint.h) in buf (cap bytes): its size (buf NULL: only the
 * size), or LG_ERR_CAPACITY. */
long long lg_dynamics_save(const lg_dynamics *d, void *buf, long long cap);
/* Restores a checkpoint into meters made with the same parameters: LG_OK, or
 * LG_ERR_CORRUPT / LG_ERR_MISMATCH with the meters unchanged. */
int lg_dynamics_load(lg_dynamics *d, const void *buf, long long n);
/* cffi:end */

#endif
