/* Streaming YIN pitch estimator; see yin.h for the definition of every quantity. */
#include "yin.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "fft.h"

#define LG_YIN_MAX_WINDOW (1 << 20)

struct lg_yin {
    double sample_rate;
    int window;        /* effective window W */
    int hop;
    int min_lag;
    int max_lag;
    int integ;         /* integration window w = W - max_lag */
    int nfft;          /* power of two >= W: no circular wrap for lags <= max_lag */
    double threshold;
    double silence_ms; /* mean-square silence floor, from silence_db */
    lg_fft *fft;
    double *buf;       /* nfft: the next frame's samples in [0, fill), zeros from W on */
    int fill;
    double *head;      /* nfft: the frame's first w samples, zeros after */
    double *probe;     /* nfft: a frame given to lg_yin_frame_cmnd, zeros from W on */
    double *spec;      /* nfft + 2: frame spectrum, then the cross-spectrum */
    double *hspec;     /* nfft + 2: spectrum of head */
    double *corr;      /* nfft: r(tau) */
    double *energy;    /* W + 1: prefix sums of squares */
    double *diff;      /* max_lag + 1: d */
    double *cmnd;      /* max_lag + 1: d' */
    int64_t nonfinite;
};

static int next_pow2(int n)
{
    int p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

void lg_yin_free(lg_yin *y)
{
    if (!y)
        return;
    lg_fft_free(y->fft);
    free(y->buf);
    free(y->head);
    free(y->probe);
    free(y->spec);
    free(y->hspec);
    free(y->corr);
    free(y->energy);
    free(y->diff);
    free(y->cmnd);
    free(y);
}

lg_yin *lg_yin_new(double sample_rate, int window, int hop, double fmin, double fmax,
                   double threshold, double silence_db)
{
    if (!(isfinite(sample_rate) && isfinite(fmin) && isfinite(fmax) && isfinite(threshold) &&
          isfinite(silence_db)))
        return NULL;
    if (sample_rate <= 0.0 || window < 32 || window > LG_YIN_MAX_WINDOW || hop < 1 ||
        hop > window || fmin <= 0.0 || fmin >= fmax || threshold <= 0.0 || threshold > 1.0)
        return NULL;
    double lag_hi = ceil(sample_rate / fmin);
    if (lag_hi > LG_YIN_MAX_WINDOW)
        return NULL;
    int max_lag = (int)lag_hi;
    int min_lag = (int)floor(sample_rate / fmax);
    if (min_lag < 2)
        min_lag = 2;
    if (min_lag >= max_lag)
        return NULL;
    int eff = window;
    if (2 * (eff - max_lag) < max_lag) {
        eff = next_pow2(max_lag + (max_lag + 1) / 2);
        if (eff > LG_YIN_MAX_WINDOW)
            return NULL;
    }
    lg_yin *y = calloc(1, sizeof *y);
    if (!y)
        return NULL;
    y->sample_rate = sample_rate;
    y->window = eff;
    y->hop = hop;
    y->min_lag = min_lag;
    y->max_lag = max_lag;
    y->integ = eff - max_lag;
    y->nfft = next_pow2(eff);
    y->threshold = threshold;
    y->silence_ms = pow(10.0, silence_db / 10.0);
    size_t nf = (size_t)y->nfft;
    y->fft = lg_fft_new(y->nfft);
    y->buf = calloc(nf, sizeof(double));
    y->head = calloc(nf, sizeof(double));
    y->probe = calloc(nf, sizeof(double));
    y->spec = calloc(nf + 2, sizeof(double));
    y->hspec = calloc(nf + 2, sizeof(double));
    y->corr = calloc(nf, sizeof(double));
    y->energy = calloc((size_t)eff + 1, sizeof(double));
    y->diff = calloc((size_t)max_lag + 1, sizeof(double));
    y->cmnd = calloc((size_t)max_lag + 1, sizeof(double));
    if (!y->fft || !y->buf || !y->head || !y->probe || !y->spec || !y->hspec || !y->corr ||
        !y->energy || !y->diff || !y->cmnd) {
        lg_yin_free(y);
        return NULL;
    }
    return y;
}

void lg_yin_reset(lg_yin *y)
{
    memset(y->buf, 0, sizeof(double) * (size_t)y->nfft);
    y->fill = 0;
    y->nonfinite = 0;
}

int lg_yin_window(const lg_yin *y) { return y->window; }
int lg_yin_min_lag(const lg_yin *y) { return y->min_lag; }
int lg_yin_max_lag(const lg_yin *y) { return y->max_lag; }
int lg_yin_fft_size(const lg_yin *y) { return y->nfft; }
int64_t lg_yin_nonfinite(const lg_yin *y) { return y->nonfinite; }

int lg_yin_max_outputs(const lg_yin *y, int n)
{
    if (n < 0)
        return 0;
    long long have = (long long)y->fill + n;
    if (have < y->window)
        return 0;
    long long frames = 1 + (have - y->window) / y->hop;
    return frames > INT_MAX ? INT_MAX : (int)frames;
}

/* Prefix sums of squares of the frame x[0..W); returns its mean square. */
static double energies(lg_yin *y, const double *x)
{
    double *e = y->energy;
    e[0] = 0.0;
    for (int i = 0; i < y->window; i++)
        e[i + 1] = e[i] + x[i] * x[i];
    return e[y->window] / (double)y->window;
}

/* d and d' of the frame x[0..W) (zero from W to nfft), after energies(y, x). */
static void difference(lg_yin *y, const double *x)
{
    const int w = y->integ, L = y->max_lag, nf = y->nfft;
    memcpy(y->head, x, sizeof(double) * (size_t)w);
    lg_fft_forward(y->fft, x, y->spec);
    lg_fft_forward(y->fft, y->head, y->hspec);
    double *a = y->spec;
    const double *b = y->hspec;
    for (int k = 0; k <= nf / 2; k++) {
        double ar = a[2 * k], ai = a[2 * k + 1], br = b[2 * k], bi = b[2 * k + 1];
        a[2 * k] = br * ar + bi * ai; /* conj(B) A */
        a[2 * k + 1] = br * ai - bi * ar;
    }
    lg_fft_inverse(y->fft, a, y->corr);
    const double *r = y->corr, *e = y->energy;
    double *d = y->diff, *dn = y->cmnd;
    const double e0 = e[w];
    d[0] = 0.0;
    dn[0] = 1.0;
    double sum = 0.0;
    for (int tau = 1; tau <= L; tau++) {
        double v = e0 + (e[tau + w] - e[tau]) - 2.0 * r[tau];
        d[tau] = v > 0.0 ? v : 0.0; /* rounding can take a perfect match just below zero */
        sum += d[tau];
        dn[tau] = sum > 0.0 ? d[tau] * (double)tau / sum : 1.0;
    }
}

/* Period estimate from d' (threshold, local minimum) and d (parabolic vertex). */
static void pick(const lg_yin *y, double *f0, double *confidence, int *voiced)
{
    const double *d = y->diff, *dn = y->cmnd;
    const int lo = y->min_lag, hi = y->max_lag;
    int best = -1;
    for (int tau = lo; tau <= hi; tau++) {
        if (dn[tau] >= y->threshold)
            continue;
        while (tau < hi && dn[tau + 1] < dn[tau])
            tau++;
        if (tau == lo && dn[lo - 1] < dn[lo]) {
            /* Still falling into min_lag: the dip lies below the range; skip past it. */
            while (tau < hi && dn[tau + 1] < y->threshold)
                tau++;
            continue;
        }
        best = tau;
        break;
    }
    *voiced = best >= 0;
    if (best < 0) {
        best = lo;
        for (int tau = lo + 1; tau <= hi; tau++)
            if (dn[tau] < dn[best])
                best = tau;
    }
    double c = 1.0 - dn[best];
    *confidence = c < 0.0 ? 0.0 : (c > 1.0 ? 1.0 : c);
    if (!*voiced) {
        *f0 = 0.0;
        return;
    }
    double shift = 0.0;
    if (best < hi) {
        double dl = d[best - 1], dc = d[best], dr = d[best + 1];
        double curv = dl - 2.0 * dc + dr;
        if (curv > 0.0) {
            shift = 0.5 * (dl - dr) / curv;
            if (shift > 1.0)
                shift = 1.0;
            else if (shift < -1.0)
                shift = -1.0;
        }
    }
    *f0 = y->sample_rate / ((double)best + shift);
}

static void analyse(lg_yin *y, double *f0, double *confidence, int *voiced)
{
    if (!(energies(y, y->buf) >= y->silence_ms)) {
        *f0 = 0.0;
        *confidence = 0.0;
        *voiced = 0;
        return;
    }
    difference(y, y->buf);
    pick(y, f0, confidence, voiced);
}

int lg_yin_process(lg_yin *y, const float *in, int n, double *f0, double *confidence,
                   int *voiced, int cap)
{
    if (!y || n < 0 || (n > 0 && !in))
        return LG_ERR_ARGUMENT;
    int frames = lg_yin_max_outputs(y, n);
    if (frames > 0 && (!f0 || !confidence || !voiced))
        return LG_ERR_ARGUMENT;
    if (frames > cap)
        return LG_ERR_CAPACITY;
    const int W = y->window;
    int out = 0;
    int i = 0;
    while (i < n) {
        int take = W - y->fill;
        if (take > n - i)
            take = n - i;
        double *dst = y->buf + y->fill;
        for (int j = 0; j < take; j++) {
            float v = in[i + j];
            if (!isfinite(v)) {
                v = 0.0f;
                y->nonfinite++;
            }
            dst[j] = (double)v;
        }
        y->fill += take;
        i += take;
        if (y->fill == W) {
            analyse(y, f0 + out, confidence + out, voiced + out);
            out++;
            memmove(y->buf, y->buf + y->hop, sizeof(double) * (size_t)(W - y->hop));
            y->fill = W - y->hop;
        }
    }
    return out;
}

int lg_yin_frame_cmnd(lg_yin *y, const float *frame, double *diff, double *cmnd)
{
    if (!y || !frame || !diff || !cmnd)
        return LG_ERR_ARGUMENT;
    for (int i = 0; i < y->window; i++)
        y->probe[i] = isfinite(frame[i]) ? (double)frame[i] : 0.0;
    energies(y, y->probe);
    difference(y, y->probe);
    size_t lags = (size_t)y->max_lag + 1;
    memcpy(diff, y->diff, sizeof(double) * lags);
    memcpy(cmnd, y->cmnd, sizeof(double) * lags);
    return y->max_lag + 1;
}

#define YIN_CHECKPOINT 1

static void transfer(lg_ck *ck, void *state)
{
    lg_yin *y = state;
    lg_ck_config(ck, &y->sample_rate, sizeof y->sample_rate);
    lg_ck_config(ck, &y->window, sizeof y->window);
    lg_ck_config(ck, &y->hop, sizeof y->hop);
    lg_ck_config(ck, &y->min_lag, sizeof y->min_lag);
    lg_ck_config(ck, &y->max_lag, sizeof y->max_lag);
    lg_ck_config(ck, &y->threshold, sizeof y->threshold);
    lg_ck_config(ck, &y->silence_ms, sizeof y->silence_ms);
    int fill = y->fill;
    lg_ck_value(ck, &fill, sizeof fill);
    if (fill < 0 || fill >= y->window)
        lg_ck_refuse(ck);
    lg_ck_state(ck, y->buf, sizeof(double) * (size_t)y->window);
    lg_ck_state(ck, &y->nonfinite, sizeof y->nonfinite);
    if (lg_ck_restoring(ck))
        y->fill = fill;
}

LG_CK_FUNCTIONS(lg_yin_save, lg_yin_load, lg_yin, "yin", YIN_CHECKPOINT, transfer)

int lg_yin_step(lg_step *step, const float *in, int n)
{
    return lg_yin_process(step->state, in, n, step->out[0], step->out[1], step->out[2],
                          step->capacity);
}
