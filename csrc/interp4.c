/* Design of the 4x true-peak interpolator (see interp4.h), in double. */
#include "interp4.h"

#include <math.h>

#define I4_PHASES 4
#define I4_TAPS (2 * LG_INTERP4_SIDE)
#define I4_BETA 6.0

static const double I4_PI = 3.14159265358979323846;

/* Modified Bessel function of the first kind, order 0 (power series; converges fast here). */
static double bessel_i0(double x)
{
    double sum = 1.0, term = 1.0, q = x * x / 4.0;
    for (int k = 1; k < 200 && term > 1e-17 * sum; k++) {
        term *= q / ((double)k * (double)k);
        sum += term;
    }
    return sum;
}

double lg_interp4_design(double cs[LG_INTERP4_SIDE], double cd[LG_INTERP4_SIDE],
                         double c2[LG_INTERP4_SIDE])
{
    const double half = (double)(I4_PHASES * LG_INTERP4_SIDE);
    double h[I4_PHASES][I4_TAPS];
    double gain = 1.0;
    for (int p = 1; p < I4_PHASES; p++) {
        double sum = 0.0, abs_sum = 0.0;
        for (int k = 0; k < I4_TAPS; k++) {
            /* h[p][k] weighs x[j - LG_INTERP4_SIDE + 1 + k] for the point j + p / 4 */
            double m = (double)((LG_INTERP4_SIDE - 1 - k) * I4_PHASES + p);
            double u = m / half;
            double t = I4_PI * m / I4_PHASES;
            double w = bessel_i0(I4_BETA * sqrt(1.0 - u * u)) / bessel_i0(I4_BETA);
            h[p][k] = sin(t) / t * w;
            sum += h[p][k];
        }
        for (int k = 0; k < I4_TAPS; k++) {
            h[p][k] /= sum;
            abs_sum += fabs(h[p][k]);
        }
        gain = abs_sum > gain ? abs_sum : gain;
    }
    for (int k = 0; k < LG_INTERP4_SIDE; k++) {
        cs[k] = h[1][k] + h[1][I4_TAPS - 1 - k];
        cd[k] = h[1][k] - h[1][I4_TAPS - 1 - k];
        c2[k] = h[2][k];
    }
    return gain;
}
