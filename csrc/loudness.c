/* ITU-R BS.1770-4 loudness with the EBU Tech 3341 / 3342 measures.
 *
 * Per frame: K-weighting (two biquads per channel in double, direct form I), the weighted sum of
 * squares z, and O(1) sliding sums of z over the 400 ms and 3 s windows, kept in a ring of the
 * last 3 s of z (float: 576 kB at 48 kHz; the sums stay in double). Each running sum is summed
 * afresh from the ring once per window length (counted in frames, so the schedule does not
 * depend on how the stream is split), which bounds its floating drift to one window's worth.
 *
 * The K-weighting at other rates comes from the 48 kHz tables through their analogue prototypes.
 * That keeps the RLB high-pass's published numerator (1, -2, 1), whose gain above the corner is
 * 1.005 (+0.043 dB), as the prototype's gain at every rate: the -0.691 LU offset of BS.1770 was
 * set with it.
 *
 * Every 100 ms (counted from the stream start) the 400 ms block energy feeds the integrated
 * loudness and the 3 s energy feeds the loudness range. Both go into histograms of 0.01 LU bins
 * from -70 LUFS (the absolute gate) to +30 LUFS, each bin holding its block count and exact energy
 * sum: memory is fixed (2 x 160 kB) however long the stream, gated means are exact except for the
 * one bin that straddles a relative gate (decided by its mean), and percentiles are exact to the
 * bin's mean (within 0.01 LU).
 */
#include "loudness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LG_LN_MAX_CHANNELS 6
#define LG_LN_CHUNK 256
#define LG_HIST_MIN (-70.0)
#define LG_HIST_STEP 0.01
#define LG_HIST_BINS 10000
#define LG_LUFS_OFFSET (-0.691)

#define LG_LN_PAIRS (LG_LN_MAX_CHANNELS / 2)

/* Two channels side by side: the filters run on channel pairs. */
typedef double lg_v2d __attribute__((vector_size(16)));

/* Blocks by loudness in 0.01 LU bins, each bin's count beside its energy. Only the bins
 * between lo and hi were ever written: the rest stay untouched (calloc'd pages a stream that
 * never reaches them never maps), and reading, clearing and the gates visit that range only. */
typedef struct {
    long long count;
    double energy;
} lg_bin;

typedef struct {
    lg_bin bin[LG_HIST_BINS];
    long long total;
    double sum;
    int lo, hi;
} lg_hist;

struct lg_loudness {
    int channels;
    int wm, ws, step, hop; /* 400 ms, 3 s, 100 ms, report interval, in frames */
    lg_v2d weight[LG_LN_PAIRS]; /* 0 for the LFE and for the padding lane of an odd count */
    double sb[3], sa[3], hb[3], ha[3];
    lg_v2d hist[LG_LN_PAIRS][6]; /* per pair: x, y, k at n-1 and n-2 (x1 x2 y1 y2 k1 k2) */
    float *ring; /* z of the last ws frames */
    int pos;     /* next write index in ring */
    int mpos;    /* index of the frame leaving the 400 ms window */
    double msum, ssum, max_msum, max_ssum;
    int to_step, to_hop, to_mfix, to_sfix;
    long long frames, nonfinite;
    double z[LG_LN_CHUNK];
    lg_hist *gate, *range;
};

static const double LG_PI = 3.14159265358979323846;

/* ITU-R BS.1770-4 Annex 1, Tables 1 and 2 (48 kHz). */
static const double SHELF_B48[3] = {1.53512485958697, -2.69169618940638, 1.19839281085285};
static const double SHELF_A48[3] = {1.0, -1.69065929318241, 0.73248077421585};
static const double HP_B48[3] = {1.0, -2.0, 1.0};
static const double HP_A48[3] = {1.0, -1.99004745483398, 0.99007225036621};

/* Inverts the bilinear transform of a 48 kHz biquad to its analogue prototype
 * H(s) = (B0 s^2 + B1 s + B2) / (s^2 + s/Q + 1) (s normalised to the prewarped corner), then
 * discretises that prototype at the new rate with the corner prewarped again. */
static int redesign(const double *b48, const double *a48, double fs, double *b, double *a)
{
    double sum_a = 1.0 + a48[1] + a48[2]; /* 4 K^2 / d0 */
    double alt_a = 1.0 - a48[1] + a48[2]; /* 4 / d0 */
    double k48 = sqrt(sum_a / alt_a);
    double d48 = 4.0 / alt_a;
    double inv_q = (1.0 - a48[2]) * d48 / (2.0 * k48);
    double p0 = (b48[0] - b48[1] + b48[2]) * d48 / 4.0;
    double p1 = (b48[0] - b48[2]) * d48 / (2.0 * k48);
    double p2 = (b48[0] + b48[1] + b48[2]) * d48 / (4.0 * k48 * k48);
    double corner = atan(k48) * 48000.0 / LG_PI; /* Hz */
    if (!(corner < 0.45 * fs))
        return LG_ERR_ARGUMENT;
    double k = tan(LG_PI * corner / fs);
    double d = 1.0 + k * inv_q + k * k;
    a[0] = 1.0;
    a[1] = 2.0 * (k * k - 1.0) / d;
    a[2] = (1.0 - k * inv_q + k * k) / d;
    b[0] = (p0 + p1 * k + p2 * k * k) / d;
    b[1] = 2.0 * (p2 * k * k - p0) / d;
    b[2] = (p0 - p1 * k + p2 * k * k) / d;
    return LG_OK;
}

int lg_kweighting_design(double sample_rate, double *shelf_b, double *shelf_a, double *hp_b,
                         double *hp_a)
{
    if (!(sample_rate >= 8000.0 && sample_rate <= 384000.0) || !shelf_b || !shelf_a || !hp_b ||
        !hp_a)
        return LG_ERR_ARGUMENT;
    const int status = redesign(SHELF_B48, SHELF_A48, sample_rate, shelf_b, shelf_a);
    if (status != LG_OK)
        return status;
    return redesign(HP_B48, HP_A48, sample_rate, hp_b, hp_a);
}

static double lufs(double power)
{
    return power > 0.0 ? LG_LUFS_OFFSET + 10.0 * log10(power) : -HUGE_VAL;
}

static void hist_add(lg_hist *h, double energy)
{
    double l = lufs(energy);
    if (!(l > LG_HIST_MIN))
        return;
    double pos = floor((l - LG_HIST_MIN) / LG_HIST_STEP);
    int k = pos < (double)(LG_HIST_BINS - 1) ? (int)pos : LG_HIST_BINS - 1;
    h->bin[k].count++;
    h->bin[k].energy += energy;
    if (k < h->lo)
        h->lo = k;
    if (k > h->hi)
        h->hi = k;
    h->total++;
    h->sum += energy;
}

static double bin_lufs(const lg_hist *h, int k)
{
    return lufs(h->bin[k].energy / (double)h->bin[k].count);
}

/* Whether bin k lies above a gate at thr LUFS; a bin straddling it goes by its mean. */
static int bin_passes(const lg_hist *h, int k, double thr)
{
    if (h->bin[k].count == 0)
        return 0;
    double lo = LG_HIST_MIN + LG_HIST_STEP * (double)k;
    if (lo >= thr)
        return 1;
    if (lo + LG_HIST_STEP <= thr && k < LG_HIST_BINS - 1)
        return 0;
    return bin_lufs(h, k) > thr;
}

/* The relative gate: the mean loudness of the blocks over the absolute gate, minus drop LU. */
static double relative_gate(const lg_hist *h, double drop)
{
    return lufs(h->sum / (double)h->total) - drop;
}

static void hist_clear(lg_hist *h)
{
    if (h->hi >= h->lo)
        memset(h->bin + h->lo, 0, sizeof(lg_bin) * (size_t)(h->hi - h->lo + 1));
    h->total = 0;
    h->sum = 0.0;
    h->lo = LG_HIST_BINS;
    h->hi = -1;
}

void lg_loudness_reset(lg_loudness *m)
{
    if (!m)
        return;
    memset(m->hist, 0, sizeof m->hist);
    memset(m->ring, 0, sizeof(float) * (size_t)m->ws);
    m->pos = 0;
    m->mpos = m->ws - m->wm;
    m->msum = m->ssum = m->max_msum = m->max_ssum = 0.0;
    m->to_step = m->step;
    m->to_hop = m->hop;
    m->to_mfix = m->wm;
    m->to_sfix = m->ws;
    m->frames = m->nonfinite = 0;
    hist_clear(m->gate);
    hist_clear(m->range);
}

void lg_loudness_free(lg_loudness *m)
{
    if (!m)
        return;
    free(m->ring);
    free(m->gate);
    free(m->range);
    free(m);
}

lg_loudness *lg_loudness_new(int sample_rate, int channels, int report_hop)
{
    static const double weights5[5] = {1.0, 1.0, 1.0, 1.41, 1.41};
    static const double weights6[6] = {1.0, 1.0, 1.0, 0.0, 1.41, 1.41};
    if (channels < 1 || channels > LG_LN_MAX_CHANNELS || report_hop < 0)
        return NULL;
    lg_loudness *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    if (lg_kweighting_design((double)sample_rate, m->sb, m->sa, m->hb, m->ha) != 0) {
        free(m);
        return NULL;
    }
    m->channels = channels;
    for (int c = 0; c < channels; c++)
        m->weight[c / 2][c % 2] = channels == 6 ? weights6[c] : weights5[c];
    m->wm = (int)lround(0.4 * sample_rate);
    m->ws = (int)lround(3.0 * sample_rate);
    m->step = (int)lround(0.1 * sample_rate);
    m->hop = report_hop;
    m->ring = malloc(sizeof(float) * (size_t)m->ws);
    m->gate = calloc(1, sizeof(lg_hist));
    m->range = calloc(1, sizeof(lg_hist));
    if (m->gate && m->range) {
        m->gate->lo = m->range->lo = LG_HIST_BINS;
        m->gate->hi = m->range->hi = -1;
    }
    if (!m->ring || !m->gate || !m->range) {
        lg_loudness_free(m);
        return NULL;
    }
    lg_loudness_reset(m);
    return m;
}

static float finite_or_zero(float v, long long *bad)
{
    if (isfinite(v))
        return v;
    (*bad)++;
    return 0.0f;
}

/* K-weighted, channel-weighted power of each frame into z[]. Direct form I, with the feedback
 * term added last so each recursion waits on one multiply and one add; channels run in pairs.
 * Inlined with a constant channel count so the histories stay in registers. */
static inline __attribute__((always_inline)) void kweight(lg_loudness *m, const float *in, int len,
                                                          const int ch)
{
    const int pairs = (ch + 1) / 2;
    lg_v2d h[LG_LN_PAIRS][6];
    const double sb0 = m->sb[0], sb1 = m->sb[1], sb2 = m->sb[2], sa1 = m->sa[1], sa2 = m->sa[2];
    const double hb0 = m->hb[0], hb1 = m->hb[1], hb2 = m->hb[2], ha1 = m->ha[1], ha2 = m->ha[2];
    long long bad = 0;
    memcpy(h, m->hist, sizeof h);
    for (int i = 0; i < len; i++) {
        const float *frame = in + (size_t)i * (size_t)ch;
        double z = 0.0;
        for (int p = 0; p < pairs; p++) {
            float left = finite_or_zero(frame[2 * p], &bad);
            float right = 2 * p + 1 < ch ? finite_or_zero(frame[2 * p + 1], &bad) : 0.0f;
            lg_v2d x = {(double)left, (double)right};
            lg_v2d y = (sb0 * x + sb1 * h[p][0] + sb2 * h[p][1] - sa2 * h[p][3]) - sa1 * h[p][2];
            lg_v2d k = (hb0 * y + hb1 * h[p][2] + hb2 * h[p][3] - ha2 * h[p][5]) - ha1 * h[p][4];
            h[p][1] = h[p][0];
            h[p][0] = x;
            h[p][3] = h[p][2];
            h[p][2] = y;
            h[p][5] = h[p][4];
            h[p][4] = k;
            lg_v2d e = m->weight[p] * (k * k);
            z += e[0];
            z += e[1];
        }
        m->z[i] = z;
    }
    memcpy(m->hist, h, sizeof h);
    m->nonfinite += bad;
}

/* Sum of count ring entries from start on: four interleaved partial sums per contiguous
 * segment, so it vectorises; the order depends only on (start, count). */
static double ring_sum(const lg_loudness *m, int start, int count)
{
    double total = 0.0;
    while (count > 0) {
        int len = m->ws - start < count ? m->ws - start : count;
        const float *r = m->ring + start;
        double acc[4] = {0.0, 0.0, 0.0, 0.0};
        int i = 0;
        for (; i + 4 <= len; i += 4)
            for (int j = 0; j < 4; j++)
                acc[j] += (double)r[i + j];
        for (; i < len; i++)
            acc[0] += (double)r[i];
        total += (acc[0] + acc[1]) + (acc[2] + acc[3]);
        count -= len;
        start = 0;
    }
    return total;
}

/* Slides both windows over run frames of z; the ring indices do not wrap within the run. */
static void slide(lg_loudness *m, const double *z, int run)
{
    float *in = m->ring + m->pos;
    const float *out_m = m->ring + m->mpos;
    double msum = m->msum, ssum = m->ssum, max_m = m->max_msum, max_s = m->max_ssum;
    for (int i = 0; i < run; i++) {
        float zf = (float)z[i];
        double old_m = (double)out_m[i];
        double old_s = (double)in[i];
        in[i] = zf;
        msum += (double)zf - old_m;
        ssum += (double)zf - old_s;
        max_m = msum > max_m ? msum : max_m;
        max_s = ssum > max_s ? ssum : max_s;
    }
    m->msum = msum;
    m->ssum = ssum;
    m->max_msum = max_m;
    m->max_ssum = max_s;
}

int lg_loudness_process(lg_loudness *m, const float *in, int n, double *momentary,
                        double *short_term, int cap)
{
    if (!m || n < 0 || (n > 0 && !in))
        return LG_ERR_ARGUMENT;
    if (m->hop > 0) {
        long long reports = ((long long)(m->hop - m->to_hop) + n) / m->hop;
        if (reports > 0 && (!momentary || !short_term))
            return LG_ERR_ARGUMENT;
        if (reports > cap)
            return LG_ERR_CAPACITY;
    }
    int count = 0;
    const int ch = m->channels;
    for (int off = 0; off < n; off += LG_LN_CHUNK) {
        int len = n - off < LG_LN_CHUNK ? n - off : LG_LN_CHUNK;
        const float *blk = in + (size_t)off * (size_t)ch;
        switch (ch) {
        case 1:
            kweight(m, blk, len, 1);
            break;
        case 2:
            kweight(m, blk, len, 2);
            break;
        default:
            kweight(m, blk, len, ch);
            break;
        }
        for (int i = 0; i < len;) {
            int run = len - i;
            run = m->to_mfix < run ? m->to_mfix : run;
            run = m->to_sfix < run ? m->to_sfix : run;
            run = m->to_step < run ? m->to_step : run;
            run = m->hop > 0 && m->to_hop < run ? m->to_hop : run;
            run = m->ws - m->pos < run ? m->ws - m->pos : run;
            run = m->ws - m->mpos < run ? m->ws - m->mpos : run;
            slide(m, m->z + i, run);
            i += run;
            m->frames += run;
            m->pos = m->pos + run == m->ws ? 0 : m->pos + run;
            m->mpos = m->mpos + run == m->ws ? 0 : m->mpos + run;
            m->to_mfix -= run;
            m->to_sfix -= run;
            m->to_step -= run;
            if (m->to_mfix == 0) {
                m->msum = ring_sum(m, m->mpos, m->wm);
                m->max_msum = m->msum > m->max_msum ? m->msum : m->max_msum;
                m->to_mfix = m->wm;
            }
            if (m->to_sfix == 0) {
                m->ssum = ring_sum(m, m->pos, m->ws);
                m->max_ssum = m->ssum > m->max_ssum ? m->ssum : m->max_ssum;
                m->to_sfix = m->ws;
            }
            if (m->to_step == 0) {
                m->to_step = m->step;
                if (m->frames >= m->wm)
                    hist_add(m->gate, m->msum / m->wm);
                if (m->frames >= m->ws)
                    hist_add(m->range, m->ssum / m->ws);
            }
            if (m->hop > 0 && (m->to_hop -= run) == 0) {
                m->to_hop = m->hop;
                momentary[count] = lufs(m->msum / m->wm);
                short_term[count] = lufs(m->ssum / m->ws);
                count++;
            }
        }
    }
    return count;
}

double lg_loudness_momentary(const lg_loudness *m)
{
    return m ? lufs(m->msum / m->wm) : NAN;
}

double lg_loudness_short_term(const lg_loudness *m)
{
    return m ? lufs(m->ssum / m->ws) : NAN;
}

double lg_loudness_max_momentary(const lg_loudness *m)
{
    return m ? lufs(m->max_msum / m->wm) : NAN;
}

double lg_loudness_max_short_term(const lg_loudness *m)
{
    return m ? lufs(m->max_ssum / m->ws) : NAN;
}

double lg_loudness_integrated(const lg_loudness *m)
{
    if (!m || m->gate->total == 0)
        return NAN;
    const lg_hist *h = m->gate;
    double thr = relative_gate(h, 10.0);
    long long count = 0;
    double sum = 0.0;
    for (int k = h->lo; k <= h->hi; k++) {
        if (bin_passes(h, k, thr)) {
            count += h->bin[k].count;
            sum += h->bin[k].energy;
        }
    }
    return count > 0 ? lufs(sum / (double)count) : NAN;
}

/* Mean loudness of the bin holding the rank-th (0-based, ascending) block above the gate. */
static double ranked(const lg_hist *h, double thr, long long rank)
{
    long long seen = 0;
    for (int k = h->lo; k <= h->hi; k++) {
        if (!bin_passes(h, k, thr))
            continue;
        seen += h->bin[k].count;
        if (seen > rank)
            return bin_lufs(h, k);
    }
    return NAN;
}

double lg_loudness_range(const lg_loudness *m)
{
    if (!m || m->range->total == 0)
        return NAN;
    const lg_hist *h = m->range;
    double thr = relative_gate(h, 20.0);
    long long n = 0;
    for (int k = h->lo; k <= h->hi; k++)
        if (bin_passes(h, k, thr))
            n += h->bin[k].count;
    if (n == 0)
        return NAN;
    /* EBU Tech 3342: the 10th to the 95th percentile, nearest rank. */
    long long lo = llround((double)(n - 1) * 0.10);
    long long hi = llround((double)(n - 1) * 0.95);
    return ranked(h, thr, hi) - ranked(h, thr, lo);
}

long long lg_loudness_frames(const lg_loudness *m)
{
    return m ? m->frames : 0;
}

long long lg_loudness_nonfinite(const lg_loudness *m)
{
    return m ? m->nonfinite : 0;
}

/* A histogram's written range and its bins in it, so a checkpoint holds what was measured, not
 * 10000 bins. */
static void hist_transfer(lg_ck *ck, lg_hist *h)
{
    int range[2] = {h->lo, h->hi};
    lg_ck_value(ck, range, sizeof range);
    int empty = range[0] == LG_HIST_BINS && range[1] == -1;
    if (!empty && !(0 <= range[0] && range[0] <= range[1] && range[1] < LG_HIST_BINS)) {
        lg_ck_refuse(ck);
        return;
    }
    if (lg_ck_restoring(ck)) {
        hist_clear(h);
        h->lo = range[0];
        h->hi = range[1];
    }
    if (!empty)
        lg_ck_state(ck, h->bin + range[0], sizeof(lg_bin) * (size_t)(range[1] - range[0] + 1));
    lg_ck_state(ck, &h->total, sizeof h->total);
    lg_ck_state(ck, &h->sum, sizeof h->sum);
}

void lg_loudness_transfer(lg_ck *ck, lg_loudness *m)
{
    const int config[] = {m->channels, m->wm, m->ws, m->step, m->hop};
    lg_ck_config(ck, config, sizeof config);
    lg_ck_config(ck, m->weight, sizeof m->weight);
    lg_ck_config(ck, m->sb, sizeof m->sb);
    lg_ck_config(ck, m->sa, sizeof m->sa);
    lg_ck_config(ck, m->hb, sizeof m->hb);
    lg_ck_config(ck, m->ha, sizeof m->ha);
    int at[6] = {m->pos, m->mpos, m->to_step, m->to_hop, m->to_mfix, m->to_sfix};
    lg_ck_value(ck, at, sizeof at);
    if (at[0] < 0 || at[0] >= m->ws || at[1] < 0 || at[1] >= m->ws || at[2] < 1 ||
        at[2] > m->step || (m->hop > 0 && (at[3] < 1 || at[3] > m->hop)) || at[4] < 1 ||
        at[4] > m->wm || at[5] < 1 || at[5] > m->ws)
        lg_ck_refuse(ck);
    lg_ck_state(ck, m->hist, sizeof m->hist);
    lg_ck_state(ck, m->ring, sizeof(float) * (size_t)m->ws);
    lg_ck_state(ck, &m->msum, sizeof m->msum);
    lg_ck_state(ck, &m->ssum, sizeof m->ssum);
    lg_ck_state(ck, &m->max_msum, sizeof m->max_msum);
    lg_ck_state(ck, &m->max_ssum, sizeof m->max_ssum);
    lg_ck_state(ck, &m->frames, sizeof m->frames);
    lg_ck_state(ck, &m->nonfinite, sizeof m->nonfinite);
    hist_transfer(ck, m->gate);
    hist_transfer(ck, m->range);
    if (lg_ck_restoring(ck)) {
        m->pos = at[0];
        m->mpos = at[1];
        m->to_step = at[2];
        m->to_hop = at[3];
        m->to_mfix = at[4];
        m->to_sfix = at[5];
    }
}
