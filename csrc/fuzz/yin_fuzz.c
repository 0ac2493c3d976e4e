/* pitch_yin's estimator on any parameters and samples, whole and cut into random blocks: no
 * memory error, f0 and confidence in range, and the same frames either way. */
#include "../yin.h"
#include "input.h"

static int run(lg_yin *y, const float *x, int n, unsigned seed, int max_block, double *f0,
               double *conf, int *voiced)
{
    int out = 0;
    for (int i = 0; i < n;) {
        int take = fuzz_take(&seed, max_block, n - i);
        int cap = lg_yin_max_outputs(y, take);
        int got = lg_yin_process(y, x + i, take, f0 + out, conf + out, voiced + out, cap);
        FUZZ_CHECK(got >= 0 && got <= cap);
        out += got;
        i += take;
    }
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    double rate = fuzz_real(&in, 4000.0, 96000.0);
    int window = fuzz_int(&in, 16, 4096);
    int hop = fuzz_int(&in, 1, 4096);
    double fmin = fuzz_real(&in, 1.0, 2000.0), fmax = fuzz_real(&in, 20.0, 20000.0);
    double threshold = fuzz_real(&in, 0.0, 1.2), silence = fuzz_real(&in, -120.0, 0.0);
    unsigned seed = (unsigned)fuzz_int(&in, 1, 65535);
    lg_yin *whole = lg_yin_new(rate, window, hop, fmin, fmax, threshold, silence);
    lg_yin *cut = lg_yin_new(rate, window, hop, fmin, fmax, threshold, silence);
    if (!whole || !cut) {
        FUZZ_CHECK(!whole && !cut);
        return 0;
    }
    int n;
    float *x = fuzz_samples(&in, 1, &n);
    int cap = lg_yin_max_outputs(whole, n) + 1;
    double *f0 = calloc((size_t)cap * 4, sizeof(double));
    int *voiced = calloc((size_t)cap * 2, sizeof(int));
    int a = run(whole, x, n, 0, n, f0, f0 + cap, voiced);
    int b = run(cut, x, n, seed, 3 * hop, f0 + 2 * cap, f0 + 3 * cap, voiced + cap);
    FUZZ_CHECK(a == b);
    for (int k = 0; k < a; k++) {
        FUZZ_CHECK(isfinite(f0[k]) && f0[k] >= 0.0 && f0[k] <= rate);
        FUZZ_CHECK(f0[k] == f0[2 * cap + k] && f0[cap + k] == f0[3 * cap + k]);
        FUZZ_CHECK(f0[cap + k] >= 0.0 && f0[cap + k] <= 1.0 && voiced[k] == voiced[cap + k]);
    }
    free(f0);
    free(voiced);
    free(x);
    lg_yin_free(whole);
    lg_yin_free(cut);
    return 0;
}
