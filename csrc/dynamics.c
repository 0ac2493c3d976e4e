#include "dynamics.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

/* Every reported dB value is at least this (JSON has no -inf), at most the float32 ceiling. */
#define DB_FLOOR (-120.0)

struct lg_dynamics {
    lg_levels *levels;
    lg_loudness *loudness;
    lg_truepeak *truepeak;
    int hop;
};

static double db_ceiling(void)
{
    return 20.0 * log10((double)FLT_MAX);
}

double lg_power_db(double power)
{
    double floored = fmax(power, pow(10.0, DB_FLOOR / 10.0));
    return fmin(10.0 * log10(floored), db_ceiling());
}

double lg_amplitude_db(double amplitude)
{
    return lg_power_db(amplitude * amplitude);
}

double lg_finite_db(double db)
{
    if (isnan(db))
        return DB_FLOOR;
    return fmin(fmax(db, DB_FLOOR), db_ceiling());
}

lg_dynamics *lg_dynamics_new(int sample_rate, int channels, int hop)
{
    if (hop < 1)
        return NULL;
    lg_dynamics *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->hop = hop;
    d->levels = lg_levels_new(channels, hop);
    d->loudness = lg_loudness_new(sample_rate, channels, hop);
    d->truepeak = lg_truepeak_new(channels);
    if (!d->levels || !d->loudness || !d->truepeak) {
        lg_dynamics_free(d);
        return NULL;
    }
    return d;
}

void lg_dynamics_free(lg_dynamics *d)
{
    if (!d)
        return;
    lg_levels_free(d->levels);
    lg_loudness_free(d->loudness);
    lg_truepeak_free(d->truepeak);
    free(d);
}

void lg_dynamics_reset(lg_dynamics *d)
{
    if (!d)
        return;
    lg_levels_reset(d->levels);
    lg_loudness_reset(d->loudness);
    lg_truepeak_reset(d->truepeak);
}

int lg_dynamics_max_outputs(const lg_dynamics *d, int n)
{
    if (!d || n < 0)
        return LG_ERR_ARGUMENT;
    long long pending = lg_levels_frames(d->levels) % d->hop;
    return (int)((pending + n) / d->hop);
}

int lg_dynamics_process(lg_dynamics *d, const float *in, int n, double *rms_db, double *peak_db,
                        double *momentary, double *short_term, int cap)
{
    if (!d || n < 0 || (n > 0 && !in))
        return LG_ERR_ARGUMENT;
    int hops = lg_dynamics_max_outputs(d, n);
    if (hops > 0 && (!rms_db || !peak_db || !momentary || !short_term))
        return LG_ERR_ARGUMENT;
    if (hops > cap)
        return LG_ERR_CAPACITY;
    /* The capacity is checked above for all three, so none of them can refuse the block. */
    int levels = lg_levels_process(d->levels, in, n, rms_db, peak_db, cap);
    int reports = lg_loudness_process(d->loudness, in, n, momentary, short_term, cap);
    int fed = lg_truepeak_process(d->truepeak, in, n);
    if (levels != hops || reports != hops || fed != n)
        return LG_ERR_ARGUMENT;
    for (int i = 0; i < hops; i++) {
        rms_db[i] = lg_power_db(rms_db[i]);
        peak_db[i] = lg_amplitude_db(peak_db[i]);
        momentary[i] = lg_finite_db(momentary[i]);
        short_term[i] = lg_finite_db(short_term[i]);
    }
    return hops;
}

lg_levels *lg_dynamics_levels(lg_dynamics *d)
{
    return d ? d->levels : NULL;
}

lg_loudness *lg_dynamics_loudness(lg_dynamics *d)
{
    return d ? d->loudness : NULL;
}

lg_truepeak *lg_dynamics_truepeak(lg_dynamics *d)
{
    return d ? d->truepeak : NULL;
}

#define DYNAMICS_CHECKPOINT 1

static void transfer(lg_ck *ck, void *state)
{
    lg_dynamics *d = state;
    lg_ck_config(ck, &d->hop, sizeof d->hop);
    lg_levels_transfer(ck, d->levels);
    lg_loudness_transfer(ck, d->loudness);
    lg_truepeak_transfer(ck, d->truepeak);
}

LG_CK_FUNCTIONS(lg_dynamics_save, lg_dynamics_load, lg_dynamics, "dynamics", DYNAMICS_CHECKPOINT, transfer)

int lg_dynamics_step(lg_step *step, const float *in, int n)
{
    return lg_dynamics_process(step->state, in, n, step->out[0], step->out[1], step->out[2],
                               step->out[3], step->capacity);
}
