/* Mastering chain: non-finite samples to 0, static gain and downward expander per frame, then
 * the lookahead true-peak limiter. Everything runs frame by frame in a fixed order from state
 * kept here, so the output does not depend on how the stream is split into blocks.
 *
 * The expander compares a short-term level (what a transient or a decay does) with the program
 * level (the running loudness) and turns the gain down where the short-term level falls below
 * it: in the decays and gaps between attacks, which limiting and compression had raised. Its
 * gain in dB is a non-decreasing function of the short-term level, so it only widens level
 * differences (expansion, never compression), and it never turns anything up, so it never
 * pushes a peak into the limiter. Levels are mean squares over the channels, linked so the
 * stereo image does not move.
 */
#include "master.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "limiter.h"

#define MS_CHUNK 256
#define MS_CONTROL 16 /* frames per expander gain update */
#define MS_MAX_CHANNELS 64
#define MS_LEVEL_FLOOR 1e-10 /* -100 dB: the expander holds its gain in digital silence */

struct lg_master {
    int channels;
    double gain;         /* static, linear */
    double amount;       /* expander exponent on the power ratio: amount / 2 */
    double ratio_lo;     /* power-ratio floor giving -depth dB */
    double fast, slow;   /* one-pole coefficients */
    double f1, f2, s1;   /* envelope states: two fast stages, one slow */
    double from, to;     /* expander gain glide of the current control period */
    long long frames_pre;
    lg_limiter *lim;
    double *pre, *post;  /* MS_CHUNK frames each */
    long long frames_in, frames_out, nonfinite;
    int finished;
};

static double pole(double ms, double sample_rate)
{
    return 1.0 - exp(-1.0 / (ms * 1e-3 * sample_rate));
}

void lg_master_reset(lg_master *m)
{
    if (!m)
        return;
    lg_limiter_reset(m->lim);
    m->f1 = m->f2 = m->s1 = MS_LEVEL_FLOOR;
    m->from = m->to = m->gain;
    m->frames_pre = 0;
    m->frames_in = m->frames_out = m->nonfinite = 0;
    m->finished = 0;
}

void lg_master_free(lg_master *m)
{
    if (!m)
        return;
    lg_limiter_free(m->lim);
    free(m->pre);
    free(m->post);
    free(m);
}

lg_master *lg_master_new(int channels, double sample_rate, double gain_db,
                         double expander_amount, double expander_depth_db,
                         double expander_fast_ms, double expander_slow_ms, double ceiling_dbtp,
                         double lookahead_ms, double release_ms)
{
    if (channels < 1 || channels > MS_MAX_CHANNELS || !(sample_rate >= 1000.0) ||
        !(sample_rate <= 1e6) || !(gain_db >= -60.0) || !(gain_db <= 60.0) ||
        !(expander_amount >= 0.0) || !(expander_amount <= 1.0) || !(expander_depth_db >= 0.0) ||
        !(expander_depth_db <= 24.0) || !(expander_fast_ms > 0.0) ||
        !(expander_slow_ms > expander_fast_ms) || !(expander_slow_ms <= 60000.0) ||
        !(ceiling_dbtp >= -60.0) || !(ceiling_dbtp <= 0.0) || !(lookahead_ms >= 0.1) ||
        !(lookahead_ms <= 50.0) || !(release_ms >= 1.0) || !(release_ms <= 10000.0))
        return NULL;
    lg_master *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->channels = channels;
    m->gain = pow(10.0, gain_db / 20.0);
    m->amount = expander_amount * 0.5;
    m->ratio_lo = expander_amount > 0.0 ? pow(10.0, -expander_depth_db / (10.0 * expander_amount))
                                        : 1.0;
    m->fast = pole(expander_fast_ms, sample_rate);
    m->slow = pole(expander_slow_ms, sample_rate);
    m->lim = lg_limiter_new(channels, sample_rate, pow(10.0, ceiling_dbtp / 20.0),
                            lookahead_ms, release_ms);
    m->pre = malloc(sizeof(double) * MS_CHUNK * (size_t)channels);
    m->post = malloc(sizeof(double) * MS_CHUNK * (size_t)channels);
    if (!m->lim || !m->pre || !m->post) {
        lg_master_free(m);
        return NULL;
    }
    lg_master_reset(m);
    return m;
}

int lg_master_latency(const lg_master *m)
{
    return m ? lg_limiter_latency(m->lim) : LG_ERR_ARGUMENT;
}

/* Updates the envelopes with a frame of mean square p; every MS_CONTROL frames (counted from
 * the start of the stream) sets the expander gain the next MS_CONTROL frames glide to. The
 * envelopes move over milliseconds, so the gain is computed at this control rate and
 * interpolated linearly, which costs a fraction of a log and an exp per frame. */
static inline double expander_gain(lg_master *m, double p)
{
    m->f1 += m->fast * (p - m->f1);
    m->f2 += m->fast * (m->f1 - m->f2);
    m->s1 += m->slow * (p - m->s1);
    const int phase = (int)(m->frames_pre % MS_CONTROL);
    m->frames_pre++;
    if (phase == 0) {
        double ratio = (m->f2 + MS_LEVEL_FLOOR) / (m->s1 + MS_LEVEL_FLOOR);
        ratio = ratio < m->ratio_lo ? m->ratio_lo : ratio > 1.0 ? 1.0 : ratio;
        m->from = m->to;
        m->to = m->gain * exp(m->amount * log(ratio));
    }
    return m->from + (m->to - m->from) * ((double)phase / MS_CONTROL);
}

/* Sanitises and pre-gains len frames into m->pre. */
static void pre_gain(lg_master *m, const float *in, int len)
{
    const int ch = m->channels;
    const size_t count = (size_t)len * (size_t)ch;
    long long bad = 0;
    for (size_t i = 0; i < count; i++) {
        float v = in[i];
        int ok = fabsf(v) <= FLT_MAX;
        m->pre[i] = ok ? (double)v : 0.0;
        bad += !ok;
    }
    m->nonfinite += bad;
    if (m->amount == 0.0) {
        if (m->gain != 1.0)
            for (size_t i = 0; i < count; i++)
                m->pre[i] *= m->gain;
        return;
    }
    for (int f = 0; f < len; f++) {
        double *x = m->pre + (size_t)f * (size_t)ch;
        double power = 0.0;
        for (int c = 0; c < ch; c++)
            power += x[c] * x[c];
        double g = expander_gain(m, power / ch);
        for (int c = 0; c < ch; c++)
            x[c] *= g;
    }
}

static void store(lg_master *m, int count, float *out)
{
    if (count <= 0)
        return;
    const size_t len = (size_t)count * (size_t)m->channels;
    for (size_t i = 0; i < len; i++)
        out[i] = (float)m->post[i];
    m->frames_out += count;
}

int lg_master_process(lg_master *m, const float *in, int n, float *out, int cap)
{
    if (!m || n < 0 || (n > 0 && (!in || !out)))
        return LG_ERR_ARGUMENT;
    if (m->finished)
        return LG_ERR_FINISHED;
    if (cap < n)
        return LG_ERR_CAPACITY;
    const int ch = m->channels;
    int written = 0;
    for (int off = 0; off < n; off += MS_CHUNK) {
        int len = n - off < MS_CHUNK ? n - off : MS_CHUNK;
        pre_gain(m, in + (size_t)off * (size_t)ch, len);
        int count = lg_limiter_process(m->lim, m->pre, len, m->post);
        store(m, count, out + (size_t)written * (size_t)ch);
        written += count;
    }
    m->frames_in += n;
    return written;
}

int lg_master_finish(lg_master *m, float *out, int cap)
{
    if (!m || cap < 0)
        return LG_ERR_ARGUMENT;
    const long long owed = m->frames_in - m->frames_out;
    if (owed > 0 && !out)
        return LG_ERR_ARGUMENT;
    if (m->finished)
        return LG_ERR_FINISHED;
    if (cap < owed)
        return LG_ERR_CAPACITY;
    const int ch = m->channels;
    for (int i = 0; i < MS_CHUNK * ch; i++)
        m->pre[i] = 0.0;
    int written = 0;
    for (int left = lg_limiter_latency(m->lim); left > 0; left -= MS_CHUNK) {
        int len = left < MS_CHUNK ? left : MS_CHUNK;
        int count = lg_limiter_process(m->lim, m->pre, len, m->post);
        store(m, count, out + (size_t)written * (size_t)ch);
        written += count;
    }
    m->finished = 1;
    return written;
}

long long lg_master_limited(const lg_master *m)
{
    return m ? lg_limiter_limited(m->lim) : 0;
}

double lg_master_max_reduction_db(const lg_master *m)
{
    if (!m)
        return NAN;
    double db = -20.0 * log10(lg_limiter_min_gain(m->lim));
    return db > 0.0 ? db : 0.0;
}

long long lg_master_nonfinite(const lg_master *m)
{
    return m ? m->nonfinite : 0;
}

#define MASTER_CHECKPOINT 1

static void transfer(lg_ck *ck, void *state)
{
    lg_master *m = state;
    lg_ck_config(ck, &m->channels, sizeof m->channels);
    const double config[] = {m->gain, m->amount, m->ratio_lo, m->fast, m->slow};
    lg_ck_config(ck, config, sizeof config);
    int finished = m->finished;
    lg_ck_value(ck, &finished, sizeof finished);
    if (finished != 0 && finished != 1)
        lg_ck_refuse(ck);
    double *envelope[] = {&m->f1, &m->f2, &m->s1, &m->from, &m->to};
    for (size_t k = 0; k < sizeof envelope / sizeof envelope[0]; k++)
        lg_ck_state(ck, envelope[k], sizeof(double));
    lg_ck_state(ck, &m->frames_pre, sizeof m->frames_pre);
    lg_ck_state(ck, &m->frames_in, sizeof m->frames_in);
    lg_ck_state(ck, &m->frames_out, sizeof m->frames_out);
    lg_ck_state(ck, &m->nonfinite, sizeof m->nonfinite);
    lg_limiter_transfer(ck, m->lim);
    if (lg_ck_restoring(ck))
        m->finished = finished;
}

LG_CK_FUNCTIONS(lg_master_save, lg_master_load, lg_master, "master", MASTER_CHECKPOINT, transfer)
