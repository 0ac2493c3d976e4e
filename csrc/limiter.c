/* Lookahead true-peak limiter in two stages: a main stage that does the limiting and a trim
 * stage that removes what the main stage's gain changes leave over the ceiling.
 *
 * Detection. For every frame j a stage finds the peak p_j: the largest absolute value, over
 * the channels, of the sample x_j and of the three points interpolated at j + 1/4, 2/4, 3/4 by
 * the true-peak meter's filter (interp4.h: Kaiser-windowed sinc, beta 6, LM_SIDE input
 * samples a side, each phase normalised to unit gain at DC; designed here in double). Frames
 * before the stream are silence, as for the meter, so the points just before it count too.
 *
 * Gain. Log gains are held in fixed point (units of 2^-30 neper), so the smoothing is exact
 * integer arithmetic: no drift over long streams, and the same result for any split of the
 * stream. Frame j requires q_j = floor(ln(min(1, ceiling / p_j))). h_i = min q_j over j in
 * [i - LM_SIDE, i + LM_SIDE + A - 1] (A = the ramp length; kept as a sliding maximum of the
 * peaks), e_i = min(h_i, e_{i-1} relaxed towards 0 by the release factor, and set to 0 once
 * within LM_SNAP_DB of it so that the gain returns exactly to 1), and the applied log gain f
 * is e smoothed by two running means of lengths L1 and L2 (L1 + L2 - 1 = A), rounded down:
 * each step down becomes an S-shaped ramp of A frames that ends LM_SIDE frames before the
 * peak. Every value entering the means for frame m is at most q_k for every k within
 * LM_SIDE of m, so g_m = exp(f_m) <= ceiling / p_k there: the sample and points after frame m,
 * which depend on the frames [m - LM_SIDE + 1, m + LM_SIDE], would each be at most the ceiling
 * if the gain were constant over those frames. A stage's output lags its input by
 * 2 LM_SIDE + A - 1 frames.
 *
 * Trim. The gain does change across a span, so a point y(t) = sum_k h(t - k) g_k x_k of the
 * main stage's output differs from g_m x(t) by sum_k h(t - k) (g_k - g_m) x_k. Since
 * g_m |x_k| <= ceiling1 over the span, |y(t)| <= ceiling1 (1 + G (exp(R) - 1)), where G bounds
 * the filter's absolute gain and R is the range of the main stage's log gain over the span.
 * The trim stage runs the same algorithm on the main stage's output towards a ceiling a little
 * above ceiling1 (ceiling2), interpolating only the frames where that bound does not already
 * keep the points under ceiling2. Its own gain changes are as small as the main stage's excess
 * (hundredths of a dB at most), so the error it leaves is a small fraction of that; ceiling2
 * sits LM_ROUNDING_DB below the caller's ceiling, which covers that and the rounding of the
 * output to float32 and of a float meter (about 1e-5 dB). The tests measure the output with the
 * project's meter on adversarial material.
 *
 * Speed. A point can only exceed a ceiling if a sample of its span exceeds ceiling / G; quieter
 * spans are not interpolated. log and exp run only when the held peak or the gain changes, exp
 * from tables of its 10-bit digits.
 */
#include "limiter.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "interp4.h"

#define LM_SIDE LG_INTERP4_SIDE
#define LM_TAPS (2 * LM_SIDE)
#define LM_MAX_CHANNELS 64
#define LM_UNIT_PER_NEPER 1073741824.0 /* 2^30 */
#define LM_CHUNK 256
#define LM_TABLE 1024
#define LM_ROUNDING_DB 0.001 /* the trim stage's ceiling is this far below the caller's */
#define LM_TRIM_DB 0.05      /* and the main stage's this far below the trim stage's */
#define LM_SNAP_DB 0.01      /* a release this close to 0 dB ends there */

typedef struct {
    double ceiling;
    double quiet;    /* spans whose samples stay at or below this cannot reach the ceiling */
    int64_t settled; /* trim: largest range of the main log gain over a span that keeps its
                      * points under this ceiling; -1 for the main stage */
    double *x;       /* per channel 2 * ring: frame k at k % ring and again ring further on */
    int64_t *fin;    /* trim: the main log gain of frame k at k % ring */
    long long pushed;
    long long loud;  /* the last frame with a sample above `quiet` */
    long long moved; /* trim: the last frame whose main log gain differs from the frame before */
    double *dq_peak; /* sliding maximum: descending peaks and their frames, a ring */
    long long *dq_idx;
    int dq_head, dq_len;
    double held;     /* the held peak and its required log gain h */
    int64_t h, e;
    int64_t *e_hist, *b_hist; /* the last L1 values of e and L2 of the first mean */
    int e_pos, b_pos;
    int64_t e_sum, b_sum;
    int64_t hi_digit; /* exp(-hi_digit 2^-10), cached */
    double hi_exp;
    int64_t last_g;   /* the last log gain applied and its linear value */
    double last_gain;
} lm_stage;

struct lg_limiter {
    int channels;
    int box1, box2;
    double inv1, inv2;
    int window;  /* frames over which a peak is held */
    int latency; /* of one stage */
    int ring;    /* frames per ring (a power of two): a chunk is written ahead of the frames
                  * leaving, latency frames older */
    double release;
    int64_t snap;
    double cs[LM_SIDE], cd[LM_SIDE], c2[LM_SIDE];
    double exp_lo[LM_TABLE], exp_mid[LM_TABLE]; /* exp(-k 2^-30), exp(-k 2^-20) */
    lm_stage main, trim;
    double *mid;      /* a chunk of main-stage output and its log gains */
    int64_t *mid_gain;
    long long limited;
    int64_t lowest;
};

/* The meter's interpolator in double; returns a bound on its absolute gain. */
static double design(lg_limiter *lim)
{
    return lg_interp4_design(lim->cs, lim->cd, lim->c2) * (1.0 + 1e-9);
}

static void stage_reset(const lg_limiter *lim, lm_stage *st)
{
    memset(st->x, 0, sizeof(double) * 2 * (size_t)lim->ring * (size_t)lim->channels);
    if (st->fin)
        memset(st->fin, 0, sizeof(int64_t) * (size_t)lim->ring);
    memset(st->e_hist, 0, sizeof(int64_t) * (size_t)lim->box1);
    memset(st->b_hist, 0, sizeof(int64_t) * (size_t)lim->box2);
    st->pushed = 0;
    st->loud = st->moved = -(long long)LM_TAPS;
    st->dq_head = st->dq_len = 0;
    st->held = 0.0;
    st->h = st->e = 0;
    st->e_pos = st->b_pos = 0;
    st->e_sum = st->b_sum = 0;
    st->hi_digit = 0;
    st->hi_exp = 1.0;
    st->last_g = 0;
    st->last_gain = 1.0;
}

static void stage_free(lm_stage *st)
{
    free(st->x);
    free(st->fin);
    free(st->dq_peak);
    free(st->dq_idx);
    free(st->e_hist);
    free(st->b_hist);
}

static int stage_alloc(const lg_limiter *lim, lm_stage *st, int trim)
{
    st->x = malloc(sizeof(double) * 2 * (size_t)lim->ring * (size_t)lim->channels);
    st->fin = trim ? malloc(sizeof(int64_t) * (size_t)lim->ring) : NULL;
    st->dq_peak = malloc(sizeof(double) * (size_t)(lim->window + 1));
    st->dq_idx = malloc(sizeof(long long) * (size_t)(lim->window + 1));
    st->e_hist = malloc(sizeof(int64_t) * (size_t)lim->box1);
    st->b_hist = malloc(sizeof(int64_t) * (size_t)lim->box2);
    return st->x && (st->fin || !trim) && st->dq_peak && st->dq_idx && st->e_hist && st->b_hist;
}

void lg_limiter_reset(lg_limiter *lim)
{
    if (!lim)
        return;
    stage_reset(lim, &lim->main);
    stage_reset(lim, &lim->trim);
    lim->limited = 0;
    lim->lowest = 0;
}

void lg_limiter_free(lg_limiter *lim)
{
    if (!lim)
        return;
    stage_free(&lim->main);
    stage_free(&lim->trim);
    free(lim->mid);
    free(lim->mid_gain);
    free(lim);
}

lg_limiter *lg_limiter_new(int channels, double sample_rate, double ceiling, double lookahead_ms,
                           double release_ms)
{
    if (channels < 1 || channels > LM_MAX_CHANNELS || !(sample_rate >= 1000.0) ||
        !(sample_rate <= 1e6) || !(ceiling > 0.0) || !(ceiling <= 1.0) ||
        !(lookahead_ms > 0.0) || !(lookahead_ms <= 1000.0) || !(release_ms > 0.0) ||
        !(release_ms <= 60000.0))
        return NULL;
    double ramp_frames = lookahead_ms * 1e-3 * sample_rate;
    if (!(ramp_frames >= 1.5) || !(ramp_frames <= 1e6))
        return NULL;
    int ramp = (int)lround(ramp_frames);
    lg_limiter *lim = calloc(1, sizeof *lim);
    if (!lim)
        return NULL;
    lim->channels = channels;
    lim->box1 = (ramp + 1) / 2;
    lim->box2 = ramp + 1 - lim->box1;
    lim->inv1 = 1.0 / lim->box1;
    lim->inv2 = 1.0 / lim->box2;
    lim->window = 2 * LM_SIDE + ramp;
    lim->latency = 2 * LM_SIDE + ramp - 1;
    lim->release = exp(-1.0 / (release_ms * 1e-3 * sample_rate));
    lim->snap = (int64_t)(LM_SNAP_DB * log(10.0) / 20.0 * LM_UNIT_PER_NEPER);
    const double gain = design(lim);
    lim->trim.ceiling = ceiling * pow(10.0, -LM_ROUNDING_DB / 20.0);
    lim->trim.quiet = ceiling / gain;
    lim->main.ceiling = ceiling * pow(10.0, -LM_TRIM_DB / 20.0);
    lim->main.quiet = lim->main.ceiling / gain;
    lim->main.settled = -1;
    /* ceiling1 (1 + G (exp(R) - 1)) <= ceiling2 */
    double room = log1p((lim->trim.ceiling / lim->main.ceiling - 1.0) / gain);
    lim->trim.settled = (int64_t)floor(room * LM_UNIT_PER_NEPER);
    for (int k = 0; k < LM_TABLE; k++) {
        lim->exp_lo[k] = exp(-(double)k / LM_UNIT_PER_NEPER);
        lim->exp_mid[k] = exp(-(double)k * LM_TABLE / LM_UNIT_PER_NEPER);
    }
    lim->ring = 1;
    while (lim->ring < lim->latency + LM_CHUNK + 1)
        lim->ring *= 2;
    lim->mid = malloc(sizeof(double) * LM_CHUNK * (size_t)channels);
    lim->mid_gain = malloc(sizeof(int64_t) * LM_CHUNK);
    if (!stage_alloc(lim, &lim->main, 0) || !stage_alloc(lim, &lim->trim, 1) || !lim->mid ||
        !lim->mid_gain) {
        lg_limiter_free(lim);
        return NULL;
    }
    lg_limiter_reset(lim);
    return lim;
}

int lg_limiter_latency(const lg_limiter *lim)
{
    return lim ? 2 * lim->latency : LG_ERR_ARGUMENT;
}

typedef double lm_v2 __attribute__((vector_size(16)));
typedef long long lm_v2i __attribute__((vector_size(16)));

static inline lm_v2 load2(const double *p)
{
    lm_v2 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline lm_v2 abs2(lm_v2 x)
{
    return (lm_v2)((lm_v2i)x & 0x7fffffffffffffffLL);
}

static inline lm_v2 max2(lm_v2 a, lm_v2 b)
{
    lm_v2i gt = a > b;
    return (lm_v2)((gt & (lm_v2i)a) | (~gt & (lm_v2i)b));
}

/* Raises peak[l / 2][l % 2] (l = 0..3) to the largest |value| among the sample at
 * span[l + LM_SIDE - 1] and the three points after it, interpolated from the LM_TAPS samples
 * from span[l]. Phases 1 and 3 mirror each other and phase 2 is symmetric, so with u = x[a] +
 * x[b] and v = x[a] - x[b] over mirrored taps: phase 2 = sum c2 u, phase 1 + phase 3 = sum cs u,
 * phase 1 - phase 3 = sum cd v, and max(|phase 1|, |phase 3|) = (|sum| + |diff|) / 2. Each
 * lane's arithmetic is the same whichever group it falls in. */
static inline void group_peak(const lg_limiter *lim, const double *span, lm_v2 *peak)
{
    const double *e = span + LM_TAPS - 1;
    lm_v2 s0 = {0.0, 0.0}, d0 = s0, y0 = s0, s1 = s0, d1 = s0, y1 = s0;
    for (int k = 0; k < LM_SIDE; k++) {
        lm_v2 a0 = load2(span + k), a1 = load2(span + k + 2);
        lm_v2 b0 = load2(e - k), b1 = load2(e - k + 2);
        lm_v2 u0 = a0 + b0, u1 = a1 + b1, v0 = a0 - b0, v1 = a1 - b1;
        s0 += lim->cs[k] * u0;
        s1 += lim->cs[k] * u1;
        d0 += lim->cd[k] * v0;
        d1 += lim->cd[k] * v1;
        y0 += lim->c2[k] * u0;
        y1 += lim->c2[k] * u1;
    }
    lm_v2 m0 = max2((abs2(s0) + abs2(d0)) * 0.5, abs2(y0));
    lm_v2 m1 = max2((abs2(s1) + abs2(d1)) * 0.5, abs2(y1));
    m0 = max2(m0, abs2(load2(span + LM_SIDE - 1)));
    m1 = max2(m1, abs2(load2(span + LM_SIDE + 1)));
    peak[0] = max2(peak[0], m0);
    peak[1] = max2(peak[1], m1);
}

/* Trim: whether the main log gain is within `settled` of itself over the span
 * [k - LM_TAPS + 1, k] of frame k - LM_SIDE, so its points are already under the ceiling. */
static int settled(const lg_limiter *lim, const lm_stage *st, long long k)
{
    if (st->moved <= k - LM_TAPS + 1)
        return 1;
    const int mask = lim->ring - 1;
    int64_t lo = st->fin[k & mask], hi = lo;
    for (long long i = k - LM_TAPS + 1; i < k; i++) {
        int64_t v = st->fin[i & mask];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    return hi - lo <= st->settled;
}

/* Writes len frames (and, for the trim stage, their main log gains) into the stage's rings,
 * and into peak the peaks of the len frames whose spans they complete (0.0 where the peak
 * cannot exceed the ceiling). */
static void detect(const lg_limiter *lim, lm_stage *st, const double *in, const int64_t *gin,
                   int len, double *peak)
{
    const int ch = lim->channels, ring = lim->ring;
    const long long k0 = st->pushed;
    char need[LM_CHUNK + 4];
    long long last = st->loud;
    for (int f = 0; f < len; f++) {
        const long long k = k0 + f;
        const int pos = (int)(k & (long long)(ring - 1));
        double loudest = 0.0;
        for (int c = 0; c < ch; c++) {
            double v = in[(size_t)f * (size_t)ch + (size_t)c];
            double *xc = st->x + (size_t)c * 2 * (size_t)ring;
            xc[pos] = v;
            xc[pos + ring] = v;
            loudest = fabs(v) > loudest ? fabs(v) : loudest;
        }
        last = loudest > st->quiet ? k : last;
        need[f] = last > k - LM_TAPS;
        if (gin) {
            int64_t before = st->fin[(k - 1) & (long long)(ring - 1)];
            st->fin[pos] = gin[f];
            st->moved = gin[f] != before ? k : st->moved;
            need[f] = need[f] && !settled(lim, st, k);
        }
    }
    st->loud = last;
    for (int f = len; f < len + 4; f++)
        need[f] = 0;
    for (int f = 0; f < len; f += 4) {
        if (!(need[f] | need[f + 1] | need[f + 2] | need[f + 3])) {
            for (int l = f; l < f + 4 && l < len; l++)
                peak[l] = 0.0;
            continue;
        }
        const long long j = k0 + f - LM_SIDE;
        const int start = (int)((j - LM_SIDE + 1) & (long long)(ring - 1));
        lm_v2 p[2] = {{0.0, 0.0}, {0.0, 0.0}};
        for (int c = 0; c < ch; c++)
            group_peak(lim, st->x + (size_t)c * 2 * (size_t)ring + start, p);
        double lanes[4];
        memcpy(lanes, p, sizeof lanes);
        for (int l = 0; l < 4 && f + l < len; l++)
            peak[f + l] = need[f + l] && lanes[l] > st->ceiling ? lanes[l] : 0.0;
    }
}

/* floor(ln(ceiling / peak)) in fixed point, for a peak above the ceiling. */
static int64_t required(const lm_stage *st, double peak)
{
    double v = log(st->ceiling / peak) * LM_UNIT_PER_NEPER;
    int64_t q = (int64_t)v;
    return (double)q > v ? q - 1 : q;
}

/* floor(sum / n), with inv = 1 / n: the estimate is off by at most one either way. */
static inline int64_t mean_down(int64_t sum, int n, double inv)
{
    int64_t q = (int64_t)((double)sum * inv);
    while (q * n > sum)
        q--;
    while ((q + 1) * n <= sum)
        q++;
    return q;
}

/* Advances a stage's gain by one frame: peak is that of frame j; returns the log gain of frame
 * j - (latency - LM_SIDE). */
static inline int64_t gain_step(const lg_limiter *lim, lm_stage *st, double peak, long long j)
{
    const int cap = lim->window + 1;
    if (st->dq_len > 0 && st->dq_idx[st->dq_head] <= j - lim->window) {
        st->dq_head = st->dq_head + 1 == cap ? 0 : st->dq_head + 1;
        st->dq_len--;
    }
    if (peak > 0.0) {
        int back = st->dq_head + st->dq_len - 1;
        back -= back >= cap ? cap : 0;
        while (st->dq_len > 0 && st->dq_peak[back] <= peak) {
            st->dq_len--;
            back = back == 0 ? cap - 1 : back - 1;
        }
        int slot = st->dq_head + st->dq_len;
        slot -= slot >= cap ? cap : 0;
        st->dq_peak[slot] = peak;
        st->dq_idx[slot] = j;
        st->dq_len++;
    }
    double held = st->dq_len > 0 ? st->dq_peak[st->dq_head] : 0.0;
    if (held != st->held) {
        st->held = held;
        st->h = held > 0.0 ? required(st, held) : 0;
    }
    int64_t e = st->e;
    if (e < 0) {
        int64_t relaxed = (int64_t)((double)e * lim->release);
        relaxed = relaxed > -lim->snap ? 0 : relaxed;
        e = st->h < relaxed ? st->h : relaxed;
    } else {
        e = st->h;
    }
    st->e = e;
    if (e == 0 && st->e_sum == 0 && st->b_sum == 0) {
        /* at rest: every value in both means is 0 */
        st->e_pos = st->e_pos + 1 == lim->box1 ? 0 : st->e_pos + 1;
        st->b_pos = st->b_pos + 1 == lim->box2 ? 0 : st->b_pos + 1;
        return 0;
    }
    st->e_sum += e - st->e_hist[st->e_pos];
    st->e_hist[st->e_pos] = e;
    st->e_pos = st->e_pos + 1 == lim->box1 ? 0 : st->e_pos + 1;
    int64_t b = st->e_sum ? mean_down(st->e_sum, lim->box1, lim->inv1) : 0;

    st->b_sum += b - st->b_hist[st->b_pos];
    st->b_hist[st->b_pos] = b;
    st->b_pos = st->b_pos + 1 == lim->box2 ? 0 : st->b_pos + 1;
    return st->b_sum ? mean_down(st->b_sum, lim->box2, lim->inv2) : 0;
}

/* exp of a log gain g < 0, as the product of the exps of its 10-bit digits. */
static inline double gain_of(const lg_limiter *lim, lm_stage *st, int64_t g)
{
    if (g != st->last_g) {
        const int64_t v = -g;
        const int64_t hi = v >> 20;
        if (hi != st->hi_digit) {
            st->hi_digit = hi;
            st->hi_exp = exp(-(double)hi * (LM_TABLE * LM_TABLE) / LM_UNIT_PER_NEPER);
        }
        st->last_g = g;
        st->last_gain = st->hi_exp * lim->exp_mid[(v >> 10) & (LM_TABLE - 1)] *
                        lim->exp_lo[v & (LM_TABLE - 1)];
    }
    return st->last_gain;
}

/* Runs len (<= LM_CHUNK) frames through a stage; writes the frames that leave it and, if gout,
 * their log gains (the main stage) or, with gin, counts the frames limited by either stage.
 * Returns the frames written. */
static int stage_run(lg_limiter *lim, lm_stage *st, const double *in, const int64_t *gin,
                     int len, double *out, int64_t *gout)
{
    const int ch = lim->channels, ring = lim->ring;
    double peak[LM_CHUNK];
    detect(lim, st, in, gin, len, peak);
    int count = 0;
    for (int f = 0; f < len; f++) {
        const long long k = st->pushed + f;
        const int64_t g = gain_step(lim, st, peak[f], k - LM_SIDE);
        const long long m = k - lim->latency;
        if (m < 0)
            continue;
        const double *xm = st->x + (m & (long long)(ring - 1));
        double *o = out + (size_t)count * (size_t)ch;
        if (g < 0) {
            const double gain = gain_of(lim, st, g);
            for (int c = 0; c < ch; c++)
                o[c] = xm[(size_t)c * 2 * (size_t)ring] * gain;
        } else {
            for (int c = 0; c < ch; c++)
                o[c] = xm[(size_t)c * 2 * (size_t)ring];
        }
        if (gout)
            gout[count] = g;
        if (gin) {
            int64_t total = g + st->fin[m & (long long)(ring - 1)];
            lim->limited += total < 0;
            lim->lowest = total < lim->lowest ? total : lim->lowest;
        }
        count++;
    }
    st->pushed += len;
    return count;
}

int lg_limiter_process(lg_limiter *lim, const double *in, int n, double *out)
{
    if (!lim || n < 0 || (n > 0 && (!in || !out)))
        return LG_ERR_ARGUMENT;
    const int ch = lim->channels;
    int count = 0;
    for (int off = 0; off < n; off += LM_CHUNK) {
        const int len = n - off < LM_CHUNK ? n - off : LM_CHUNK;
        int mid = stage_run(lim, &lim->main, in + (size_t)off * (size_t)ch, NULL, len, lim->mid,
                            lim->mid_gain);
        count += stage_run(lim, &lim->trim, lim->mid, lim->mid_gain, mid,
                           out + (size_t)count * (size_t)ch, NULL);
    }
    return count;
}

long long lg_limiter_limited(const lg_limiter *lim)
{
    return lim ? lim->limited : 0;
}

double lg_limiter_min_gain(const lg_limiter *lim)
{
    return lim ? exp((double)lim->lowest / LM_UNIT_PER_NEPER) : NAN;
}

static void stage_transfer(lg_ck *ck, const lg_limiter *lim, lm_stage *st)
{
    lg_ck_config(ck, &st->ceiling, sizeof st->ceiling);
    lg_ck_config(ck, &st->quiet, sizeof st->quiet);
    lg_ck_config(ck, &st->settled, sizeof st->settled);
    int at[4] = {st->dq_head, st->dq_len, st->e_pos, st->b_pos};
    long long pushed = st->pushed;
    lg_ck_value(ck, at, sizeof at);
    lg_ck_value(ck, &pushed, sizeof pushed);
    if (at[0] < 0 || at[0] > lim->window || at[1] < 0 || at[1] > lim->window + 1 || at[2] < 0 ||
        at[2] >= lim->box1 || at[3] < 0 || at[3] >= lim->box2 || pushed < 0)
        lg_ck_refuse(ck);
    size_t ring = (size_t)lim->ring, window = (size_t)lim->window + 1;
    lg_ck_state(ck, st->x, sizeof(double) * 2 * ring * (size_t)lim->channels);
    if (st->fin)
        lg_ck_state(ck, st->fin, sizeof(int64_t) * ring);
    lg_ck_state(ck, st->dq_peak, sizeof(double) * window);
    lg_ck_state(ck, st->dq_idx, sizeof(long long) * window);
    lg_ck_state(ck, st->e_hist, sizeof(int64_t) * (size_t)lim->box1);
    lg_ck_state(ck, st->b_hist, sizeof(int64_t) * (size_t)lim->box2);
    lg_ck_state(ck, &st->loud, sizeof st->loud);
    lg_ck_state(ck, &st->moved, sizeof st->moved);
    lg_ck_state(ck, &st->held, sizeof st->held);
    lg_ck_state(ck, &st->h, sizeof st->h);
    lg_ck_state(ck, &st->e, sizeof st->e);
    lg_ck_state(ck, &st->e_sum, sizeof st->e_sum);
    lg_ck_state(ck, &st->b_sum, sizeof st->b_sum);
    lg_ck_state(ck, &st->hi_digit, sizeof st->hi_digit);
    lg_ck_state(ck, &st->hi_exp, sizeof st->hi_exp);
    lg_ck_state(ck, &st->last_g, sizeof st->last_g);
    lg_ck_state(ck, &st->last_gain, sizeof st->last_gain);
    if (lg_ck_restoring(ck)) {
        st->dq_head = at[0];
        st->dq_len = at[1];
        st->e_pos = at[2];
        st->b_pos = at[3];
        st->pushed = pushed;
    }
}

void lg_limiter_transfer(lg_ck *ck, lg_limiter *lim)
{
    const int config[] = {lim->channels, lim->box1, lim->box2, lim->window, lim->latency,
                          lim->ring};
    lg_ck_config(ck, config, sizeof config);
    lg_ck_config(ck, &lim->release, sizeof lim->release);
    lg_ck_config(ck, &lim->snap, sizeof lim->snap);
    stage_transfer(ck, lim, &lim->main);
    stage_transfer(ck, lim, &lim->trim);
    lg_ck_state(ck, &lim->limited, sizeof lim->limited);
    lg_ck_state(ck, &lim->lowest, sizeof lim->lowest);
}
