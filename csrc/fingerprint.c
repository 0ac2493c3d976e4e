/* 25-dimension track fingerprint; see fingerprint.h for the definitions.
 *
 * Per input chunk: the samples are sanitised into a scratch copy, which the BS.1770 meter
 * (csrc/loudness.c) reads; one pass over it writes the mono mix into a ring of the last N
 * samples and into a float copy for the onset detector (csrc/onsets.c, detection function
 * only), and sums squares, peaks and the stereo products per 100 ms block (added to the stream
 * totals once per block, so their order depends on the stream position alone). Every N / 2
 * samples a spectral frame is analysed (FFT, long-term spectrum, spectral, chroma and harmonic
 * features, inverse FFT of half the size for the autocorrelation); every onset-envelope value
 * feeds the peak picker and the running autocorrelation for the tempo.
 *
 * What a result needs beyond the streaming state (the spectral frame still open at the end,
 * the peak picker's missing lookahead) is computed on copies of the two accumulators
 * (lg_fingerprint_spec, lg_fingerprint_env: fixed-size structs), so a result describes the
 * stream as if it had ended there and leaves the stream's own state untouched. */
#include "fingerprint.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "fft.h"
#include "loudness.h"
#include "onsets.h"

enum {
    DIMS = 25,
    VERSION = 1,
    CHUNK = 1024,      /* frames sanitised and metered at a time */
    MAX_LTAS = 2900,   /* bins below 20 kHz: at most 20000 * N / fs <= 2829 */
    MAX_LAG = 512,     /* 4 s of envelope frames: fs / (N / 8) <= 114 frames/s */
    PICK_RING = 32,    /* envelope frames kept for the peak picker */
    HOP_RING = 64,     /* mono energies of the last onset hops, for the picker's level gate */
    GROUP_BLOCKS = 10, /* 100 ms blocks per variation block */
    HIST_BINS = 800,   /* short-term loudness: 0.1 LU bins from -70 to +10 LUFS */
    CHROMA = 12,
    COMB = 4, /* beats summed by the tempo comb */
};

static const double LG_PI = 3.14159265358979323846;
static const double SILENCE_POWER = 1e-6;   /* -60 dBFS mean square */
static const double FLATNESS_FLOOR = 1e-10; /* of the mean bin power */
static const double ROLLOFF = 0.85;
static const double CHROMA_LO = 220.0, CHROMA_HI = 3520.0;
static const double HARMONIC_F0_LO = 50.0, HARMONIC_F0_HI = 1000.0;
static const double HIST_MIN = -70.0, HIST_STEP = 0.1;
static const double LUFS_OFFSET = -0.691;
/* Above any loudness a float signal can carry (20 log10 FLT_MAX = 770.6 dB): absurd input
 * (samples of 1e20 and more) whose squares overflow the meter reads this, not infinity. */
static const double LOUDEST_LUFS = 770.6;
static const double TEMPO_MIN = 60.0, TEMPO_MAX = 200.0, TEMPO_STEP = 0.05;
static const double TEMPO_PRIOR = 120.0, TEMPO_OCTAVES = 1.0;
static const double HIGHPASS_HZ = 0.5;
static const double MAX_LAG_S = 4.0; /* COMB beats at TEMPO_MIN */
/* Onset detection function: the onsets_flux stage's defaults (plugins/onsets_flux). */
static const int ONSET_BPO = 24;
static const double ONSET_FMIN = 30.0, ONSET_FMAX = 17000.0, ONSET_COMPRESSION = 100.0;
static const double ONSET_RELEASE = 10.0, ONSET_DELTA = 2.0;
static const double PICK_MAX_MS = 30.0, PICK_AVG_MS = 100.0, PICK_WAIT_MS = 30.0;

static const double BAND_EDGES[8] = {20.0, 60.0, 250.0, 500.0, 2000.0, 4000.0, 8000.0, 20000.0};

static const char *const NAMES[DIMS] = {
    "sub_bass",
    "bass",
    "low_mid",
    "mid",
    "upper_mid",
    "presence",
    "air",
    "loudness_lufs",
    "crest_db",
    "bass_mid_db",
    "tempo_bpm",
    "rhythm_stability",
    "transient_density",
    "silence_ratio",
    "centroid_hz",
    "rolloff_hz",
    "flatness",
    "harmonic_ratio",
    "pitch_stability",
    "chroma_energy",
    "dynamic_range_variation_db",
    "loudness_variation_lu",
    "peak_consistency",
    "stereo_width",
    "phase_correlation",
};

/* Accumulators of the spectral frames. */
typedef struct {
    double ltas[MAX_LTAS]; /* summed power per bin */
    double centroid, rolloff, flatness, harmonic, chroma, stability;
    long long voiced, pairs; /* frames with energy; consecutive pairs of them */
    double prev_chroma[CHROMA];
    int prev_voiced;
} lg_fingerprint_spec;

/* The onset envelope's peak picker and autocorrelation. */
typedef struct {
    double flux[PICK_RING];
    unsigned char loud[PICK_RING];
    long long frames, decided, last_onset, onsets;
    double hp_x, hp_y;
    double d[MAX_LAG + 1]; /* high-passed envelope, by frame index modulo MAX_LAG + 1 */
    double ac[MAX_LAG + 1];
} lg_fingerprint_env;

typedef struct {
    long long count[HIST_BINS];
    double power[HIST_BINS], sum[HIST_BINS], sum2[HIST_BINS];
} lg_fingerprint_hist;

struct lg_fingerprint {
    /* configuration */
    int rate, channels;
    int n, hop;         /* spectral frame and hop */
    int ohop, owin;     /* onset detector hop and window */
    int block, ws, wm;  /* 100 ms block; the meter's 3 s and 400 ms windows */
    int k_lo, k_hi;     /* analysis bins: 20 Hz <= f < min(20 kHz, Nyquist) */
    int band_start[8];  /* first bin of each frequency band; band_start[7] = end */
    int c_lo, c_hi;     /* chroma bins */
    unsigned char *chroma_class;
    int tau_lo, tau_hi; /* harmonic-ratio lags, in steps of 2 samples */
    double *rw_inv;     /* window autocorrelation at 0 over that at each lag step */
    int pre_max, post_max, pre_avg, post_avg, wait, lookahead, lags;
    double frame_rate, hp_a;
    lg_fft *fft, *afft; /* spectral frame, autocorrelation (n / 2) */
    double *win, win_power;
    lg_loudness *meter;
    lg_onsets *onsets;
    /* buffers */
    double *ring;               /* mono mix, sample i at i & (n - 1) */
    double *buf, *spec, *power; /* n, n + 2, n / 2 + 1 */
    float *clean, *mono;        /* CHUNK * channels, CHUNK */
    double *momentary, *short_term, *flux;
    int report_cap, flux_cap;
    /* stream */
    long long frames, nonfinite, reports;
    int blk_len, grp_blocks;
    double blk_sq, blk_peak, blk_ll, blk_rr, blk_lr, hop_sq;
    double grp_sq, grp_peak;
    double total_sq, peak, ll, rr, lr;
    long long silent, groups;
    double crest_sum, crest_sum2, peak_sum, peak_max;
    double hop_energy[HOP_RING];
    lg_fingerprint_spec spec_acc, spec_tmp;
    lg_fingerprint_env env, env_tmp;
    lg_fingerprint_hist hist;
};

int lg_fingerprint_version(void) { return VERSION; }

int lg_fingerprint_dimensions(void) { return DIMS; }

const char *lg_fingerprint_name(int i) { return i >= 0 && i < DIMS ? NAMES[i] : NULL; }

/* The first bin whose centre frequency is at least hz. */
static int bin_at(double hz, int n, int rate) { return (int)ceil(hz * n / rate - 1e-9); }

static int frames_of(double ms, double frame_rate)
{
    return (int)lround(ms / 1000.0 * frame_rate);
}

void lg_fingerprint_reset(lg_fingerprint *s)
{
    if (!s)
        return;
    lg_loudness_reset(s->meter);
    lg_onsets_reset(s->onsets);
    memset(s->ring, 0, sizeof(double) * (size_t)s->n);
    s->frames = s->nonfinite = s->reports = 0;
    s->blk_len = s->grp_blocks = 0;
    s->blk_sq = s->blk_peak = s->blk_ll = s->blk_rr = s->blk_lr = s->hop_sq = 0.0;
    s->grp_sq = s->grp_peak = 0.0;
    s->total_sq = s->peak = s->ll = s->rr = s->lr = 0.0;
    s->silent = s->groups = 0;
    s->crest_sum = s->crest_sum2 = s->peak_sum = s->peak_max = 0.0;
    memset(s->hop_energy, 0, sizeof s->hop_energy);
    memset(&s->spec_acc, 0, sizeof s->spec_acc);
    memset(&s->env, 0, sizeof s->env);
    s->env.last_onset = -(1LL << 40);
    memset(&s->hist, 0, sizeof s->hist);
}

void lg_fingerprint_free(lg_fingerprint *s)
{
    if (!s)
        return;
    lg_loudness_free(s->meter);
    lg_onsets_free(s->onsets);
    lg_fft_free(s->fft);
    lg_fft_free(s->afft);
    free(s->chroma_class);
    free(s->rw_inv);
    free(s->win);
    free(s->ring);
    free(s->buf);
    free(s->spec);
    free(s->power);
    free(s->clean);
    free(s->mono);
    free(s->momentary);
    free(s->short_term);
    free(s->flux);
    free(s);
}

/* Circular autocorrelation of the content below fs / 4 of a frame with power spectrum p, at
 * even lags (lag 2 t in buf[t], t < n / 2): inverse FFT of bins 0 .. n / 4 with DC removed. */
static void lag_autocorrelation(lg_fingerprint *s, const double *p)
{
    const int quarter = s->n / 4;
    double *x = s->spec;
    x[0] = 0.0;
    x[1] = 0.0;
    for (int k = 1; k <= quarter; k++) {
        x[2 * k] = p[k];
        x[2 * k + 1] = 0.0;
    }
    lg_fft_inverse(s->afft, x, s->buf);
}

/* The power spectrum of buf into power[0 .. n / 2]. */
static void power_spectrum(lg_fingerprint *s)
{
    lg_fft_forward(s->fft, s->buf, s->spec);
    const double *x = s->spec;
    double *p = s->power;
    for (int k = 0; k <= s->n / 2; k++)
        p[k] = x[2 * k] * x[2 * k] + x[2 * k + 1] * x[2 * k + 1];
}

/* Tables that depend on the rate: window, bins of the bands and chroma, lags. Returns 1, or 0
 * if the rate needs more than the fixed-size tables hold. */
static int setup(lg_fingerprint *s)
{
    const int n = s->n, half = n / 2, rate = s->rate;
    const double nyq = 0.5 * rate;
    s->win_power = 0.0;
    for (int i = 0; i < n; i++) {
        s->win[i] = 0.5 - 0.5 * cos(2.0 * LG_PI * i / n);
        s->win_power += s->win[i] * s->win[i];
    }
    s->k_lo = bin_at(20.0, n, rate);
    s->k_hi = bin_at(nyq < 20000.0 ? nyq : 20000.0, n, rate);
    if (s->k_hi > half)
        s->k_hi = half;
    if (s->k_hi > MAX_LTAS)
        return 0;
    for (int b = 0; b < 8; b++) {
        int k = bin_at(BAND_EDGES[b], n, rate);
        s->band_start[b] = k < s->k_lo ? s->k_lo : (k > s->k_hi ? s->k_hi : k);
    }
    s->c_lo = bin_at(CHROMA_LO, n, rate);
    s->c_hi = bin_at(CHROMA_HI, n, rate);
    if (s->c_hi > s->k_hi)
        s->c_hi = s->k_hi;
    for (int k = s->c_lo; k < s->c_hi; k++) {
        long pc = (lround(12.0 * log2((double)k * rate / n / 440.0)) + 9) % 12;
        s->chroma_class[k] = (unsigned char)(pc < 0 ? pc + 12 : pc);
    }
    s->tau_lo = (int)ceil(rate / (2.0 * HARMONIC_F0_HI));
    s->tau_hi = (int)floor(rate / (2.0 * HARMONIC_F0_LO));
    if (s->tau_lo < 1 || s->tau_hi + 1 >= n / 4)
        return 0;
    for (int i = 0; i < n; i++)
        s->buf[i] = s->win[i];
    power_spectrum(s);
    lag_autocorrelation(s, s->power);
    for (int t = 0; t <= s->tau_hi + 1; t++)
        s->rw_inv[t] = s->buf[0] / s->buf[t];

    s->frame_rate = (double)rate / s->ohop;
    s->pre_max = s->post_max = frames_of(PICK_MAX_MS, s->frame_rate);
    s->pre_avg = s->post_avg = frames_of(PICK_AVG_MS, s->frame_rate);
    s->wait = frames_of(PICK_WAIT_MS, s->frame_rate);
    s->lookahead = s->post_max > s->post_avg ? s->post_max : s->post_avg;
    if (s->pre_avg + s->post_avg + 1 > PICK_RING || s->pre_max + s->post_max + 1 > PICK_RING)
        return 0;
    s->lags = (int)ceil(MAX_LAG_S * s->frame_rate) + 1;
    if (s->lags > MAX_LAG)
        return 0;
    s->hp_a = exp(-2.0 * LG_PI * HIGHPASS_HZ / s->frame_rate);
    return 1;
}

lg_fingerprint *lg_fingerprint_new(int sample_rate, int channels)
{
    if (sample_rate < 8000 || sample_rate > 384000 || channels < 1 || channels > 6)
        return NULL;
    lg_fingerprint *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    const int n = 1 << (int)lround(log2(0.1 * sample_rate));
    s->rate = sample_rate;
    s->channels = channels;
    s->n = n;
    s->hop = n / 2;
    s->owin = n / 4;
    s->ohop = n / 8;
    s->block = (int)lround(0.1 * sample_rate);
    s->ws = (int)lround(3.0 * sample_rate);
    s->wm = (int)lround(0.4 * sample_rate);
    s->report_cap = CHUNK / s->block + 2;
    s->meter = lg_loudness_new(sample_rate, channels, s->block);
    /* the detector's own peak picking is unused: its envelope is read through lg_onsets_flux */
    double hop_ms = 1000.0 * s->ohop / sample_rate;
    int pick_max = (int)lround(PICK_MAX_MS / hop_ms), pick_avg = (int)lround(PICK_AVG_MS / hop_ms);
    s->onsets = lg_onsets_new(sample_rate, s->owin, s->ohop, ONSET_BPO, ONSET_FMIN, ONSET_FMAX,
                              ONSET_COMPRESSION, ONSET_RELEASE, pick_avg, pick_avg, pick_max,
                              pick_max, 0.0, ONSET_DELTA, -60.0, 0);
    s->fft = lg_fft_new(n);
    s->afft = lg_fft_new(n / 2);
    s->win = malloc(sizeof(double) * (size_t)n);
    s->chroma_class = calloc((size_t)n / 2 + 1, 1);
    s->rw_inv = malloc(sizeof(double) * (size_t)n / 4);
    s->ring = malloc(sizeof(double) * (size_t)n);
    s->buf = malloc(sizeof(double) * (size_t)n);
    s->spec = malloc(sizeof(double) * (size_t)(n + 2));
    s->power = malloc(sizeof(double) * (size_t)(n / 2 + 1));
    s->clean = malloc(sizeof(float) * (size_t)CHUNK * (size_t)channels);
    s->mono = malloc(sizeof(float) * CHUNK);
    s->momentary = malloc(sizeof(double) * (size_t)s->report_cap);
    s->short_term = malloc(sizeof(double) * (size_t)s->report_cap);
    s->flux_cap = s->onsets ? lg_onsets_max_outputs(s->onsets, CHUNK) : 0;
    s->flux = malloc(sizeof(double) * (size_t)(s->flux_cap > 0 ? s->flux_cap : 1));
    if (!s->meter || !s->onsets || !s->fft || !s->afft || !s->win || !s->chroma_class ||
        !s->rw_inv || !s->ring || !s->buf || !s->spec || !s->power || !s->clean || !s->mono ||
        !s->momentary || !s->short_term || !s->flux || s->flux_cap <= 0 || !setup(s)) {
        lg_fingerprint_free(s);
        return NULL;
    }
    lg_fingerprint_reset(s);
    return s;
}

/* Spectral frame k, samples [(k - 1) hop, (k + 1) hop) windowed into buf, silence outside
 * [0, end). */
static void frame_from_ring(lg_fingerprint *s, long long k, long long end)
{
    const int n = s->n;
    const long long start = (k - 1) * s->hop;
    const double *w = s->win;
    double *out = s->buf;
    if (start >= 0 && start + n <= end) {
        const int at = (int)(start & (n - 1));
        const double *r = s->ring + at;
        for (int i = 0; i < n - at; i++)
            out[i] = w[i] * r[i];
        for (int i = n - at; i < n; i++)
            out[i] = w[i] * s->ring[i - (n - at)];
        return;
    }
    for (int i = 0; i < n; i++) {
        long long pos = start + i;
        out[i] = pos >= 0 && pos < end ? w[i] * s->ring[pos & (n - 1)] : 0.0;
    }
}

/* Of the bin powers p[0 .. count) floored at FLATNESS_FLOOR * mean: their arithmetic mean
 * (returned) and the ln of their geometric mean over mean (in *log_gm). The products run over
 * 16 values at a time in four interleaved lanes and are renormalised with frexp: one log per
 * frame instead of one per bin, and the order of operations depends only on count. */
static double flat_means(const double *p, int count, double mean, double *log_gm)
{
    const double floor = FLATNESS_FLOOR * mean, scale = 1.0 / mean;
    double mant = 1.0, sum[4] = {0.0, 0.0, 0.0, 0.0};
    long exps = 0;
    int e;
    for (int i = 0; i < count; i += 16) {
        int len = count - i < 16 ? count - i : 16;
        double prod[4] = {1.0, 1.0, 1.0, 1.0};
        for (int j = 0; j < len; j++) {
            double v = p[i + j] > floor ? p[i + j] : floor;
            sum[j & 3] += v;
            prod[j & 3] *= v * scale;
        }
        mant = frexp(mant * ((prod[0] * prod[1]) * (prod[2] * prod[3])), &e);
        exps += e;
    }
    *log_gm = (log(mant) + (double)exps * log(2.0)) / count;
    return ((sum[0] + sum[1]) + (sum[2] + sum[3])) / count;
}

/* The first bin k in [lo, hi) at which the cumulative power from lo reaches target (hi - 1 if
 * none), stepping 8 bins at a time until the step that reaches it. */
static int rolloff_bin(const double *p, int lo, int hi, double target)
{
    double cum = 0.0;
    int k = lo;
    for (; k + 8 <= hi; k += 8) {
        const double *q = p + k;
        double step = ((q[0] + q[1]) + (q[2] + q[3])) + ((q[4] + q[5]) + (q[6] + q[7]));
        if (cum + step >= target)
            break;
        cum += step;
    }
    for (; k < hi - 1; k++) {
        cum += p[k];
        if (cum >= target)
            return k;
    }
    return hi - 1;
}

/* Pearson correlation of two chroma vectors, 0 if either is constant. */
static double chroma_correlation(const double *a, const double *b)
{
    double ma = 0.0, mb = 0.0, sab = 0.0, saa = 0.0, sbb = 0.0;
    for (int c = 0; c < CHROMA; c++) {
        ma += a[c];
        mb += b[c];
    }
    ma /= CHROMA;
    mb /= CHROMA;
    for (int c = 0; c < CHROMA; c++) {
        double x = a[c] - ma, y = b[c] - mb;
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    return saa > 0.0 && sbb > 0.0 ? sab / sqrt(saa * sbb) : 0.0;
}

/* The highest local maximum of the frame's normalised autocorrelation over the harmonic lags. */
static double harmonicity(lg_fingerprint *s, const double *p)
{
    lag_autocorrelation(s, p);
    double *r = s->buf, best = 0.0;
    if (!(r[0] > 0.0))
        return 0.0;
    const double inv = 1.0 / r[0];
    for (int t = s->tau_lo - 1; t <= s->tau_hi + 1; t++)
        r[t] *= inv * s->rw_inv[t];
    for (int t = s->tau_lo; t <= s->tau_hi; t++)
        if (r[t] > r[t - 1] && r[t] >= r[t + 1] && r[t] > best)
            best = r[t];
    return best < 1.0 ? best : 1.0;
}

/* Spectral frame k of a stream ending at end, into acc. */
static void spectral_frame(lg_fingerprint *s, lg_fingerprint_spec *acc, long long k, long long end)
{
    frame_from_ring(s, k, end);
    power_spectrum(s);
    const double *p = s->power;
    const int lo = s->k_lo, hi = s->k_hi;
    const double hz = (double)s->rate / s->n;
    double es[4] = {0.0, 0.0, 0.0, 0.0}, ms[4] = {0.0, 0.0, 0.0, 0.0};
    for (int b = lo; b < hi; b++) {
        acc->ltas[b] += p[b];
        es[b & 3] += p[b];
        ms[b & 3] += (double)b * p[b];
    }
    double e = (es[0] + es[1]) + (es[2] + es[3]);
    double moment = (ms[0] + ms[1]) + (ms[2] + ms[3]);
    if (!(hi > lo && 2.0 * e / ((double)s->n * s->win_power) >= SILENCE_POWER)) {
        acc->prev_voiced = 0;
        return;
    }
    acc->voiced++;
    acc->centroid += moment / e * hz;
    acc->rolloff += rolloff_bin(p, lo, hi, ROLLOFF * e) * hz;
    const int count = hi - lo;
    const double mean = e / count;
    double log_gm, arith = flat_means(p + lo, count, mean, &log_gm);
    double flat = exp(log_gm) * mean / arith;
    acc->flatness += flat < 1.0 ? flat : 1.0;

    double chroma[CHROMA] = {0.0};
    double csum = 0.0;
    for (int b = s->c_lo; b < s->c_hi; b++)
        chroma[s->chroma_class[b]] += p[b];
    for (int c = 0; c < CHROMA; c++)
        csum += chroma[c];
    if (csum > 0.0) {
        double h = 0.0;
        for (int c = 0; c < CHROMA; c++)
            h += (chroma[c] / csum) * (chroma[c] / csum);
        acc->chroma += (12.0 * h - 1.0) / 11.0;
    }
    if (acc->prev_voiced) {
        double r = chroma_correlation(acc->prev_chroma, chroma);
        acc->stability += r > 0.0 ? r : 0.0;
        acc->pairs++;
    }
    memcpy(acc->prev_chroma, chroma, sizeof chroma);
    acc->prev_voiced = 1;
    acc->harmonic += harmonicity(s, p);
}

/* Decides whether envelope frame j is an onset, given frames 0 .. last. */
static void pick(const lg_fingerprint *s, lg_fingerprint_env *env, long long j, long long last)
{
    if (!env->loud[j % PICK_RING] || j - env->last_onset < s->wait)
        return;
    const double v = env->flux[j % PICK_RING];
    long long a = j - s->pre_max < 0 ? 0 : j - s->pre_max;
    long long b = j + s->post_max > last ? last : j + s->post_max;
    for (long long i = a; i <= b; i++)
        if (env->flux[i % PICK_RING] > v)
            return;
    a = j - s->pre_avg < 0 ? 0 : j - s->pre_avg;
    b = j + s->post_avg > last ? last : j + s->post_avg;
    double sum = 0.0;
    for (long long i = a; i <= b; i++)
        sum += env->flux[i % PICK_RING];
    if (v >= sum / (double)(b - a + 1) + ONSET_DELTA) {
        env->onsets++;
        env->last_onset = j;
    }
}

/* The next onset envelope value: autocorrelation after the high-pass, and peak picking of the
 * frames whose lookahead it completes. */
static void envelope_frame(lg_fingerprint *s, lg_fingerprint_env *env, double flux, int loud)
{
    const long long j = env->frames++;
    env->flux[j % PICK_RING] = flux;
    env->loud[j % PICK_RING] = (unsigned char)loud;
    double y = s->hp_a * (env->hp_y + flux - env->hp_x);
    env->hp_x = flux;
    env->hp_y = y;
    const int len = MAX_LAG + 1, pos = (int)(j % len);
    env->d[pos] = y;
    for (int t = 0; t <= s->lags; t++) {
        int q = pos - t;
        env->ac[t] += y * env->d[q < 0 ? q + len : q];
    }
    while (env->decided + s->lookahead <= j) {
        pick(s, env, env->decided, j);
        env->decided++;
    }
}

static void hist_add(lg_fingerprint_hist *h, double lufs)
{
    if (!(lufs > HIST_MIN))
        return;
    double pos = floor((lufs - HIST_MIN) / HIST_STEP);
    int k = pos < HIST_BINS - 1 ? (int)pos : HIST_BINS - 1;
    h->count[k]++;
    h->power[k] += pow(10.0, (lufs - LUFS_OFFSET) / 10.0);
    h->sum[k] += lufs;
    h->sum2[k] += lufs * lufs;
}

static void block_done(lg_fingerprint *s)
{
    const double len = (double)s->blk_len * s->channels;
    const double sq = s->blk_sq + s->blk_ll + s->blk_rr;
    s->total_sq += sq;
    s->peak = s->blk_peak > s->peak ? s->blk_peak : s->peak;
    s->ll += s->blk_ll;
    s->rr += s->blk_rr;
    s->lr += s->blk_lr;
    if (sq < SILENCE_POWER * len)
        s->silent += s->blk_len;
    s->grp_sq += sq;
    s->grp_peak = s->blk_peak > s->grp_peak ? s->blk_peak : s->grp_peak;
    if (++s->grp_blocks == GROUP_BLOCKS) {
        double ms = s->grp_sq / ((double)s->block * GROUP_BLOCKS * s->channels);
        if (ms >= SILENCE_POWER) {
            double crest = 10.0 * log10(s->grp_peak * s->grp_peak / ms);
            s->groups++;
            s->crest_sum += crest;
            s->crest_sum2 += crest * crest;
            s->peak_sum += s->grp_peak;
            s->peak_max = s->grp_peak > s->peak_max ? s->grp_peak : s->peak_max;
        }
        s->grp_blocks = 0;
        s->grp_sq = s->grp_peak = 0.0;
    }
    s->blk_len = 0;
    s->blk_sq = s->blk_peak = s->blk_ll = s->blk_rr = s->blk_lr = 0.0;
}

/* Per-frame work for len frames that cross no onset-hop or block boundary: the mono mix into
 * the ring and mono[], block sums (blk_sq holds the channels beyond the first two, whose
 * squares are blk_ll and blk_rr). Inlined with a constant channel count. */
static inline __attribute__((always_inline)) void samples(lg_fingerprint *s, const float *x,
                                                          float *mono, int len, const int ch)
{
    double *ring = s->ring;
    const long long mask = s->n - 1, pos = s->frames;
    double sq = s->blk_sq, peak = s->blk_peak, ll = s->blk_ll, rr = s->blk_rr, lr = s->blk_lr;
    double hop_sq = s->hop_sq;
    const double inv = 1.0 / ch;
    for (int i = 0; i < len; i++) {
        const float *f = x + (size_t)i * (size_t)ch;
        double m;
        if (ch == 1) {
            double v = f[0], a = fabs(v);
            sq += v * v;
            peak = a > peak ? a : peak;
            m = v;
        } else {
            double l = f[0], r = f[1], al = fabs(l), ar = fabs(r), sum = l + r;
            ll += l * l;
            rr += r * r;
            lr += l * r;
            peak = al > peak ? al : peak;
            peak = ar > peak ? ar : peak;
            for (int c = 2; c < ch; c++) {
                double v = f[c], a = fabs(v);
                sum += v;
                sq += v * v;
                peak = a > peak ? a : peak;
            }
            m = sum * inv;
            mono[i] = (float)m;
        }
        ring[(pos + i) & mask] = m;
        hop_sq += m * m;
    }
    s->blk_sq = sq;
    s->blk_peak = peak;
    s->blk_ll = ll;
    s->blk_rr = rr;
    s->blk_lr = lr;
    s->hop_sq = hop_sq;
}

/* The per-frame pass over a sanitised chunk, with the spectral frames and blocks it completes. */
static void consume(lg_fingerprint *s, const float *x, int len)
{
    const int ch = s->channels;
    for (int i = 0; i < len;) {
        int run = len - i;
        int to_hop = s->ohop - (int)(s->frames % s->ohop);
        int to_block = s->block - s->blk_len;
        run = to_hop < run ? to_hop : run;
        run = to_block < run ? to_block : run;
        const float *f = x + (size_t)i * (size_t)ch;
        switch (ch) {
        case 1:
            samples(s, f, s->mono + i, run, 1);
            break;
        case 2:
            samples(s, f, s->mono + i, run, 2);
            break;
        default:
            samples(s, f, s->mono + i, run, ch);
            break;
        }
        s->frames += run;
        s->blk_len += run;
        i += run;
        if (s->frames % s->ohop == 0) {
            s->hop_energy[(s->frames / s->ohop - 1) % HOP_RING] = s->hop_sq;
            s->hop_sq = 0.0;
            if (s->frames % s->hop == 0)
                spectral_frame(s, &s->spec_acc, s->frames / s->hop - 1, s->frames);
        }
        if (s->blk_len == s->block)
            block_done(s);
    }
}

/* The onset detector over a mono chunk, and each envelope value it completes; frame j spans
 * onset hops j and j + 1, whose mono energy gates it. */
static void onset_envelope(lg_fingerprint *s, const float *mono, int len)
{
    int count = lg_onsets_flux(s->onsets, mono, len, s->flux, s->flux_cap);
    const double gate = SILENCE_POWER * s->owin;
    for (int i = 0; i < count; i++) {
        long long j = s->env.frames;
        double e = s->hop_energy[j % HOP_RING] + s->hop_energy[(j + 1) % HOP_RING];
        envelope_frame(s, &s->env, s->flux[i], e >= gate);
    }
}

int lg_fingerprint_process(lg_fingerprint *s, const float *in, int n)
{
    if (!s || n < 0 || (n > 0 && !in))
        return LG_ERR_ARGUMENT;
    const int ch = s->channels;
    for (int off = 0; off < n; off += CHUNK) {
        const int len = n - off < CHUNK ? n - off : CHUNK;
        const float *src = in + (size_t)off * (size_t)ch;
        long long bad = 0;
        for (int i = 0; i < len * ch; i++) {
            float v = src[i];
            int ok = isfinite(v);
            s->clean[i] = ok ? v : 0.0f;
            bad += !ok;
        }
        s->nonfinite += bad;
        int count = lg_loudness_process(s->meter, s->clean, len, s->momentary, s->short_term,
                                        s->report_cap);
        for (int r = 0; r < count; r++)
            if (++s->reports * s->block >= s->ws)
                hist_add(&s->hist, s->short_term[r]);
        consume(s, s->clean, len);
        onset_envelope(s, ch == 1 ? s->clean : s->mono, len);
    }
    return n;
}

/* Normalised autocorrelation at a fractional lag (linear interpolation), 0 beyond the lags. */
static double ac_at(const double *ac, int lags, double lag)
{
    int i = (int)floor(lag);
    if (i < 0 || i + 1 > lags)
        return 0.0;
    double f = lag - i;
    return (ac[i] + f * (ac[i + 1] - ac[i])) / ac[0];
}

/* Tempo (BPM) and rhythm stability from the envelope's autocorrelation. */
static void tempo(const lg_fingerprint *s, const lg_fingerprint_env *env, double *bpm,
                  double *stability)
{
    *bpm = 0.0;
    *stability = 0.0;
    if (!(env->ac[0] > 0.0))
        return;
    const int steps = (int)lround((TEMPO_MAX - TEMPO_MIN) / TEMPO_STEP);
    double best = 0.0;
    for (int i = 0; i <= steps; i++) {
        double t = TEMPO_MIN + i * TEMPO_STEP;
        double lag = 60.0 * s->frame_rate / t;
        double comb = 0.0;
        for (int k = 1; k <= COMB; k++)
            comb += ac_at(env->ac, s->lags, k * lag);
        comb /= COMB;
        double z = log2(t / TEMPO_PRIOR) / TEMPO_OCTAVES;
        double score = comb * exp(-0.5 * z * z);
        if (score > best) {
            best = score;
            *bpm = t;
            *stability = comb < 1.0 ? comb : 1.0;
        }
    }
}

/* Standard deviation of the short-term loudness values passing the EBU Tech 3342 gates. */
static double loudness_variation(const lg_fingerprint_hist *h)
{
    long long n = 0;
    double power = 0.0;
    for (int k = 0; k < HIST_BINS; k++) {
        n += h->count[k];
        power += h->power[k];
    }
    if (n < 2)
        return 0.0;
    const double gate = LUFS_OFFSET + 10.0 * log10(power / (double)n) - 20.0;
    long long m = 0;
    double sum = 0.0, sum2 = 0.0;
    for (int k = 0; k < HIST_BINS; k++) {
        if (h->count[k] == 0)
            continue;
        /* a bin straddling the gate goes by its mean; the last bin also holds all above it */
        double lo = HIST_MIN + HIST_STEP * k;
        double hi = k == HIST_BINS - 1 ? HUGE_VAL : lo + HIST_STEP;
        if (lo < gate && (hi <= gate || !(h->sum[k] / (double)h->count[k] > gate)))
            continue;
        m += h->count[k];
        sum += h->sum[k];
        sum2 += h->sum2[k];
    }
    if (m < 2)
        return 0.0;
    double mean = sum / (double)m, var = sum2 / (double)m - mean * mean;
    return var > 0.0 ? sqrt(var) : 0.0;
}

static double clamp(double v, double lo, double hi) { return v < lo ? lo : (v > hi ? hi : v); }

int lg_fingerprint_result(lg_fingerprint *s, double *out)
{
    if (!s || !out)
        return LG_ERR_ARGUMENT;
    const long long n = s->frames;
    const int ch = s->channels;
    lg_fingerprint_spec *spec = &s->spec_tmp;
    lg_fingerprint_env *env = &s->env_tmp;
    *spec = s->spec_acc;
    *env = s->env;
    if (n % s->hop != 0)
        spectral_frame(s, spec, n / s->hop, n);
    for (long long last = env->frames - 1; env->decided <= last; env->decided++)
        pick(s, env, env->decided, last);

    /* stream totals with the open block */
    const double blk_sq = s->blk_sq + s->blk_ll + s->blk_rr;
    const double total_sq = s->total_sq + blk_sq;
    const double peak = s->blk_peak > s->peak ? s->blk_peak : s->peak;
    const double ll = s->ll + s->blk_ll, rr = s->rr + s->blk_rr, lr = s->lr + s->blk_lr;
    long long silent = s->silent;
    if (s->blk_len > 0 && blk_sq < SILENCE_POWER * (double)s->blk_len * ch)
        silent += s->blk_len;

    /* frequency bands and bass/mid from the long-term spectrum */
    double band[7], in_range = 0.0;
    for (int b = 0; b < 7; b++) {
        band[b] = 0.0;
        for (int k = s->band_start[b]; k < s->band_start[b + 1]; k++)
            band[b] += spec->ltas[k];
        in_range += band[b];
    }
    for (int b = 0; b < 7; b++)
        out[b] = in_range > 0.0 ? band[b] / in_range : 0.0;
    const double bass = band[0] + band[1], mid = band[2] + band[3] + band[4];
    if (bass > 0.0 && mid > 0.0)
        out[9] = clamp(10.0 * log10(bass / mid), -60.0, 60.0);
    else
        out[9] = bass > 0.0 ? 60.0 : (mid > 0.0 ? -60.0 : 0.0);

    /* loudness and crest factor */
    double lufs = lg_loudness_integrated(s->meter);
    if (isnan(lufs) && n > 0 && n < s->wm)
        lufs = lg_loudness_momentary(s->meter) + 10.0 * log10((double)s->wm / (double)n);
    out[7] = lufs > -70.0 ? fmin(lufs, LOUDEST_LUFS) : -70.0;
    const double ms = n > 0 ? total_sq / ((double)n * ch) : 0.0;
    out[8] = ms > 0.0 ? 10.0 * log10(peak * peak / ms) : 0.0;

    /* temporal */
    tempo(s, env, &out[10], &out[11]);
    out[12] = n > 0 ? (double)env->onsets * s->rate / (double)n : 0.0;
    out[13] = n > 0 ? (double)silent / (double)n : 0.0;

    /* spectral and harmonic */
    const double v = (double)spec->voiced;
    out[14] = v > 0 ? spec->centroid / v : 0.0;
    out[15] = v > 0 ? spec->rolloff / v : 0.0;
    out[16] = v > 0 ? spec->flatness / v : 0.0;
    out[17] = v > 0 ? spec->harmonic / v : 0.0;
    out[18] = spec->pairs > 0 ? spec->stability / (double)spec->pairs : 0.0;
    out[19] = v > 0 ? spec->chroma / v : 0.0;

    /* variation */
    const double g = (double)s->groups;
    out[20] = 0.0;
    if (s->groups >= 2) {
        double mean = s->crest_sum / g, var = s->crest_sum2 / g - mean * mean;
        out[20] = var > 0.0 ? sqrt(var) : 0.0;
    }
    out[21] = loudness_variation(&s->hist);
    out[22] = s->groups > 0 && s->peak_max > 0.0 ? s->peak_sum / g / s->peak_max : 1.0;

    /* stereo */
    out[23] = 0.0;
    out[24] = 1.0;
    if (ch >= 2 && ll + rr > 0.0) {
        out[23] = clamp((ll + rr - 2.0 * lr) / (2.0 * (ll + rr)), 0.0, 1.0);
        out[24] = ll > 0.0 && rr > 0.0 ? clamp(lr / sqrt(ll * rr), -1.0, 1.0) : 0.0;
    }
    return LG_OK;
}

long long lg_fingerprint_frames(const lg_fingerprint *s) { return s ? s->frames : 0; }

long long lg_fingerprint_nonfinite(const lg_fingerprint *s) { return s ? s->nonfinite : 0; }

long long lg_fingerprint_onsets(const lg_fingerprint *s) { return s ? s->env.onsets : 0; }

#define FINGERPRINT_CHECKPOINT 1

static void transfer(lg_ck *ck, void *state)
{
    lg_fingerprint *s = state;
    const int config[] = {s->rate, s->channels, s->n,      s->hop,  s->ohop,
                          s->owin, s->block,    s->ws,     s->wm,   s->k_lo,
                          s->k_hi, s->c_lo,     s->c_hi,   s->tau_lo, s->tau_hi,
                          s->wait, s->lookahead, s->lags};
    lg_ck_config(ck, config, sizeof config);
    int block[2] = {s->blk_len, s->grp_blocks};
    long long counts[3] = {s->frames, s->reports, s->groups};
    lg_fingerprint_env env = s->env;
    lg_ck_value(ck, block, sizeof block);
    lg_ck_value(ck, counts, sizeof counts);
    lg_ck_value(ck, &env, sizeof env);
    if (block[0] < 0 || block[0] >= s->block || block[1] < 0 || counts[0] < 0 || counts[1] < 0 ||
        counts[2] < 0 || env.frames < 0 || env.decided < 0 || env.decided > env.frames)
        lg_ck_refuse(ck);
    lg_loudness_transfer(ck, s->meter);
    lg_onsets_transfer(ck, s->onsets);
    lg_ck_state(ck, s->ring, sizeof(double) * (size_t)s->n);
    double *sums[] = {&s->blk_sq,   &s->blk_peak, &s->blk_ll,     &s->blk_rr,   &s->blk_lr,
                      &s->hop_sq,   &s->grp_sq,   &s->grp_peak,   &s->total_sq, &s->peak,
                      &s->ll,       &s->rr,       &s->lr,         &s->crest_sum,
                      &s->crest_sum2, &s->peak_sum, &s->peak_max};
    for (size_t k = 0; k < sizeof sums / sizeof sums[0]; k++)
        lg_ck_state(ck, sums[k], sizeof(double));
    lg_ck_state(ck, &s->nonfinite, sizeof s->nonfinite);
    lg_ck_state(ck, &s->silent, sizeof s->silent);
    lg_ck_state(ck, s->hop_energy, sizeof s->hop_energy);
    lg_ck_state(ck, &s->spec_acc, sizeof s->spec_acc);
    lg_ck_state(ck, &s->hist, sizeof s->hist);
    if (lg_ck_restoring(ck)) {
        s->blk_len = block[0];
        s->grp_blocks = block[1];
        s->frames = counts[0];
        s->reports = counts[1];
        s->groups = counts[2];
        s->env = env;
    }
}

LG_CK_FUNCTIONS(lg_fingerprint_save, lg_fingerprint_load, lg_fingerprint, "fprint", FINGERPRINT_CHECKPOINT, transfer)
