/* Checkpoints of the streaming kernels (yin, onsets, dynamics, master, fingerprint): a stream cut at any point and
 * continued from a checkpoint in a fresh state gives what the whole stream gives; a checkpoint
 * cut short is refused as corrupt; and one altered anywhere with its checksum made right again
 * (so the kernel's own checks are what stand in the way: a range read from it, a configuration
 * field) is loaded or refused without a memory error, a refused one leaving the state as it
 * was. What a state does with stream values someone forged and sealed is not in question. */
#include "../checkpoint.h"
#include "../dynamics.h"
#include "../fingerprint.h"
#include "../master.h"
#include "../onsets.h"
#include "../yin.h"
#include "input.h"

#define HEADER 48

typedef struct {
    void *(*make)(void);
    void (*destroy)(void *);
    long long (*save)(const void *, void *, long long);
    int (*load)(void *, const void *, long long);
    /* Feeds n samples (frames of `channels`), writing up to one output per hop into out;
     * returns how many. */
    int (*feed)(void *, const float *, int, double *, int cap);
    int channels;
} kernel;

static void *yin_make(void) { return lg_yin_new(44100.0, 1024, 256, 60.0, 2000.0, 0.15, -70.0); }
static void yin_destroy(void *s) { lg_yin_free(s); }
static long long yin_save(const void *s, void *b, long long c) { return lg_yin_save(s, b, c); }
static int yin_load(void *s, const void *b, long long n) { return lg_yin_load(s, b, n); }
static int yin_feed(void *s, const float *x, int n, double *out, int cap)
{
    int need = lg_yin_max_outputs(s, n);
    FUZZ_CHECK(need <= cap);
    double *conf = malloc(sizeof(double) * (size_t)(need + 1));
    int *voiced = malloc(sizeof(int) * (size_t)(need + 1));
    int got = lg_yin_process(s, x, n, out, conf, voiced, need);
    FUZZ_CHECK(got >= 0);
    free(conf);
    free(voiced);
    return got;
}

static void *onsets_make(void)
{
    return lg_onsets_new(44100, 1024, 256, 24, 30.0, 17000.0, 100.0, 10.0, 6, 1, 3, 1, 1.0, 0.1,
                         -70.0, 1323);
}
static void onsets_destroy(void *s) { lg_onsets_free(s); }
static long long onsets_save(const void *s, void *b, long long c) { return lg_onsets_save(s, b, c); }
static int onsets_load(void *s, const void *b, long long n) { return lg_onsets_load(s, b, n); }
static int onsets_feed(void *s, const float *x, int n, double *out, int cap)
{
    int need = lg_onsets_max_outputs(s, n);
    FUZZ_CHECK(need <= cap);
    int64_t *at = malloc(sizeof(int64_t) * (size_t)(need + 1));
    int got = lg_onsets_process(s, x, n, at, out, need);
    FUZZ_CHECK(got >= 0);
    free(at);
    return got;
}

static void *dynamics_make(void) { return lg_dynamics_new(8000, 2, 64); }
static void dynamics_destroy(void *s) { lg_dynamics_free(s); }
static long long dynamics_save(const void *s, void *b, long long c)
{
    return lg_dynamics_save(s, b, c);
}
static int dynamics_load(void *s, const void *b, long long n) { return lg_dynamics_load(s, b, n); }
static int dynamics_feed(void *s, const float *x, int n, double *out, int cap)
{
    int need = lg_dynamics_max_outputs(s, n);
    FUZZ_CHECK(need <= cap);
    double *rest = malloc(sizeof(double) * 3 * (size_t)(need + 1));
    int got = lg_dynamics_process(s, n ? x : NULL, n, out, rest, rest + need + 1,
                                  rest + 2 * (need + 1), need);
    FUZZ_CHECK(got >= 0);
    free(rest);
    return got;
}

static void *master_make(void)
{
    return lg_master_new(2, 8000.0, 3.0, 0.5, 12.0, 5.0, 200.0, -1.0, 5.0, 50.0);
}
static void master_destroy(void *s) { lg_master_free(s); }
static long long master_save(const void *s, void *b, long long c) { return lg_master_save(s, b, c); }
static int master_load(void *s, const void *b, long long n) { return lg_master_load(s, b, n); }
/* The left channel of the frames the chain releases. */
static int master_feed(void *s, const float *x, int n, double *out, int cap)
{
    FUZZ_CHECK(n <= cap);
    float *pcm = malloc(sizeof(float) * 2 * (size_t)(n + 1));
    int got = lg_master_process(s, x, n, pcm, n);
    FUZZ_CHECK(got >= 0 && got <= n);
    for (int i = 0; i < got; i++)
        out[i] = pcm[2 * i];
    free(pcm);
    return got;
}

static void *fingerprint_make(void) { return lg_fingerprint_new(8000, 2); }
static void fingerprint_destroy(void *s) { lg_fingerprint_free(s); }
static long long fingerprint_save(const void *s, void *b, long long c)
{
    return lg_fingerprint_save(s, b, c);
}
static int fingerprint_load(void *s, const void *b, long long n)
{
    return lg_fingerprint_load(s, b, n);
}
/* No outputs while streaming: the 25 values once the stream is fed (the second call, on the
 * restored state, gives the values of the whole stream). */
static int fingerprint_feed(void *s, const float *x, int n, double *out, int cap)
{
    FUZZ_CHECK(lg_fingerprint_process(s, x, n) >= 0 && cap >= 0);
    (void)out;
    return 0;
}

static const kernel KERNELS[] = {
    {yin_make, yin_destroy, yin_save, yin_load, yin_feed, 1},
    {onsets_make, onsets_destroy, onsets_save, onsets_load, onsets_feed, 1},
    {dynamics_make, dynamics_destroy, dynamics_save, dynamics_load, dynamics_feed, 2},
    {master_make, master_destroy, master_save, master_load, master_feed, 2},
    {fingerprint_make, fingerprint_destroy, fingerprint_save, fingerprint_load,
     fingerprint_feed, 2},
};

static unsigned char *checkpoint(const kernel *k, void *state, long long *size)
{
    *size = k->save(state, NULL, 0);
    FUZZ_CHECK(*size >= HEADER);
    unsigned char *buf = malloc((size_t)*size);
    FUZZ_CHECK(k->save(state, buf, *size) == *size);
    FUZZ_CHECK(k->save(state, buf, *size - 1) == LG_ERR_CAPACITY);
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    const kernel *k = &KERNELS[fuzz_int(&in, 0, sizeof KERNELS / sizeof KERNELS[0] - 1)];
    int cut_at = fuzz_int(&in, 0, 65535);
    int flips = fuzz_int(&in, 0, 8);
    int flip_at[8], flip_bits[8];
    for (int f = 0; f < flips; f++) {
        flip_at[f] = fuzz_int(&in, 0, 65535);
        flip_bits[f] = fuzz_int(&in, 1, 255);
    }
    int frames;
    float *x = fuzz_samples(&in, k->channels, &frames);
    int cut = frames ? cut_at % (frames + 1) : 0;
    int cap = frames + 8;
    double *whole = calloc((size_t)cap, sizeof(double));
    double *parts = calloc((size_t)cap, sizeof(double));

    void *a = k->make(), *b = k->make(), *c = k->make();
    FUZZ_CHECK(a && b && c);
    int n_whole = k->feed(a, x, frames, whole, cap);
    int n_first = k->feed(b, x, cut, parts, cap);
    long long n;
    unsigned char *saved = checkpoint(k, b, &n);
    FUZZ_CHECK(k->load(c, saved, n) == LG_OK);
    int n_rest = k->feed(c, x + (size_t)cut * (size_t)k->channels, frames - cut, parts + n_first,
                         cap - n_first);
    FUZZ_CHECK(n_first + n_rest == n_whole);
    for (int i = 0; i < n_whole; i++)
        FUZZ_CHECK(memcmp(&whole[i], &parts[i], sizeof(double)) == 0);
    if (k->make == fingerprint_make) {
        double va[32], vc[32];
        FUZZ_CHECK(lg_fingerprint_result(a, va) >= 0 && lg_fingerprint_result(c, vc) >= 0);
        FUZZ_CHECK(memcmp(va, vc, sizeof(double) * (size_t)lg_fingerprint_dimensions()) == 0);
    }

    /* Altered and re-sealed: loads or is refused, and the refused state is untouched. */
    if (flips && n > HEADER) {
        for (int f = 0; f < flips; f++)
            saved[HEADER + (size_t)flip_at[f] % (size_t)(n - HEADER)] ^= (uint8_t)flip_bits[f];
        unsigned long long sum = lg_checksum(saved + HEADER, (size_t)(n - HEADER));
        memcpy(saved + 40, &sum, sizeof sum);
        void *d = k->make();
        long long before_n;
        unsigned char *before = checkpoint(k, d, &before_n);
        int status = k->load(d, saved, n);
        FUZZ_CHECK(status == LG_OK || status == LG_ERR_MISMATCH);
        if (status != LG_OK) {
            long long after_n;
            unsigned char *after = checkpoint(k, d, &after_n);
            FUZZ_CHECK(after_n == before_n && memcmp(before, after, (size_t)after_n) == 0);
            free(after);
        }
        free(before);
        k->destroy(d);
    }
    FUZZ_CHECK(k->load(c, saved, n - 1) == LG_ERR_CORRUPT);
    free(saved);
    free(whole);
    free(parts);
    free(x);
    k->destroy(a);
    k->destroy(b);
    k->destroy(c);
    return 0;
}
