/* fingerprint25d's analyser on any format and samples, whole and cut into random blocks: no
 * memory error, and the same 25 values either way (each finite, or NaN where undefined). */
#include "../fingerprint.h"
#include "input.h"

#define DIMS 25

static void run(lg_fingerprint *f, const float *x, int n, int channels, unsigned seed,
                double *out)
{
    for (int i = 0; i < n;) {
        int take = fuzz_take(&seed, 8192, n - i);
        FUZZ_CHECK(lg_fingerprint_process(f, x + (size_t)i * (size_t)channels, take) >= 0);
        i += take;
    }
    FUZZ_CHECK(lg_fingerprint_result(f, out) >= 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    int rate = fuzz_int(&in, 4000, 400000), channels = fuzz_int(&in, 0, 7);
    unsigned seed = (unsigned)fuzz_int(&in, 1, 65535);
    FUZZ_CHECK(lg_fingerprint_dimensions() == DIMS);
    lg_fingerprint *whole = lg_fingerprint_new(rate, channels);
    lg_fingerprint *cut = lg_fingerprint_new(rate, channels);
    if (!whole || !cut) {
        FUZZ_CHECK(!whole && !cut);
        return 0;
    }
    int n;
    float *x = fuzz_samples(&in, channels, &n);
    double a[DIMS], b[DIMS];
    run(whole, x, n, channels, 0, a);
    run(cut, x, n, channels, seed, b);
    for (int k = 0; k < DIMS; k++)
        FUZZ_CHECK((isnan(a[k]) && isnan(b[k])) || (a[k] == b[k] && !isinf(a[k])));
    free(x);
    lg_fingerprint_free(whole);
    lg_fingerprint_free(cut);
    return 0;
}
