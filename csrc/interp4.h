/* The 4x true-peak interpolator shared by the meter (truepeak.c) and the limiter (limiter.c):
 * a Kaiser-windowed sinc (beta 6) cut off at the input Nyquist frequency, LG_INTERP4_SIDE input
 * samples either side of each interpolated point. Its zeros fall on the input samples, so phase
 * 0 is the input itself and only the three fractional phases are filtered, each normalised to
 * unit gain at DC. Internal: not exposed to Python. */
#ifndef LEGATO_INTERP4_H
#define LEGATO_INTERP4_H

#define LG_INTERP4_SIDE 12

/* Phases 3 and 1 are mirror images and phase 2 is symmetric, so with u = x[a] + x[b] and
 * v = x[a] - x[b] over the mirrored tap pairs (a = k, b = 2 LG_INTERP4_SIDE - 1 - k):
 * phase 2 = sum c2 u, phase 1 + phase 3 = sum cs u and phase 1 - phase 3 = sum cd v, whence
 * max(|phase 1|, |phase 3|) = (|sum| + |diff|) / 2. Fills the three coefficient halves, in
 * double, and returns the largest absolute gain of a phase (the sum of its absolute taps): a
 * bound on |interpolated| / max |input| over its span. */
double lg_interp4_design(double cs[LG_INTERP4_SIDE], double cd[LG_INTERP4_SIDE],
                         double c2[LG_INTERP4_SIDE]);

#endif
