/* lwrp_master's chain (gain, expander, lookahead true-peak limiter) on any parameters and
 * samples, whole and cut into random blocks: no memory error, every output sample finite and
 * at most the ceiling, the same output either way. */
#include "../master.h"
#include "input.h"

static int run(lg_master *m, const float *x, int n, int channels, unsigned seed, int max_block,
               float *out)
{
    int count = 0;
    for (int i = 0; i < n;) {
        int take = fuzz_take(&seed, max_block, n - i);
        int got = lg_master_process(m, x + (size_t)i * (size_t)channels, take,
                                    out + (size_t)count * (size_t)channels, take);
        FUZZ_CHECK(got >= 0 && got <= take);
        count += got;
        i += take;
    }
    int latency = lg_master_latency(m);
    int got = lg_master_finish(m, out + (size_t)count * (size_t)channels, latency);
    FUZZ_CHECK(got >= 0 && got <= latency);
    return count + got;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    int channels = fuzz_int(&in, 0, 8);
    double rate = fuzz_real(&in, 500.0, 200000.0), gain = fuzz_real(&in, -70.0, 70.0);
    double amount = fuzz_real(&in, -0.2, 1.2), depth = fuzz_real(&in, -1.0, 30.0);
    double fast = fuzz_real(&in, 0.0, 500.0), slow = fuzz_real(&in, 0.0, 20000.0);
    double ceiling = fuzz_real(&in, -70.0, 1.0), lookahead = fuzz_real(&in, 0.0, 60.0);
    double release = fuzz_real(&in, 0.0, 12000.0);
    unsigned seed = (unsigned)fuzz_int(&in, 1, 65535);
    lg_master *whole = lg_master_new(channels, rate, gain, amount, depth, fast, slow, ceiling,
                                     lookahead, release);
    lg_master *cut = lg_master_new(channels, rate, gain, amount, depth, fast, slow, ceiling,
                                   lookahead, release);
    if (!whole || !cut) {
        FUZZ_CHECK(!whole && !cut);
        return 0;
    }
    int n;
    float *x = fuzz_samples(&in, channels, &n);
    size_t room = ((size_t)n + (size_t)lg_master_latency(whole) + 1) * (size_t)channels;
    float *a = calloc(room, sizeof(float)), *b = calloc(room, sizeof(float));
    int na = run(whole, x, n, channels, 0, n, a);
    int nb = run(cut, x, n, channels, seed, 4096, b);
    FUZZ_CHECK(na == nb && na == n);
    double limit = pow(10.0, ceiling / 20.0) * (1.0 + 1e-6);
    for (size_t k = 0; k < (size_t)na * (size_t)channels; k++)
        FUZZ_CHECK(isfinite(a[k]) && fabs(a[k]) <= limit && a[k] == b[k]);
    free(a), free(b), free(x);
    lg_master_free(whole);
    lg_master_free(cut);
    return 0;
}
