/* A pipeline's per-block work in one call; see chain.h. */
#include "chain.h"

#include <stddef.h>

#include "mix.h"

int lg_step_run(lg_step *step, const float *in, int n)
{
    if (!step || !step->run)
        return LG_ERR_ARGUMENT;
    int status = step->run(step, in, n);
    if (status >= 0)
        step->frames += n;
    return status;
}

int lg_chain_run(lg_step *const *steps, int count, int first, const float *frames, int n,
                 int channels, float *mix, int *counts)
{
    if (!steps || !counts || count < 0 || first < 0 || first > count || n < 0 || channels < 1 ||
        (n > 0 && !frames))
        return LG_ERR_ARGUMENT;
    const float *mono = frames;
    if (channels > 1) {
        int wants_mix = 0;
        for (int i = first; i < count; i++)
            wants_mix |= steps[i]->mono;
        if (wants_mix && n > 0) {
            if (!mix)
                return LG_ERR_ARGUMENT;
            int status = lg_downmix(frames, n, channels, mix);
            if (status < 0)
                return status;
        }
        mono = mix;
    }
    for (int i = first; i < count; i++) {
        int status = lg_step_run(steps[i], steps[i] && steps[i]->mono ? mono : frames, n);
        counts[i] = status;
        if (status < 0)
            return i;
    }
    return count;
}
