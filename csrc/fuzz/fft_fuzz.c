/* The real FFT on any size and (finite) input: no memory error, and the inverse of the forward
 * transform gives the input back. */
#include "../fft.h"
#include "input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    int bits = fuzz_int(&in, 0, 16);
    lg_fft *plan = lg_fft_new(1 << bits);
    if (!plan) {
        FUZZ_CHECK(bits < 2);
        return 0;
    }
    int n = lg_fft_size(plan), count;
    float *raw = fuzz_samples(&in, 1, &count);
    double *x = calloc((size_t)n, sizeof(double)), *spectrum = calloc((size_t)n + 2, sizeof(double));
    double *back = calloc((size_t)n, sizeof(double));
    double scale = 0.0;
    for (int k = 0; k < n && k < count; k++) {
        x[k] = isfinite(raw[k]) ? fmax(-1e6, fmin(1e6, raw[k])) : 0.0;
        scale = fmax(scale, fabs(x[k]));
    }
    lg_fft_forward(plan, x, spectrum);
    lg_fft_inverse(plan, spectrum, back);
    for (int k = 0; k < n; k++)
        FUZZ_CHECK(fabs(back[k] - x[k]) <= 1e-9 * (scale + 1e-300) * (bits + 1));
    free(raw), free(x), free(spectrum), free(back);
    lg_fft_free(plan);
    return 0;
}
