/* Real FFT of n points through a complex FFT of n/2 points.
 *
 * The complex FFT is an iterative decimation-in-time radix-4 transform (plus one final radix-2
 * pass when log2(n/2) is odd) on split real/imaginary arrays: each radix-4 pass does the work of
 * two radix-2 passes in one sweep over memory with three twiddle products per four points, and
 * the split layout lets the compiler vectorise the butterflies with plain SSE2. The bit-reversal
 * permutation is fused into the first pass. The inverse runs the same forward passes on the
 * conjugated spectrum (conj(FFT(conj(Z))) = m IFFT(Z)), so there is one butterfly code path. */
#include "fft.h"

#include <math.h>
#include <stdlib.h>

struct lg_fft {
    int n;          /* real size */
    int m;          /* complex size, n / 2 */
    int *bitrev;    /* m entries */
    double *tw;     /* twiddles, per pass in pass order (see lg_fft_new) */
    double *post;   /* real-split twiddles e^{-2 pi i k / n}, k <= m / 2, (re, im) pairs */
    double *zr;     /* m doubles of scratch: real parts */
    double *zi;     /* m doubles of scratch: imaginary parts, in the same block as zr */
};

static const double LG_PI = 3.14159265358979323846;

static int log2_of(int m)
{
    int bits = 0;
    while ((1 << bits) < m)
        bits++;
    return bits;
}

/* Size of the DFTs the radix-4 passes build: m, or m / 2 when a radix-2 pass finishes. */
static int radix4_span(int m) { return (log2_of(m) & 1) ? m / 2 : m; }

lg_fft *lg_fft_new(int n)
{
    if (n < 4 || n > (1 << 24) || (n & (n - 1)) != 0)
        return NULL;
    lg_fft *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n = n;
    p->m = n / 2;
    int m = p->m;
    p->bitrev = malloc(sizeof(int) * (size_t)m);
    p->tw = malloc(sizeof(double) * 3 * (size_t)m);
    p->post = malloc(sizeof(double) * 2 * (size_t)(m / 2 + 1));
    /* zi starts one cache line after the end of zr so that, at large power-of-two strides, the
     * real and imaginary streams do not compete for the same cache sets. */
    p->zr = malloc(sizeof(double) * (2 * (size_t)m + 8));
    if (!p->bitrev || !p->tw || !p->post || !p->zr) {
        lg_fft_free(p);
        return NULL;
    }
    p->zi = p->zr + m + 8;
    int bits = log2_of(m);
    for (int i = 0; i < m; i++) {
        int r = 0;
        for (int b = 0; b < bits; b++)
            if (i & (1 << b))
                r |= 1 << (bits - 1 - b);
        p->bitrev[i] = r;
    }
    /* A radix-4 pass of quarter-length h >= 4 combines four size-h DFTs with w^j, w^2j, w^3j
     * (w = e^{-2 pi i / 4h}, j < h): six arrays of h values (w1 re, w1 im, w2 re, ... w3 im).
     * The final radix-2 pass, if any, uses e^{-2 pi i j / m}, j < m / 2: two arrays. */
    double *t = p->tw;
    int span = radix4_span(m);
    for (int h = 4; 4 * h <= span; h *= 4) {
        for (int j = 0; j < h; j++) {
            double a = -2.0 * LG_PI * (double)j / (double)(4 * h);
            t[j] = cos(a);
            t[h + j] = sin(a);
            t[2 * h + j] = cos(2.0 * a);
            t[3 * h + j] = sin(2.0 * a);
            t[4 * h + j] = cos(3.0 * a);
            t[5 * h + j] = sin(3.0 * a);
        }
        t += 6 * h;
    }
    if (span != m) {
        for (int j = 0; j < m / 2; j++) {
            double a = -2.0 * LG_PI * (double)j / (double)m;
            t[j] = cos(a);
            t[m / 2 + j] = sin(a);
        }
    }
    for (int k = 0; k <= m / 2; k++) {
        double a = -2.0 * LG_PI * (double)k / (double)n;
        p->post[2 * k] = cos(a);
        p->post[2 * k + 1] = sin(a);
    }
    return p;
}

void lg_fft_free(lg_fft *p)
{
    if (!p)
        return;
    free(p->bitrev);
    free(p->tw);
    free(p->post);
    free(p->zr);
    free(p);
}

int lg_fft_size(const lg_fft *p) { return p->n; }

/* Combines four size-h DFTs (Q0 at r0, Q2 at r1, Q1 at r2, Q3 at r3: the bit-reversed layout) in
 * place into the size-4h DFT; w holds the pass's six twiddle arrays. Distinct restrict parameters
 * let the compiler vectorise without alias checks. */
static void radix4(double *restrict r0, double *restrict i0, double *restrict r1,
                   double *restrict i1, double *restrict r2, double *restrict i2,
                   double *restrict r3, double *restrict i3, const double *restrict w, int h)
{
    const double *w1r = w, *w1i = w + h, *w2r = w + 2 * h, *w2i = w + 3 * h;
    const double *w3r = w + 4 * h, *w3i = w + 5 * h;
    for (int j = 0; j < h; j++) {
        double a0r = r0[j], a0i = i0[j];
        double a2r = r1[j] * w2r[j] - i1[j] * w2i[j];
        double a2i = r1[j] * w2i[j] + i1[j] * w2r[j];
        double a1r = r2[j] * w1r[j] - i2[j] * w1i[j];
        double a1i = r2[j] * w1i[j] + i2[j] * w1r[j];
        double a3r = r3[j] * w3r[j] - i3[j] * w3i[j];
        double a3i = r3[j] * w3i[j] + i3[j] * w3r[j];
        double t0r = a0r + a2r, t0i = a0i + a2i;
        double t1r = a0r - a2r, t1i = a0i - a2i;
        double t2r = a1r + a3r, t2i = a1i + a3i;
        double t3r = a1r - a3r, t3i = a1i - a3i;
        r0[j] = t0r + t2r;
        i0[j] = t0i + t2i;
        r2[j] = t0r - t2r;
        i2[j] = t0i - t2i;
        r1[j] = t1r + t3i;
        i1[j] = t1i - t3r;
        r3[j] = t1r - t3i;
        i3[j] = t1i + t3r;
    }
}

/* Combines the size-m/2 DFTs of the even (r0) and odd (r1) samples into the size-m DFT. */
static void radix2(double *restrict r0, double *restrict i0, double *restrict r1,
                   double *restrict i1, const double *restrict w, int h)
{
    const double *wr = w, *wi = w + h;
    for (int j = 0; j < h; j++) {
        double tr = r1[j] * wr[j] - i1[j] * wi[j];
        double ti = r1[j] * wi[j] + i1[j] * wr[j];
        double ar = r0[j], ai = i0[j];
        r0[j] = ar + tr;
        i0[j] = ai + ti;
        r1[j] = ar - tr;
        i1[j] = ai - ti;
    }
}

/* Forward complex FFT of the m points src (interleaved re, im; imaginary parts negated when
 * conj_in) into p->zr / p->zi. */
static void complex_fft(const lg_fft *p, const double *src, int conj_in)
{
    const int m = p->m;
    const int *br = p->bitrev;
    double *restrict zr = p->zr;
    double *restrict zi = p->zi;
    const double sg = conj_in ? -1.0 : 1.0;
    if (m == 2) {
        zr[0] = src[0] + src[2];
        zi[0] = sg * (src[1] + src[3]);
        zr[1] = src[0] - src[2];
        zi[1] = sg * (src[1] - src[3]);
        return;
    }
    /* First radix-4 pass (all twiddles 1), reading the input in bit-reversed order: a, b, c, d
     * are x[4i], x[4i+2], x[4i+1], x[4i+3] of each group. */
    for (int s = 0; s < m; s += 4) {
        const double *a = src + 2 * br[s], *b = src + 2 * br[s + 1];
        const double *c = src + 2 * br[s + 2], *d = src + 2 * br[s + 3];
        double t0r = a[0] + b[0], t0i = sg * (a[1] + b[1]);
        double t1r = a[0] - b[0], t1i = sg * (a[1] - b[1]);
        double t2r = c[0] + d[0], t2i = sg * (c[1] + d[1]);
        double t3r = c[0] - d[0], t3i = sg * (c[1] - d[1]);
        zr[s] = t0r + t2r;
        zi[s] = t0i + t2i;
        zr[s + 2] = t0r - t2r;
        zi[s + 2] = t0i - t2i;
        zr[s + 1] = t1r + t3i; /* t1 - i t3 */
        zi[s + 1] = t1i - t3r;
        zr[s + 3] = t1r - t3i; /* t1 + i t3 */
        zi[s + 3] = t1i + t3r;
    }
    const double *tw = p->tw;
    int span = radix4_span(m);
    for (int h = 4; 4 * h <= span; h *= 4) {
        for (int s = 0; s < m; s += 4 * h)
            radix4(zr + s, zi + s, zr + s + h, zi + s + h, zr + s + 2 * h, zi + s + 2 * h,
                   zr + s + 3 * h, zi + s + 3 * h, tw, h);
        tw += 6 * h;
    }
    if (span != m)
        radix2(zr, zi, zr + m / 2, zi + m / 2, tw, m / 2);
}

void lg_fft_forward(lg_fft *p, const double *in, double *out)
{
    const int m = p->m;
    complex_fft(p, in, 0);
    const double *zr = p->zr, *zi = p->zi;
    /* Split the packed transform Z (of even + i odd samples) into the real sequence's spectrum:
     * X[k] = E[k] + W^k O[k], E = (Z[k] + conj Z[m-k]) / 2, O = (Z[k] - conj Z[m-k]) / 2i. */
    out[0] = zr[0] + zi[0];
    out[1] = 0.0;
    out[2 * m] = zr[0] - zi[0];
    out[2 * m + 1] = 0.0;
    for (int k = 1; k <= m / 2; k++) {
        int q = m - k;
        double er = 0.5 * (zr[k] + zr[q]), ei = 0.5 * (zi[k] - zi[q]);
        double dr = 0.5 * (zr[k] - zr[q]), di = 0.5 * (zi[k] + zi[q]);
        double wr = p->post[2 * k], wi = p->post[2 * k + 1];
        double tr = di * wr + dr * wi, ti = di * wi - dr * wr; /* W^k * (di - i dr) */
        out[2 * k] = er + tr;
        out[2 * k + 1] = ei + ti;
        out[2 * q] = er - tr; /* X[m-k] = conj(E[k] - W^k O[k]) */
        out[2 * q + 1] = ti - ei;
    }
}

void lg_fft_inverse(lg_fft *p, const double *in, double *out)
{
    const int m = p->m;
    double *t = out; /* out has n = 2m doubles: stage Z there before the bit-reversed load */
    for (int k = 0; k <= m / 2; k++) {
        int q = m - k;
        double xr = in[2 * k], xi = in[2 * k + 1];
        double cr = in[2 * q], ci = -in[2 * q + 1]; /* conj(X[m-k]) */
        double er = 0.5 * (xr + cr), ei = 0.5 * (xi + ci);
        double dr = 0.5 * (xr - cr), di = 0.5 * (xi - ci);
        double wr = p->post[2 * k], wi = -p->post[2 * k + 1]; /* e^{+2 pi i k / n} */
        double or_ = dr * wr - di * wi, oi = dr * wi + di * wr;
        /* Z[k] = E[k] + i O[k]; Z[m-k] = conj(E[k]) + i conj(O[k]) */
        t[2 * k] = er - oi;
        t[2 * k + 1] = ei + or_;
        if (k != 0 && q != k) {
            t[2 * q] = er + oi;
            t[2 * q + 1] = or_ - ei;
        }
    }
    complex_fft(p, t, 1);
    const double *zr = p->zr, *zi = p->zi;
    const double scale = 1.0 / (double)m;
    for (int i = 0; i < m; i++) {
        out[2 * i] = zr[i] * scale;
        out[2 * i + 1] = -zi[i] * scale;
    }
}
