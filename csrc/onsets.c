/* Streaming spectral-flux onset detector; see onsets.h for the model and the parameters. */
#include "onsets.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "fft.h"

struct lg_onsets {
    /* configuration */
    int window, hop, nfft, mu, persist, latency;
    int pre_avg, post_avg, pre_max, post_max;
    double compression, median_weight, delta, silence_power, offset;
    double level_decay, level_floor;
    int64_t min_gap;
    /* filterbank: band b weights bins fb_first[b] .. fb_first[b] + fb_count[b] - 1 */
    int nbands, bin_lo, bin_hi;
    int *fb_first, *fb_count, *fb_offset;
    double *fb_weight;
    /* analysis buffers */
    lg_fft *fft;
    double *win;    /* periodic Hann / window sum */
    double *frame;  /* the current frame's samples, fill of them valid */
    double *fft_in; /* nfft, zero beyond window */
    double *spec;   /* nfft + 2 */
    double *mag;    /* nfft / 2 + 1 */
    int rows;       /* band rows kept: frame k in row k % rows */
    double *bands;  /* rows x nbands filterbank outputs */
    double *widened; /* rows x nbands: each band's maximum with its two neighbours */
    double *ref;    /* nbands scratch: what a frame is compared with */
    double *now;    /* nbands scratch: the persistent part of a frame */
    int ring;       /* length of the per-frame rings below */
    double *flux, *power;
    double *sorted; /* pre_avg + post_avg + 1 scratch for the median */
    /* stream state */
    int fill;
    int64_t frames, odf_frames, decided, last_onset, nonfinite;
    double level;
    int finished;
};

static const double LG_PI = 3.14159265358979323846;

/* Past frames whose (band-maximum) spectrum a frame's rise is measured against: three, so a
 * random fluctuation of stationary noise has to exceed all of them to count, while a new note
 * still rises above silence or the decay of the previous one. */
enum { REF_FRAMES = 3 };

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
    free(s->bands);
    free(s->widened);
    free(s->ref);
    free(s->now);
    free(s->flux);
    free(s->power);
    free(s->sorted);
    free(s);
}

/* Triangular bands on a log-frequency grid (440 * 2^(i / bpo) Hz) mapped to FFT bins; grid
 * points that land on the same bin are merged, so low bands become single bins. Returns 1, or 0
 * if the range holds fewer than 3 bands or memory ran out. */
static int build_filterbank(lg_onsets *s, int sample_rate, int bpo, double fmin, double fmax)
{
    int half = s->nfft / 2;
    double top = fmax < 0.5 * sample_rate ? fmax : 0.5 * sample_rate;
    if (!(fmin > 0.0) || !(top > fmin))
        return 0;
    int lo = (int)floor(bpo * log2(fmin / 440.0));
    int hi = (int)ceil(bpo * log2(top / 440.0));
    int *bins = malloc(sizeof(int) * (size_t)(hi - lo + 1));
    if (!bins)
        return 0;
    int nbins = 0;
    for (int i = lo; i <= hi; i++) {
        int b = (int)floor(440.0 * pow(2.0, (double)i / bpo) * s->nfft / sample_rate + 0.5);
        if (b > half)
            break;
        if (nbins == 0 || b != bins[nbins - 1])
            bins[nbins++] = b;
    }
    int ok = 0;
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
            ok = 1;
        }
    }
    free(bins);
    return ok;
}

/* Amplitude, relative to the tracked level, of the partial the onset position is calibrated
 * for: -10 dB, the strongest partials of a new note, which dominate its flux. */
static const double REF_PARTIAL = 0.316;

/* Where an onset lies in the frame whose flux peaks on it. A partial of amplitude A (relative
 * to the tracked level) starting d samples into frame k has a band value of about
 * A * level * c(d), c(d) the unit-sum window mass from d on, so its flux over frame k - mu is
 *   ln(1 + g c(d)) - ln(1 + g c(d + mu*hop)),   g = A * compression,
 * largest at the d stored as the offset. Louder partials peak later in the window (earlier
 * frames), quieter ones earlier: from 30 dB below the level up to the level the position moves
 * by under a fifth of the window (4 ms for 1024 samples at 44.1 kHz). Returns 1, or 0 if memory
 * ran out. */
static int calibrate_offset(lg_onsets *s)
{
    int n = s->window, lag = s->mu * s->hop;
    double *tail = malloc(sizeof(double) * (size_t)(n + 1));
    if (!tail)
        return 0;
    tail[n] = 0.0;
    for (int d = n - 1; d >= 0; d--)
        tail[d] = tail[d + 1] + s->win[d];
    double g = s->compression * REF_PARTIAL;
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
    return 1;
}

lg_onsets *lg_onsets_new(int sample_rate, int window, int hop, int bands_per_octave,
                         double fmin, double fmax, double compression, double level_release,
                         int pre_avg, int post_avg, int pre_max, int post_max,
                         double median_weight, double delta, double silence_db, int min_gap)
{
    if (sample_rate < 1000 || window < 16 || window > (1 << 20) || hop < 1 || hop > window ||
        bands_per_octave < 1 || bands_per_octave > 96 || !isfinite(fmin) || !isfinite(fmax) ||
        !(compression > 0.0 && compression <= 1e9) || !isfinite(level_release) ||
        level_release < 0.0 || pre_avg < 0 || post_avg < 0 || pre_max < 0 || post_max < 0 ||
        pre_avg > 100000 || post_avg > 100000 || pre_max > 100000 || post_max > 100000 ||
        !isfinite(median_weight) || median_weight < 0.0 || !isfinite(delta) || delta < 0.0 ||
        !(silence_db >= -300.0 && silence_db <= 0.0) || min_gap < 0)
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
    s->persist = (window + hop - 1) / hop;
    s->pre_avg = pre_avg;
    s->post_avg = post_avg;
    s->pre_max = pre_max;
    s->post_max = post_max;
    s->latency = post_max > post_avg ? post_max : post_avg;
    if (s->latency < 1)
        s->latency = 1;
    s->compression = compression;
    s->median_weight = median_weight;
    s->delta = delta;
    s->silence_power = pow(10.0, silence_db / 10.0);
    s->level_decay = pow(10.0, -level_release / 20.0 * hop / sample_rate);
    s->level_floor = pow(10.0, silence_db / 20.0) / sqrt(2.0);
    s->min_gap = min_gap;
    int back = pre_avg > pre_max ? pre_avg : pre_max;
    s->ring = (back > 1 ? back : 1) + s->latency + s->persist + 1;
    s->rows = s->mu + REF_FRAMES + s->persist;
    s->fft = lg_fft_new(s->nfft);
    s->win = malloc(sizeof(double) * (size_t)window);
    s->frame = malloc(sizeof(double) * (size_t)window);
    s->fft_in = calloc((size_t)s->nfft, sizeof(double));
    s->spec = malloc(sizeof(double) * (size_t)(s->nfft + 2));
    s->mag = calloc((size_t)s->nfft / 2 + 1, sizeof(double));
    s->flux = malloc(sizeof(double) * (size_t)s->ring);
    s->power = malloc(sizeof(double) * (size_t)s->ring);
    s->sorted = malloc(sizeof(double) * ((size_t)pre_avg + (size_t)post_avg + 1));
    if (!s->fft || !s->win || !s->frame || !s->fft_in || !s->spec || !s->mag || !s->flux ||
        !s->power || !s->sorted ||
        !build_filterbank(s, sample_rate, bands_per_octave, fmin, fmax)) {
        lg_onsets_free(s);
        return NULL;
    }
    s->bands = malloc(sizeof(double) * (size_t)s->nbands * (size_t)s->rows);
    s->widened = malloc(sizeof(double) * (size_t)s->nbands * (size_t)s->rows);
    s->ref = malloc(sizeof(double) * (size_t)s->nbands);
    s->now = malloc(sizeof(double) * (size_t)s->nbands);
    if (!s->bands || !s->widened || !s->ref || !s->now) {
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
    if (!calibrate_offset(s)) {
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
    s->odf_frames = 0;
    s->decided = 0;
    s->last_onset = INT64_MIN;
    s->nonfinite = 0;
    s->level = 0.0;
    s->finished = 0;
}

int lg_onsets_max_outputs(const lg_onsets *s, int n)
{
    if (n < 0)
        return s->persist + s->latency + 1;
    return n / s->hop + 1;
}

int64_t lg_onsets_nonfinite(const lg_onsets *s) { return s->nonfinite; }
int lg_onsets_diff_frames(const lg_onsets *s) { return s->mu; }
int lg_onsets_latency(const lg_onsets *s) { return s->persist + s->latency; }
int lg_onsets_bands(const lg_onsets *s) { return s->nbands; }
int64_t lg_onsets_offset(const lg_onsets *s) { return (int64_t)s->offset; }

/* |spec[k]| of n interleaved (re, im) bins, in a loop the compiler vectorises. */
static void magnitudes(const double *restrict spec, double *restrict mag, int n)
{
    for (int k = 0; k < n; k++)
        mag[k] = sqrt(spec[2 * k] * spec[2 * k] + spec[2 * k + 1] * spec[2 * k + 1]);
}

/* Analyse the full frame in s->frame into its band rows, mean square and the level. */
static void analyse_frame(lg_onsets *s)
{
    int n = s->window, nb = s->nbands, last = nb - 1;
    const double *restrict x = s->frame;
    const double *restrict win = s->win;
    double *restrict in = s->fft_in;
    double e[4] = {0.0, 0.0, 0.0, 0.0};
    int i = 0;
    for (; i + 4 <= n; i += 4)
        for (int q = 0; q < 4; q++) {
            e[q] += x[i + q] * x[i + q];
            in[i + q] = x[i + q] * win[i + q];
        }
    for (; i < n; i++) {
        e[0] += x[i] * x[i];
        in[i] = x[i] * win[i];
    }
    double energy = (e[0] + e[1]) + (e[2] + e[3]);
    lg_fft_forward(s->fft, in, s->spec);
    magnitudes(s->spec + 2 * s->bin_lo, s->mag + s->bin_lo, s->bin_hi - s->bin_lo);
    const double *restrict mag = s->mag;
    size_t at = (size_t)(s->frames % s->rows) * (size_t)nb;
    double *restrict row = s->bands + at;
    double *restrict wide = s->widened + at;
    double peak = 0.0;
    for (int b = 0; b < nb; b++) {
        const double *w = s->fb_weight + s->fb_offset[b];
        const double *m = mag + s->fb_first[b];
        double v = 0.0;
        for (int k = 0; k < s->fb_count[b]; k++)
            v += w[k] * m[k];
        row[b] = v;
        peak = v > peak ? v : peak;
    }
    for (int b = 0; b < nb; b++) {
        double v = row[b];
        double lo = b > 0 ? row[b - 1] : v, hi = b < last ? row[b + 1] : v;
        v = lo > v ? lo : v;
        wide[b] = hi > v ? hi : v;
    }
    s->level *= s->level_decay;
    if (peak > s->level)
        s->level = peak;
    s->power[s->frames % s->ring] = energy / n;
    s->frames++;
    memmove(s->frame, s->frame + s->hop, sizeof(double) * (size_t)(n - s->hop));
    s->fill = n - s->hop;
}

/* Flux of frame j once frame j + persist is analysed (see onsets.h). The sum of logs is taken
 * as the log of a product of factors >= 1, flushed before it could overflow. */
static double frame_flux(lg_onsets *s, int64_t j)
{
    int nb = s->nbands;
    double *restrict now = s->now;
    double *restrict ref = s->ref;
    memcpy(now, s->bands + (size_t)(j % s->rows) * (size_t)nb, sizeof(double) * (size_t)nb);
    for (int64_t i = j + 1; i <= j + s->persist; i++) {
        const double *restrict r = s->bands + (size_t)(i % s->rows) * (size_t)nb;
        for (int b = 0; b < nb; b++)
            now[b] = r[b] < now[b] ? r[b] : now[b];
    }
    memset(ref, 0, sizeof(double) * (size_t)nb);
    for (int64_t i = j - s->mu - REF_FRAMES + 1; i <= j - s->mu; i++) {
        if (i < 0)
            continue;
        const double *restrict r = s->widened + (size_t)(i % s->rows) * (size_t)nb;
        for (int b = 0; b < nb; b++)
            ref[b] = r[b] > ref[b] ? r[b] : ref[b];
    }
    double knee = (s->level > s->level_floor ? s->level : s->level_floor) / s->compression;
    double flux = 0.0, product = 1.0;
    for (int b = 0; b < nb; b++) {
        if (now[b] > ref[b]) {
            product *= (knee + now[b]) / (knee + ref[b]);
            if (product > 1e200) {
                flux += log(product);
                product = 1.0;
            }
        }
    }
    return flux + log(product);
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

/* Median of flux[lo .. hi] (frames before the stream count as 0). */
static double median_flux(lg_onsets *s, int64_t lo, int64_t hi)
{
    int n = 0;
    for (int64_t i = lo; i <= hi; i++) {
        double v = flux_at(s, i);
        int q = n++;
        while (q > 0 && s->sorted[q - 1] > v) {
            s->sorted[q] = s->sorted[q - 1];
            q--;
        }
        s->sorted[q] = v;
    }
    return n % 2 ? s->sorted[n / 2] : 0.5 * (s->sorted[n / 2 - 1] + s->sorted[n / 2]);
}

/* Decide ODF frame j with the ODF frames up to s->odf_frames - 1; 1 if it is an onset. */
static int decide(lg_onsets *s, int64_t j, int64_t *onset_sample, double *strength)
{
    int64_t newest = s->odf_frames - 1;
    double f = flux_at(s, j);
    int64_t hi = j + s->post_max < newest ? j + s->post_max : newest;
    for (int64_t i = j - s->pre_max; i <= hi; i++)
        if (flux_at(s, i) > f)
            return 0;
    hi = j + s->post_avg < newest ? j + s->post_avg : newest;
    if (f < s->median_weight * median_flux(s, j - s->pre_avg, hi) + s->delta)
        return 0;
    hi = j + s->latency + s->persist < s->frames - 1 ? j + s->latency + s->persist : s->frames - 1;
    double loudest = 0.0;
    for (int64_t i = j; i <= hi; i++)
        if (s->power[i % s->ring] > loudest)
            loudest = s->power[i % s->ring];
    if (loudest < s->silence_power)
        return 0;
    int64_t at = onset_time(s, j, newest);
    /* Never two onsets at one sample, even with no minimum gap (neighbouring frames' peaks can
     * round to the same sample). */
    if (s->last_onset != INT64_MIN && (at <= s->last_onset || at - s->last_onset < s->min_gap))
        return 0;
    s->last_onset = at;
    *onset_sample = at;
    *strength = f;
    return 1;
}

/* Compute the flux of ODF frame s->odf_frames from the analysed frames. */
static double next_flux(lg_onsets *s)
{
    double v = frame_flux(s, s->odf_frames);
    s->flux[s->odf_frames % s->ring] = v;
    s->odf_frames++;
    return v;
}

/* Consume samples; after each completed frame either write the flux it completes
 * (flux != NULL) or make every decision that enables. Returns outputs written. */
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
        analyse_frame(s);
        if (s->frames <= s->persist)
            continue;
        double v = next_flux(s);
        if (flux) {
            flux[count++] = v;
            continue;
        }
        while (s->decided + s->latency < s->odf_frames) {
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
        return LG_ERR_ARGUMENT;
    if (s->finished)
        return LG_ERR_FINISHED;
    if (cap < lg_onsets_max_outputs(s, n))
        return LG_ERR_CAPACITY;
    return feed(s, in, n, NULL, onset_sample, strength);
}

int lg_onsets_finish(lg_onsets *s, int64_t *onset_sample, double *strength, int cap)
{
    if (!s || !onset_sample || !strength)
        return LG_ERR_ARGUMENT;
    if (s->finished)
        return LG_ERR_FINISHED;
    if (cap < lg_onsets_max_outputs(s, -1))
        return LG_ERR_CAPACITY;
    int count = 0;
    for (; s->decided < s->odf_frames; s->decided++)
        count += decide(s, s->decided, onset_sample + count, strength + count);
    s->finished = 1;
    return count;
}

int lg_onsets_flux(lg_onsets *s, const float *in, int n, double *flux, int cap)
{
    if (!s || n < 0 || (n > 0 && !in) || !flux)
        return LG_ERR_ARGUMENT;
    if (s->finished)
        return LG_ERR_FINISHED;
    if (cap < lg_onsets_max_outputs(s, n))
        return LG_ERR_CAPACITY;
    return feed(s, in, n, flux, NULL, NULL);
}

#define ONSETS_CHECKPOINT 1

void lg_onsets_transfer(lg_ck *ck, lg_onsets *s)
{
    const int config[] = {s->window,   s->hop,     s->nfft,     s->mu,       s->persist,
                          s->latency,  s->pre_avg, s->post_avg, s->pre_max,  s->post_max,
                          s->nbands,   s->bin_lo,  s->bin_hi,   s->rows,     s->ring};
    const double tuning[] = {s->compression, s->median_weight, s->delta,      s->silence_power,
                             s->offset,      s->level_decay,   s->level_floor};
    lg_ck_config(ck, config, sizeof config);
    lg_ck_config(ck, tuning, sizeof tuning);
    lg_ck_config(ck, &s->min_gap, sizeof s->min_gap);
    int fill = s->fill, finished = s->finished;
    lg_ck_value(ck, &fill, sizeof fill);
    lg_ck_value(ck, &finished, sizeof finished);
    if (fill < 0 || fill >= s->window || (finished != 0 && finished != 1))
        lg_ck_refuse(ck);
    int64_t counts[] = {s->frames, s->odf_frames, s->decided};
    lg_ck_value(ck, counts, sizeof counts);
    if (counts[0] < 0 || counts[1] < 0 || counts[1] > counts[0] || counts[2] < 0 ||
        counts[2] > counts[1])
        lg_ck_refuse(ck);
    size_t rows = (size_t)s->rows * (size_t)s->nbands;
    lg_ck_state(ck, s->frame, sizeof(double) * (size_t)s->window);
    lg_ck_state(ck, s->bands, sizeof(double) * rows);
    lg_ck_state(ck, s->widened, sizeof(double) * rows);
    lg_ck_state(ck, s->flux, sizeof(double) * (size_t)s->ring);
    lg_ck_state(ck, s->power, sizeof(double) * (size_t)s->ring);
    lg_ck_state(ck, &s->last_onset, sizeof s->last_onset);
    lg_ck_state(ck, &s->nonfinite, sizeof s->nonfinite);
    lg_ck_state(ck, &s->level, sizeof s->level);
    if (lg_ck_restoring(ck)) {
        s->fill = fill;
        s->finished = finished;
        s->frames = counts[0];
        s->odf_frames = counts[1];
        s->decided = counts[2];
    }
}

static void transfer(lg_ck *ck, void *state) { lg_onsets_transfer(ck, state); }

LG_CK_FUNCTIONS(lg_onsets_save, lg_onsets_load, lg_onsets, "onsets", ONSETS_CHECKPOINT, transfer)

int lg_onsets_step(lg_step *step, const float *in, int n)
{
    return lg_onsets_process(step->state, in, n, step->out[0], step->out[1], step->capacity);
}
