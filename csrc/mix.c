/* Channel downmix and finite copies; see mix.h. */
#include "mix.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

int lg_downmix(const float *in, int n, int channels, float *out)
{
    if (n < 0 || channels < 1 || channels > 64 || (n > 0 && (!in || !out)))
        return LG_ERR_ARGUMENT;
    const float scale = (float)(1.0 / (double)channels);
    if (channels == 2) {
        for (int i = 0; i < n; i++)
            out[i] = (in[2 * i] + in[2 * i + 1]) * scale;
        return n;
    }
    for (int i = 0; i < n; i++) {
        const float *frame = in + (size_t)i * (size_t)channels;
        float sum = frame[0];
        for (int c = 1; c < channels; c++)
            sum += frame[c];
        out[i] = sum * scale;
    }
    return n;
}

int lg_finite_copy(const void *in, int n, float *out)
{
    if (n < 0 || (n > 0 && (!in || !out)))
        return LG_ERR_ARGUMENT;
    const unsigned char *bytes = in;
    int replaced = 0;
    for (int i = 0; i < n; i++) {
        float v;
        memcpy(&v, bytes + (size_t)i * sizeof v, sizeof v);
        int bad = !isfinite(v);
        replaced += bad;
        out[i] = bad ? 0.0f : v;
    }
    return replaced;
}
