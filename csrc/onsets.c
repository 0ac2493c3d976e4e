/* Streaming spectral-flux onset detector; see onsets.h for the model and the parameters. */
#include "onsets.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fft.h"

struct lg_onsets {
    /* configuration */
    int window, hop, nfft, mu, latency;
    int pre_avg, post_avg, pre_max, post_max;
    double compression, delta, silence_power, offset;
    int64_t min_gap;
    /* filterbank: band b weights bins fb_first[b] .. fb_first[b] + fb_count[b] - 1 */
    int nbands, bin_lo, bin_hi;
    int *fb_first, *fb_count, *fb_offset;
    double *fb_weight;
    /* analysis buffers */
    lg_fft *fft;
    double *win;     /* periodic Hann / window sum */
    double *frame;   /* the current frame's samples, fill of them valid */
    double *fft_in;  /* nfft, zero beyond window */
    double *spec;    /* nfft + 2 */
    double *mag;     /* nfft / 2 + 1 */
    double *logband; /* nbands */
    int span, rows;  /* past frames in the reference maximum; rows = mu + span - 1 */
    double *prev;    /* rows of max-filtered log bands: row k % rows holds frame k */
    double *ref;     /* nbands: the reference the current frame is compared with */
    int ring;        /* length of the per-frame rings below */
    double *flux, *power, *sortbuf;
    double lambda, level, level_decay, level_floor;
    int use_median, agc;
    /* stream state */
    int fill;
    int64_t frames, decided, last_onset, nonfinite;
    int finished;
};

static const double LG_PI = 3.14159265358979323846;

void lg_onsets_free(lg_onsets *s)
{
    if (!s)
        return;
    lg_fft_free(s->fft);
    free(s->fb_first);
    free(s->fb_count);
    free(s->fb_offset);
    free(s->fb_weight);
    free(s->win);
    free(s->frame);
    free(s->fft_in);
    free(s->spec);
    free(s->mag);
    free(s->logband);
    free(s->prev);
    free(s->ref);
    free(s->flux);
    free(s->sortbuf);
    free(s->power);
    free(s);
}

/* Triangular bands on a log-frequency grid (440 * 2^(i / bpo) Hz) mapped to FFT bins; grid
 * points that land on the same bin are merged, so low bands become single bins. */
static int build_filterbank(lg_onsets *s, int sample_rate, int bpo, double fmin, double fmax)
{
    int half = s->nfft / 2;
    double top = fmax < 0.5 * sample_rate ? fmax : 0.5 * sample_rate;
    if (!(fmin > 0.0) || !(top > fmin))
        return -1;
    int lo = (int)floor(bpo * log2(fmin / 440.0));
    int hi = (int)ceil(bpo * log2(top / 440.0));
    int npoints = hi - lo + 1;
    int *bins = malloc(sizeof(int) * (size_t)npoints);
    if (!bins)
        return -1;
    int nbins = 0;
    for (int i = lo; i <= hi; i++) {
        double f = 440.0 * pow(2.0, (double)i / bpo);
        int b = (int)floor(f * s->nfft / sample_rate + 0.5);
        if (b > half)
            break;
        if (nbins == 0 || b != bins[nbins - 1])
            bins[nbins++] = b;
    }
    int ok = -1;
    s->nbands = nbins - 2;
    if (s->nbands >= 3) {
        s->fb_first = malloc(sizeof(int) * (size_t)s->nbands);
        s->fb_count = malloc(sizeof(int) * (size_t)s->nbands);
        s->fb_offset = malloc(sizeof(int) * (size_t)s->nbands);
        s->fb_weight = malloc(sizeof(double) * (size_t)(bins[nbins - 1] - bins[0]) * 2);
        if (s->fb_first && s->fb_count && s->fb_offset && s->fb_weight) {
            int off = 0;
            for (int b = 0; b < s->nbands; b++) {
                int start = bins[b], mid = bins[b + 1], stop = bins[b + 2];
                s->fb_first[b] = start + 1;
                s->fb_count[b] = stop - start - 1;
                s->fb_offset[b] = off;
                for (int k = start + 1; k < stop; k++)
                    s->fb_weight[off++] = k < mid ? (double)(k - start) / (mid - start)
                                                  : (double)(stop - k) / (stop - mid);
            }
            s->bin_lo = bins[0] + 1;
            s->bin_hi = bins[nbins - 1];
            ok = 0;
        }
    }
    free(bins);
    return ok;
}

/* Peak amplitude of the partial the onset position is calibrated for: -24 dBFS, a strong
 * partial of a mezzo-forte note in a recording peaking near -6 dBFS. */
static const double REF_PARTIAL_AMPLITUDE = 0.0631;

/* Where an onset lies in the frame whose flux peaks on it. A partial of amplitude A starting d
 * samples into frame k has a normalised magnitude of about A/2 * c(d), c(d) the (unit-sum)
 * window mass from d on, so its flux over frame k - mu is
 *   ln(1 + g A/2 c(d)) - ln(1 + g A/2 c(d + mu*hop)),
 * largest at the d stored as the offset. Louder partials peak later in the window (earlier
 * frames) and quieter ones earlier: across 40 dB around the reference level the position moves
 * by about a tenth of the window. */
static int calibrate_offset(lg_onsets *s)
{
    int n = s->window, lag = s->mu * s->hop;
    double *tail = malloc(sizeof(double) * (size_t)(n + 1));
    if (!tail)
        return -1;
    tail[n] = 0.0;
    for (int d = n - 1; d >= 0; d--)
        tail[d] = tail[d + 1] + s->win[d];
    double g = s->compression * 0.5 * REF_PARTIAL_AMPLITUDE;
    double best = -1.0;
    for (int d = 0; d < n; d++) {
        double later = d + lag < n ? tail[d + lag] : 0.0;
        double flux = log1p(g * tail[d]) - log1p(g * later);
        if (flux > best) {
            best = flux;
            s->offset = d;
        }
    }
    free(tail);
    return 0;
}

lg_onsets *lg_onsets_new(int sample_rate, int window, int hop, int bands_per_octave,
                         double fmin, double fmax, double compression, int pre_avg,
                         int post_avg, int pre_max, int post_max, double delta,
                         double silence_db, int min_gap, int span, double lambda, int use_median, int agc, double level_decay_db_per_s)
{
    if (sample_rate < 1000 || window < 16 || window > (1 << 20) || hop < 1 || hop > window ||
        bands_per_octave < 1 || bands_per_octave > 96 || !isfinite(fmin) || !isfinite(fmax) ||
        !isfinite(compression) || compression <= 0.0 || pre_avg < 0 || post_avg < 0 ||
        pre_max < 0 || post_max < 0 || pre_avg > 100000 || post_avg > 100000 ||
        pre_max > 100000 || post_max > 100000 || !isfinite(delta) || delta < 0.0 ||
        !isfinite(silence_db) || silence_db > 0.0 || min_gap < 0)
        return NULL;
    lg_onsets *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->window = window;
    s->hop = hop;
    s->nfft = 16;
    while (s->nfft < window)
        s->nfft <<= 1;
    long mu = lround((double)window / (4.0 * hop));
    s->mu = mu < 1 ? 1 : (int)mu;
    s->span = span;
    s->pre_avg = pre_avg;
    s->post_avg = post_avg;
    s->pre_max = pre_max;
    s->post_max = post_max;
    s->latency = post_max > post_avg ? post_max : post_avg;
    if (s->latency < 1)
        s->latency = 1;
    s->compression = compression;
    s->delta = delta;
    s->silence_power = pow(10.0, silence_db / 10.0);
    s->min_gap = min_gap;
    int back = pre_avg > pre_max ? pre_avg : pre_max;
    s->ring = (back > 1 ? back : 1) + s->latency + 1;
    int half = s->nfft / 2;
    s->fft = lg_fft_new(s->nfft);
    s->win = malloc(sizeof(double) * (size_t)window);
    s->frame = malloc(sizeof(double) * (size_t)window);
    s->fft_in = calloc((size_t)s->nfft, sizeof(double));
    s->spec = malloc(sizeof(double) * (size_t)(s->nfft + 2));
    s->mag = calloc((size_t)half + 1, sizeof(double));
    s->flux = malloc(sizeof(double) * (size_t)s->ring);
    s->power = malloc(sizeof(double) * (size_t)s->ring);
    s->sortbuf = malloc(sizeof(double) * (size_t)(pre_avg + post_avg + 1));
    s->lambda = lambda;
    s->use_median = use_median;
    s->agc = agc;
    s->level_decay = pow(10.0, -level_decay_db_per_s / 20.0 * hop / sample_rate);
    s->level_floor = pow(10.0, silence_db / 20.0) / sqrt(2.0);
    if (!s->fft || !s->win || !s->frame || !s->fft_in || !s->spec || !s->mag || !s->flux ||
        !s->power || build_filterbank(s, sample_rate, bands_per_octave, fmin, fmax) != 0) {
        lg_onsets_free(s);
        return NULL;
    }
    s->logband = malloc(sizeof(double) * (size_t)s->nbands);
    s->rows = s->mu + s->span - 1;
    s->prev = malloc(sizeof(double) * (size_t)s->nbands * (size_t)s->rows);
    s->ref = malloc(sizeof(double) * (size_t)s->nbands);
    if (!s->logband || !s->prev || !s->ref) {
        lg_onsets_free(s);
        return NULL;
    }
    double sum = 0.0;
    for (int i = 0; i < window; i++) {
        s->win[i] = 0.5 - 0.5 * cos(2.0 * LG_PI * i / window);
        sum += s->win[i];
    }
    for (int i = 0; i < window; i++)
        s->win[i] /= sum;
    if (calibrate_offset(s) != 0) {
        lg_onsets_free(s);
        return NULL;
    }
    lg_onsets_reset(s);
    return s;
}

void lg_onsets_reset(lg_onsets *s)
{
    s->fill = 0;
    s->frames = 0;
    s->decided = 0;
    s->last_onset = INT64_MIN;
    s->level = 0.0;
    s->nonfinite = 0;
    s->finished = 0;
    memset(s->prev, 0, sizeof(double) * (size_t)s->nbands * (size_t)s->rows);
}

int lg_onsets_max_outputs(const lg_onsets *s, int n)
{
    if (n < 0)
        return s->latency;
    return n / s->hop + 1;
}

int64_t lg_onsets_nonfinite(const lg_onsets *s) { return s->nonfinite; }
int lg_onsets_diff_frames(const lg_onsets *s) { return s->mu; }
int lg_onsets_latency(const lg_onsets *s) { return s->latency; }
int lg_onsets_bands(const lg_onsets *s) { return s->nbands; }

/* Flux of the full frame in s->frame; stores it and the frame's mean square in the rings. */
static double analyse_frame(lg_onsets *s)
{
    int n = s->window;
    double energy = 0.0;
    for (int i = 0; i < n; i++) {
        double x = s->frame[i];
        energy += x * x;
        s->fft_in[i] = x * s->win[i];
    }
    lg_fft_forward(s->fft, s->fft_in, s->spec);
    for (int k = s->bin_lo; k < s->bin_hi; k++) {
        double re = s->spec[2 * k], im = s->spec[2 * k + 1];
        s->mag[k] = sqrt(re * re + im * im);
    }
    double *B = s->logband;
    double peak = 0.0;
    for (int b = 0; b < s->nbands; b++) {
        const double *w = s->fb_weight + s->fb_offset[b];
        const double *m = s->mag + s->fb_first[b];
        double v = 0.0;
        for (int k = 0; k < s->fb_count[b]; k++)
            v += w[k] * m[k];
        B[b] = v;
        if (v > peak)
            peak = v;
    }
    s->level *= s->level_decay;
    if (peak > s->level)
        s->level = peak;
    double knee = s->agc ? (s->level > s->level_floor ? s->level : s->level_floor) / s->compression
                         : 1.0 / s->compression;
    int last = s->nbands - 1;
    for (int i = 0; i < s->span; i++) {
        int64_t f = s->frames - s->mu - i;
        const double *r = s->prev + (size_t)(((f % s->rows) + s->rows) % s->rows) * (size_t)s->nbands;
        if (i == 0)
            memcpy(s->ref, r, sizeof(double) * (size_t)s->nbands);
        else
            for (int b = 0; b <= last; b++)
                if (r[b] > s->ref[b])
                    s->ref[b] = r[b];
    }
    double flux = 0.0;
    for (int b = 0; b <= last; b++) {
        double d = B[b] - s->ref[b];
        if (d > 0.0)
            flux += log1p(d / (knee + s->ref[b]));
    }
    double *row = s->prev + (size_t)(s->frames % s->rows) * (size_t)s->nbands;
    for (int b = 0; b <= last; b++) {
        double v = B[b];
        if (b > 0 && B[b - 1] > v)
            v = B[b - 1];
        if (b < last && B[b + 1] > v)
            v = B[b + 1];
        row[b] = v;
    }
    int slot = (int)(s->frames % s->ring);
    s->flux[slot] = flux;
    s->power[slot] = energy / n;
    s->frames++;
    memmove(s->frame, s->frame + s->hop, sizeof(double) * (size_t)(n - s->hop));
    s->fill = n - s->hop;
    return flux;
}

/* Flux of frame j; frames before the stream are silent. */
static double flux_at(const lg_onsets *s, int64_t j)
{
    return j < 0 ? 0.0 : s->flux[j % s->ring];
}

/* Estimated onset sample for a detection at frame j: the sub-frame flux peak (a parabola
 * through the neighbouring values) plus the calibrated position of an onset in its peak frame. */
static int64_t onset_time(const lg_onsets *s, int64_t j, int64_t newest)
{
    double p = 0.0;
    if (j + 1 <= newest) {
        double a = flux_at(s, j - 1), b = flux_at(s, j), c = flux_at(s, j + 1);
        double curv = a - 2.0 * b + c;
        if (curv < 0.0) {
            p = 0.5 * (a - c) / curv;
            p = p < -0.5 ? -0.5 : (p > 0.5 ? 0.5 : p);
        }
    }
    double est = ((double)j + p) * s->hop + s->offset;
    return est > 0.0 ? (int64_t)floor(est + 0.5) : 0;
}

/* Decide frame j with the frames up to s->frames - 1; 1 if it is an onset. */
static int decide(lg_onsets *s, int64_t j, int64_t *onset_sample, double *strength)
{
    int64_t newest = s->frames - 1;
    double f = flux_at(s, j);
    int64_t hi = j + s->post_max < newest ? j + s->post_max : newest;
    for (int64_t i = j - s->pre_max; i <= hi; i++)
        if (flux_at(s, i) > f)
            return 0;
    hi = j + s->post_avg < newest ? j + s->post_avg : newest;
    double sum = 0.0;
    int cnt = 0;
    for (int64_t i = j - s->pre_avg; i <= hi; i++) {
        double v = flux_at(s, i);
        sum += v;
        int q = cnt++;
        while (q > 0 && s->sortbuf[q - 1] > v) {
            s->sortbuf[q] = s->sortbuf[q - 1];
            q--;
        }
        s->sortbuf[q] = v;
    }
    double centre = s->use_median ? (cnt % 2 ? s->sortbuf[cnt / 2] : 0.5 * (s->sortbuf[cnt / 2 - 1] + s->sortbuf[cnt / 2])) : sum / cnt;
    if (f < s->lambda * centre + s->delta)
        return 0;
    hi = j + s->latency < newest ? j + s->latency : newest;
    double loudest = 0.0;
    for (int64_t i = j; i <= hi; i++)
        if (s->power[i % s->ring] > loudest)
            loudest = s->power[i % s->ring];
    if (loudest < s->silence_power)
        return 0;
    int64_t at = onset_time(s, j, newest);
    if (s->last_onset != INT64_MIN && at - s->last_onset < s->min_gap)
        return 0;
    s->last_onset = at;
    *onset_sample = at;
    *strength = f;
    return 1;
}

/* Consume samples; after each completed frame either write its flux
 * (flux != NULL) or make every decision that frame enables. Returns outputs written. */
static int feed(lg_onsets *s, const float *in, int n, double *flux, int64_t *onset_sample,
                double *strength)
{
    int count = 0;
    int i = 0;
    while (i < n) {
        int take = s->window - s->fill;
        if (take > n - i)
            take = n - i;
        double *dst = s->frame + s->fill;
        for (int k = 0; k < take; k++) {
            float x = in[i + k];
            if (isfinite(x)) {
                dst[k] = x;
            } else {
                dst[k] = 0.0;
                s->nonfinite++;
            }
        }
        s->fill += take;
        i += take;
        if (s->fill < s->window)
            break;
        double v = analyse_frame(s);
        if (flux) {
            flux[count++] = v;
            continue;
        }
        while (s->decided + s->latency < s->frames) {
            count += decide(s, s->decided, onset_sample + count, strength + count);
            s->decided++;
        }
    }
    return count;
}

int lg_onsets_process(lg_onsets *s, const float *in, int n, int64_t *onset_sample,
                      double *strength, int cap)
{
    if (!s || n < 0 || (n > 0 && !in) || !onset_sample || !strength)
        return -1;
    if (s->finished)
        return -3;
    if (cap < lg_onsets_max_outputs(s, n))
        return -2;
    return feed(s, in, n, NULL, onset_sample, strength);
}

int lg_onsets_finish(lg_onsets *s, int64_t *onset_sample, double *strength, int cap)
{
    if (!s || !onset_sample || !strength)
        return -1;
    if (s->finished)
        return -3;
    if (cap < lg_onsets_max_outputs(s, -1))
        return -2;
    int count = 0;
    for (; s->decided < s->frames; s->decided++)
        count += decide(s, s->decided, onset_sample + count, strength + count);
    s->finished = 1;
    return count;
}

int lg_onsets_flux(lg_onsets *s, const float *in, int n, double *flux, int cap)
{
    if (!s || n < 0 || (n > 0 && !in) || !flux)
        return -1;
    if (s->finished)
        return -3;
    if (cap < lg_onsets_max_outputs(s, n))
        return -2;
    return feed(s, in, n, flux, NULL, NULL);
}
