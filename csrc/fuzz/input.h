/* What every libFuzzer harness of csrc/fuzz/ shares: reading parameters, block sizes and
 * samples from the fuzzer's bytes, and checks that stop the run (a crash libFuzzer reports with
 * the input that caused it). Samples are the bytes themselves as floats, so NaN, infinities,
 * subnormals and huge values all occur. */
#ifndef LG_FUZZ_INPUT_H
#define LG_FUZZ_INPUT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *data;
    size_t size;
} fuzz_input;

/* An integer in [lo, hi] from the next two bytes (lo when they have run out). */
static inline int fuzz_int(fuzz_input *in, int lo, int hi)
{
    unsigned v = 0;
    for (int k = 0; k < 2 && in->size; k++, in->data++, in->size--)
        v = (v << 8) | in->data[0];
    return lo + (int)(v % (unsigned)(hi - lo + 1));
}

/* A value in [lo, hi] from the next two bytes. */
static inline double fuzz_real(fuzz_input *in, double lo, double hi)
{
    return lo + (hi - lo) * (double)fuzz_int(in, 0, 65535) / 65535.0;
}

/* The rest of the input as floats (a whole number of frames of `channels`), in a buffer the
 * caller frees; *frames receives their count. */
static inline float *fuzz_samples(fuzz_input *in, int channels, int *frames)
{
    size_t n = in->size / sizeof(float) / (size_t)channels;
    float *out = malloc((n ? n : 1) * (size_t)channels * sizeof(float));
    if (!out)
        abort();
    memcpy(out, in->data, n * (size_t)channels * sizeof(float));
    *frames = (int)n;
    return out;
}

/* The next block's length when `left` frames remain: all of them when *seed is 0 (the whole
 * stream in one call), else 1..max_block frames from a pseudo-random sequence of `seed`. */
static inline int fuzz_take(unsigned *seed, int max_block, int left)
{
    if (!*seed)
        return left;
    *seed = *seed * 1103515245u + 12345u;
    int take = 1 + (int)((*seed >> 8) % (unsigned)max_block);
    return take < left ? take : left;
}

/* A property the harness checks: when it fails, the report names it before the abort. */
#define FUZZ_CHECK(condition)                                                                 \
    do {                                                                                      \
        if (!(condition)) {                                                                   \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #condition);     \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

#endif
