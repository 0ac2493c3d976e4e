/* Real FFT shared by every spectral kernel: power-of-two sizes, double precision, no globals. */
#ifndef LEGATO_FFT_H
#define LEGATO_FFT_H

/* cffi:begin */
typedef struct lg_fft lg_fft;

/* Plan for a real transform of n points (n a power of two, 4 <= n <= 2^24); NULL if invalid. */
lg_fft *lg_fft_new(int n);
void lg_fft_free(lg_fft *plan);
int lg_fft_size(const lg_fft *plan);

/* in[n] real -> out[n + 2]: bins 0..n/2 as interleaved (re, im). Unnormalised. */
void lg_fft_forward(lg_fft *plan, const double *in, double *out);

/* in[n + 2] half spectrum (re, im) -> out[n] real, scaled by 1/n so inverse(forward(x)) == x. */
void lg_fft_inverse(lg_fft *plan, const double *in, double *out);
/* cffi:end */

#endif
