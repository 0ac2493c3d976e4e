/* ITU-R BS.1770-4 loudness meter with the EBU Tech 3341 / 3342 measures (momentary, short-term,
 * integrated, loudness range and their maxima), streaming over interleaved float frames. */
#ifndef LEGATO_LOUDNESS_H
#define LEGATO_LOUDNESS_H

#include "checkpoint.h"
#include "status.h"

/* cffi:begin */
typedef struct lg_loudness lg_loudness;

/* K-weighting at any rate: the BS.1770 48 kHz biquads mapped back to their analogue prototypes
 * and re-discretised with the bilinear transform. b and a are {b0, b1, b2} and {1, a1, a2} for
 * the high-shelf pre-filter and the RLB high-pass. Returns LG_OK, or LG_ERR_ARGUMENT for a rate
 * outside 8000..384000 Hz or a NULL array. */
int lg_kweighting_design(double sample_rate, double *shelf_b, double *shelf_a, double *hp_b,
                         double *hp_a);

/* channels 1..5 weigh L, R, C, Ls, Rs as 1, 1, 1, 1.41, 1.41; 6 is 5.1 (L R C LFE Ls Rs) with the
 * LFE ignored. report_hop > 0 makes process() report the momentary and short-term loudness of the
 * windows ending at every multiple of report_hop frames; 0 reports nothing. NULL on bad params. */
lg_loudness *lg_loudness_new(int sample_rate, int channels, int report_hop);
void lg_loudness_free(lg_loudness *m);
void lg_loudness_reset(lg_loudness *m);

/* Feeds n interleaved frames. Writes one LUFS value per report into momentary[] and
 * short_term[] (-inf for digital silence) and returns the number of reports, LG_ERR_ARGUMENT,
 * or LG_ERR_CAPACITY if cap is smaller than the reports n frames can complete (nothing is
 * consumed then). */
int lg_loudness_process(lg_loudness *m, const float *in, int n, double *momentary,
                        double *short_term, int cap);

/* Current values for the windows ending at the last frame fed (LUFS, -inf for silence). */
double lg_loudness_momentary(const lg_loudness *m);
double lg_loudness_short_term(const lg_loudness *m);
/* Maxima over every window position so far (every frame), LUFS. */
double lg_loudness_max_momentary(const lg_loudness *m);
double lg_loudness_max_short_term(const lg_loudness *m);
/* Gated integrated loudness (LUFS) and loudness range (LU); NaN while no block passes the gates. */
double lg_loudness_integrated(const lg_loudness *m);
double lg_loudness_range(const lg_loudness *m);
long long lg_loudness_frames(const lg_loudness *m);
/* Non-finite input samples seen so far; each was measured as 0.0. */
long long lg_loudness_nonfinite(const lg_loudness *m);
/* cffi:end */

/* The state's part of a checkpoint (checkpoint.h), for the kernels that embed the meter. */
void lg_loudness_transfer(lg_ck *ck, lg_loudness *m);

#endif
