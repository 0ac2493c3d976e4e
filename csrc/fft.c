/* Real FFT of n points through a complex FFT of n/2 points.
 *
 * The complex FFT is an iterative decimation-in-time radix-4 transform (plus one final radix-2
 * pass when log2(n/2) is odd) on split real/imaginary arrays: each radix-4 pass does the work of
 * two radix-2 passes in one sweep over memory with three twiddle products per four points, and
 * the split layout lets the compiler vectorise the butterflies with plain SSE2. The bit-reversal
 * permutation is fused into the first pass. The inverse runs the same forward passes on the
 * conjugated spectrum (conj(FFT(conj(Z))) = m IFFT(Z)), so there is one butterfly code path.
 *
 * The passes over interleaved data (the bit-reversed first pass, the real split and its inverse)
 * use two-double vectors (GCC/Clang vector extensions, SSE2 on x86-64) holding one complex value
 * or two neighbouring bins; every vector expression performs exactly the scalar operations of
 * the definition, so the results do not depend on the vector width. The radix-4 passes are also
 * compiled for AVX2 where the compiler supports function multi-versioning and picked at load
 * time: the butterflies are element-wise (no reductions, no contraction into FMA under -std=c11),
 * so both versions give bit-identical results. */
#include "fft.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct lg_fft {
    int n;          /* real size */
    int m;          /* complex size, n / 2 */
    int *bitrev;    /* m entries */
    double *tw;     /* twiddles, per pass in pass order (see lg_fft_new) */
    double *postr;  /* real-split twiddles e^{-2 pi i k / n}, k <= m / 2: real parts */
    double *posti;  /* imaginary parts */
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
    p->postr = malloc(sizeof(double) * 2 * (size_t)(m / 2 + 1));
    /* zi starts one cache line after the end of zr so that, at large power-of-two strides, the
     * real and imaginary streams do not compete for the same cache sets. */
    p->zr = malloc(sizeof(double) * (2 * (size_t)m + 8));
    if (!p->bitrev || !p->tw || !p->postr || !p->zr) {
        lg_fft_free(p);
        return NULL;
    }
    p->zi = p->zr + m + 8;
    p->posti = p->postr + m / 2 + 1;
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
        p->postr[k] = cos(a);
        p->posti[k] = sin(a);
    }
    return p;
}

void lg_fft_free(lg_fft *p)
{
    if (!p)
        return;
    free(p->bitrev);
    free(p->tw);
    free(p->postr);
    free(p->zr);
    free(p);
}

int lg_fft_size(const lg_fft *p) { return p->n; }

typedef double v2d __attribute__((vector_size(16)));

static inline v2d load2(const double *p)
{
    v2d v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store2(double *p, v2d v) { memcpy(p, &v, sizeof v); }

static inline v2d swap2(v2d v) { return (v2d){v[1], v[0]}; }

/* Combines four size-h DFTs (Q0 at r0, Q2 at r1, Q1 at r2, Q3 at r3: the bit-reversed layout) in
 * place into the size-4h DFT; w holds the pass's six twiddle arrays. Distinct restrict parameters
 * let the compiler vectorise without alias checks. */
static inline void radix4(double *restrict r0, double *restrict i0, double *restrict r1,
                          double *restrict i1, double *restrict r2, double *restrict i2,
                          double *restrict r3, double *restrict i3, const double *restrict w,
                          int h)
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
static inline void radix2(double *restrict r0, double *restrict i0, double *restrict r1,
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

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8
#define LG_FFT_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define LG_FFT_CLONES
#endif

/* Every pass after the first, in place on p->zr / p->zi. */
LG_FFT_CLONES static void later_passes(const lg_fft *p)
{
    const int m = p->m;
    double *zr = p->zr, *zi = p->zi;
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
     * are x[4i], x[4i+2], x[4i+1], x[4i+3] of each group, one complex value per vector. */
    const v2d conj = {1.0, sg};
    const v2d rot = {1.0, -1.0}; /* swap2(t) * rot = -i t */
    for (int s = 0; s < m; s += 4) {
        v2d a = load2(src + 2 * br[s]), b = load2(src + 2 * br[s + 1]);
        v2d c = load2(src + 2 * br[s + 2]), d = load2(src + 2 * br[s + 3]);
        v2d t0 = (a + b) * conj, t1 = (a - b) * conj;
        v2d t2 = (c + d) * conj, t3 = swap2((c - d) * conj) * rot;
        v2d o0 = t0 + t2, o2 = t0 - t2;
        v2d o1 = t1 + t3, o3 = t1 - t3; /* t1 - i t3, t1 + i t3 */
        store2(zr + s, (v2d){o0[0], o1[0]});
        store2(zr + s + 2, (v2d){o2[0], o3[0]});
        store2(zi + s, (v2d){o0[1], o1[1]});
        store2(zi + s + 2, (v2d){o2[1], o3[1]});
    }
    later_passes(p);
}

void lg_fft_forward(lg_fft *p, const double *in, double *out)
{
    const int m = p->m;
    complex_fft(p, in, 0);
    const double *zr = p->zr, *zi = p->zi;
    /* Split the packed transform Z (of even + i odd samples) into the real sequence's spectrum:
     * X[k] = E[k] + W^k O[k], E = (Z[k] + conj Z[m-k]) / 2, O = (Z[k] - conj Z[m-k]) / 2i.
     * Bins k, k + 1 and their mirrors m - k, m - k - 1 at a time. */
    out[0] = zr[0] + zi[0];
    out[1] = 0.0;
    out[2 * m] = zr[0] - zi[0];
    out[2 * m + 1] = 0.0;
    const v2d half = {0.5, 0.5};
    int k = 1;
    for (; k + 1 < m / 2; k += 2) {
        int q = m - k;
        v2d ark = load2(zr + k), aik = load2(zi + k);
        v2d arq = swap2(load2(zr + q - 1)), aiq = swap2(load2(zi + q - 1));
        v2d er = half * (ark + arq), ei = half * (aik - aiq);
        v2d dr = half * (ark - arq), di = half * (aik + aiq);
        v2d wr = load2(p->postr + k), wi = load2(p->posti + k);
        v2d tr = di * wr + dr * wi, ti = di * wi - dr * wr; /* W^k * (di - i dr) */
        v2d xr = er + tr, xi = ei + ti;
        v2d yr = er - tr, yi = ti - ei; /* X[m-k] = conj(E[k] - W^k O[k]) */
        store2(out + 2 * k, (v2d){xr[0], xi[0]});
        store2(out + 2 * k + 2, (v2d){xr[1], xi[1]});
        store2(out + 2 * q, (v2d){yr[0], yi[0]});
        store2(out + 2 * q - 2, (v2d){yr[1], yi[1]});
    }
    for (; k <= m / 2; k++) {
        int q = m - k;
        double er = 0.5 * (zr[k] + zr[q]), ei = 0.5 * (zi[k] - zi[q]);
        double dr = 0.5 * (zr[k] - zr[q]), di = 0.5 * (zi[k] + zi[q]);
        double wr = p->postr[k], wi = p->posti[k];
        double tr = di * wr + dr * wi, ti = di * wi - dr * wr;
        out[2 * k] = er + tr;
        out[2 * k + 1] = ei + ti;
        out[2 * q] = er - tr;
        out[2 * q + 1] = ti - ei;
    }
}

void lg_fft_inverse(lg_fft *p, const double *in, double *out)
{
    const int m = p->m;
    double *t = out; /* out has n = 2m doubles: stage Z there before the bit-reversed load */
    const v2d half = {0.5, 0.5}, flip = {1.0, -1.0}, rot = {-1.0, 1.0};
    for (int k = 0; k <= m / 2; k++) {
        int q = m - k;
        v2d x = load2(in + 2 * k), c = load2(in + 2 * q) * flip; /* conj(X[m-k]) */
        v2d e = half * (x + c), d = half * (x - c);
        v2d wr = {p->postr[k], p->postr[k]};
        v2d wi = {p->posti[k], -p->posti[k]}; /* e^{+2 pi i k / n} times (-1, 1) */
        v2d o = d * wr + swap2(d) * wi;
        /* Z[k] = E[k] + i O[k]; Z[m-k] = conj(E[k]) + i conj(O[k]) */
        store2(t + 2 * k, e + swap2(o) * rot);
        if (k != 0 && q != k)
            store2(t + 2 * q, e * flip + swap2(o));
    }
    complex_fft(p, t, 1);
    const double *zr = p->zr, *zi = p->zi;
    const double scale = 1.0 / (double)m;
    const v2d sr = {scale, scale}, si = {-scale, -scale};
    for (int i = 0; i < m; i += 2) {
        v2d r = load2(zr + i) * sr, im = load2(zi + i) * si;
        store2(out + 2 * i, (v2d){r[0], im[0]});
        store2(out + 2 * i + 2, (v2d){r[1], im[1]});
    }
}
