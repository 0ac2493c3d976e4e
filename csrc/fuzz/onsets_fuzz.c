/* onsets_flux's detector on any parameters and samples, whole and cut into random blocks: no
 * memory error, onsets in order inside the stream with finite strengths, and the same onsets
 * either way. */
#include "../onsets.h"
#include "input.h"

typedef struct {
    int64_t *at;
    double *strength;
} found;

static int run(lg_onsets *s, const float *x, int n, unsigned seed, int max_block, found out)
{
    int count = 0;
    for (int i = 0; i < n;) {
        int take = fuzz_take(&seed, max_block, n - i);
        int cap = lg_onsets_max_outputs(s, take);
        int got = lg_onsets_process(s, x + i, take, out.at + count, out.strength + count, cap);
        FUZZ_CHECK(got >= 0 && got <= cap);
        count += got;
        i += take;
    }
    int cap = lg_onsets_max_outputs(s, -1);
    int got = lg_onsets_finish(s, out.at + count, out.strength + count, cap);
    FUZZ_CHECK(got >= 0 && got <= cap);
    return count + got;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    int rate = fuzz_int(&in, 4000, 96000), window = fuzz_int(&in, 8, 4096);
    int hop = fuzz_int(&in, 1, 2048), bands = fuzz_int(&in, 1, 48);
    double fmin = fuzz_real(&in, 1.0, 2000.0), fmax = fuzz_real(&in, 100.0, 30000.0);
    double compression = fuzz_real(&in, 0.0, 1e4), release = fuzz_real(&in, 0.0, 200.0);
    int pre_avg = fuzz_int(&in, 0, 20), post_avg = fuzz_int(&in, 0, 20);
    int pre_max = fuzz_int(&in, 0, 20), post_max = fuzz_int(&in, 0, 20);
    double weight = fuzz_real(&in, 0.0, 3.0), delta = fuzz_real(&in, 0.0, 2.0);
    double silence = fuzz_real(&in, -200.0, 0.0);
    int gap = fuzz_int(&in, 0, 4096);
    unsigned seed = (unsigned)fuzz_int(&in, 1, 65535);
#define NEW()                                                                                 \
    lg_onsets_new(rate, window, hop, bands, fmin, fmax, compression, release, pre_avg,         \
                  post_avg, pre_max, post_max, weight, delta, silence, gap)
    lg_onsets *whole = NEW(), *cut = NEW();
    if (!whole || !cut) {
        FUZZ_CHECK(!whole && !cut);
        return 0;
    }
    int n;
    float *x = fuzz_samples(&in, 1, &n);
    int cap = lg_onsets_max_outputs(whole, n) + lg_onsets_max_outputs(whole, -1) + 1;
    found a = {calloc((size_t)cap, sizeof(int64_t)), calloc((size_t)cap, sizeof(double))};
    found b = {calloc((size_t)cap, sizeof(int64_t)), calloc((size_t)cap, sizeof(double))};
    int na = run(whole, x, n, 0, n, a), nb = run(cut, x, n, seed, 3 * hop, b);
    FUZZ_CHECK(na == nb);
    for (int k = 0; k < na; k++) {
        FUZZ_CHECK(a.at[k] == b.at[k] && a.strength[k] == b.strength[k]);
        FUZZ_CHECK(isfinite(a.strength[k]) && a.at[k] >= 0 && a.at[k] <= n + window);
        FUZZ_CHECK(k == 0 || a.at[k] > a.at[k - 1]);
    }
    free(a.at), free(a.strength), free(b.at), free(b.strength), free(x);
    lg_onsets_free(whole);
    lg_onsets_free(cut);
    return 0;
}
