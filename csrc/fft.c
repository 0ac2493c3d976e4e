/* Real FFT via a half-size complex FFT (iterative radix-2, precomputed per-stage twiddles). */
#include "fft.h"

#include <math.h>
#include <stdlib.h>

struct lg_fft {
    int n;          /* real size */
    int m;          /* complex size, n / 2 */
    int *bitrev;    /* m entries */
    double *tw;     /* per-stage twiddles, (re, im) pairs, m - 1 pairs in all */
    double *post;   /* real-split twiddles e^{-2 pi i k / n}, k < m/2 + 1, (re, im) */
    double *work;   /* 2 m doubles of scratch */
};

static const double LG_PI = 3.14159265358979323846;

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
    p->tw = malloc(sizeof(double) * 2 * (size_t)(m > 1 ? m : 2));
    p->post = malloc(sizeof(double) * 2 * (size_t)(m / 2 + 1));
    p->work = malloc(sizeof(double) * 2 * (size_t)m);
    if (!p->bitrev || !p->tw || !p->post || !p->work) {
        lg_fft_free(p);
        return NULL;
    }
    int bits = 0;
    while ((1 << bits) < m)
        bits++;
    for (int i = 0; i < m; i++) {
        int r = 0;
        for (int b = 0; b < bits; b++)
            if (i & (1 << b))
                r |= 1 << (bits - 1 - b);
        p->bitrev[i] = r;
    }
    /* Stage with half-length h uses twiddles e^{-2 pi i j / (2h)}, j < h, stored at offset h - 1. */
    for (int h = 1; h < m; h <<= 1) {
        for (int j = 0; j < h; j++) {
            double a = -LG_PI * (double)j / (double)h;
            p->tw[2 * (h - 1 + j)] = cos(a);
            p->tw[2 * (h - 1 + j) + 1] = sin(a);
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
    free(p->work);
    free(p);
}

int lg_fft_size(const lg_fft *p) { return p->n; }

/* In-place complex FFT of z (m points, interleaved), already in bit-reversed order.
 * sign = -1 forward, +1 inverse (conjugated twiddles). */
static void complex_passes(const lg_fft *p, double *z, int sign)
{
    int m = p->m;
    for (int h = 1; h < m; h <<= 1) {
        const double *w = p->tw + 2 * (h - 1);
        for (int s = 0; s < m; s += 2 * h) {
            double *a = z + 2 * s;
            double *b = z + 2 * (s + h);
            for (int j = 0; j < h; j++) {
                double wr = w[2 * j], wi = sign < 0 ? w[2 * j + 1] : -w[2 * j + 1];
                double br = b[2 * j], bi = b[2 * j + 1];
                double tr = br * wr - bi * wi;
                double ti = br * wi + bi * wr;
                double ar = a[2 * j], ai = a[2 * j + 1];
                a[2 * j] = ar + tr;
                a[2 * j + 1] = ai + ti;
                b[2 * j] = ar - tr;
                b[2 * j + 1] = ai - ti;
            }
        }
    }
}

void lg_fft_forward(lg_fft *p, const double *in, double *out)
{
    int m = p->m;
    double *z = p->work;
    for (int i = 0; i < m; i++) {
        int r = p->bitrev[i];
        z[2 * r] = in[2 * i];
        z[2 * r + 1] = in[2 * i + 1];
    }
    complex_passes(p, z, -1);
    /* Split the packed transform into the spectrum of the real sequence. */
    out[0] = z[0] + z[1];
    out[1] = 0.0;
    out[2 * m] = z[0] - z[1];
    out[2 * m + 1] = 0.0;
    for (int k = 1; k <= m / 2; k++) {
        int q = m - k;
        double zr = z[2 * k], zi = z[2 * k + 1];
        double cr = z[2 * q], ci = -z[2 * q + 1]; /* conj(Z[m-k]) */
        double er = 0.5 * (zr + cr), ei = 0.5 * (zi + ci);
        double dr = 0.5 * (zr - cr), di = 0.5 * (zi - ci);
        /* odd part: (Z[k] - conj(Z[m-k])) / (2i) */
        double or_ = di, oi = -dr;
        double wr = p->post[2 * k], wi = p->post[2 * k + 1];
        double tr = or_ * wr - oi * wi, ti = or_ * wi + oi * wr;
        out[2 * k] = er + tr;
        out[2 * k + 1] = ei + ti;
        /* X[m-k] = conj(E[k] - W^k O[k]) */
        out[2 * q] = er - tr;
        out[2 * q + 1] = -(ei - ti);
    }
}

void lg_fft_inverse(lg_fft *p, const double *in, double *out)
{
    int m = p->m;
    double *z = p->work;
    double *t = out; /* out has n = 2m doubles: use it to stage Z before bit reversal */
    for (int k = 0; k <= m / 2; k++) {
        int q = m - k;
        double xr = in[2 * k], xi = in[2 * k + 1];
        double cr = in[2 * q], ci = -in[2 * q + 1]; /* conj(X[m-k]) */
        double er = 0.5 * (xr + cr), ei = 0.5 * (xi + ci);
        double dr = 0.5 * (xr - cr), di = 0.5 * (xi - ci);
        double wr = p->post[2 * k], wi = -p->post[2 * k + 1]; /* e^{+2 pi i k / n} */
        double or_ = dr * wr - di * wi, oi = dr * wi + di * wr;
        /* Z[k] = E[k] + i O[k] */
        t[2 * k] = er - oi;
        t[2 * k + 1] = ei + or_;
        if (k != 0 && q != k) {
            /* Z[m-k] = conj(E[k]) + i conj(O[k]) * (-1) ... derived from symmetry */
            t[2 * q] = er + oi;
            t[2 * q + 1] = -ei + or_;
        }
    }
    for (int i = 0; i < m; i++) {
        int r = p->bitrev[i];
        z[2 * r] = t[2 * i];
        z[2 * r + 1] = t[2 * i + 1];
    }
    complex_passes(p, z, +1);
    double scale = 1.0 / (double)m;
    for (int i = 0; i < m; i++) {
        out[2 * i] = z[2 * i] * scale;
        out[2 * i + 1] = z[2 * i + 1] * scale;
    }
}
