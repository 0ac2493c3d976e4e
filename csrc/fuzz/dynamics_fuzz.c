/* The dynamics meters (levels, loudness, true peak) on any format and samples, whole and cut
 * into random blocks: no memory error, readings finite (clamped dB), the same either way. */
#include "../dynamics.h"
#include "../loudness.h"
#include "../truepeak.h"
#include "input.h"

static int run(lg_dynamics *d, const float *x, int n, int channels, unsigned seed,
               int max_block, double *out, int cap)
{
    int count = 0;
    for (int i = 0; i < n;) {
        int take = fuzz_take(&seed, max_block, n - i);
        int room = lg_dynamics_max_outputs(d, take);
        const float *block = x + (size_t)i * (size_t)channels;
        int got = lg_dynamics_process(d, block, take, out + count, out + cap + count,
                                      out + 2 * cap + count, out + 3 * cap + count, room);
        FUZZ_CHECK(got >= 0 && got <= room);
        count += got;
        i += take;
    }
    return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    int rate = fuzz_int(&in, 1000, 200000), channels = fuzz_int(&in, 0, 7);
    int hop = fuzz_int(&in, 0, 5000);
    unsigned seed = (unsigned)fuzz_int(&in, 1, 65535);
    lg_dynamics *whole = lg_dynamics_new(rate, channels, hop);
    lg_dynamics *cut = lg_dynamics_new(rate, channels, hop);
    if (!whole || !cut) {
        FUZZ_CHECK(!whole && !cut);
        return 0;
    }
    int n;
    float *x = fuzz_samples(&in, channels, &n);
    int cap = lg_dynamics_max_outputs(whole, n) + 1;
    double *a = calloc((size_t)cap * 4, sizeof(double)), *b = calloc((size_t)cap * 4, sizeof(double));
    int na = run(whole, x, n, channels, 0, n, a, cap);
    int nb = run(cut, x, n, channels, seed, 3 * hop + 1, b, cap);
    FUZZ_CHECK(na == nb);
    for (int r = 0; r < 4; r++)
        for (int k = 0; k < na; k++)
            FUZZ_CHECK(isfinite(a[r * cap + k]) && a[r * cap + k] == b[r * cap + k]);
    double tp = lg_truepeak_max(lg_dynamics_truepeak(whole));
    FUZZ_CHECK(tp == lg_truepeak_max(lg_dynamics_truepeak(cut)) && tp >= 0.0);
    double lufs = lg_loudness_integrated(lg_dynamics_loudness(whole));
    FUZZ_CHECK(isnan(lufs) || lufs == lg_loudness_integrated(lg_dynamics_loudness(cut)));
    free(a), free(b), free(x);
    lg_dynamics_free(whole);
    lg_dynamics_free(cut);
    return 0;
}
