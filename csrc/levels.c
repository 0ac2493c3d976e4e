/* Per-hop mean square and sample peak over all channels. Squares are summed in double, in frame
 * order, so the results do not depend on how the stream is split. Non-finite samples count as
 * 0.0. */
#include "levels.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

#define LV_MAX_CHANNELS 64

struct lg_levels {
    int channels, hop;
    int fill;      /* frames in the hop in progress */
    double sumsq;  /* of the hop in progress */
    float peak;    /* of the hop in progress */
    double total_sumsq;
    float total_peak;
    long long frames, nonfinite;
};

void lg_levels_reset(lg_levels *lv)
{
    if (!lv)
        return;
    lv->fill = 0;
    lv->sumsq = lv->total_sumsq = 0.0;
    lv->peak = lv->total_peak = 0.0f;
    lv->frames = lv->nonfinite = 0;
}

lg_levels *lg_levels_new(int channels, int hop)
{
    if (channels < 1 || channels > LV_MAX_CHANNELS || hop < 1)
        return NULL;
    lg_levels *lv = calloc(1, sizeof *lv);
    if (!lv)
        return NULL;
    lv->channels = channels;
    lv->hop = hop;
    lg_levels_reset(lv);
    return lv;
}

void lg_levels_free(lg_levels *lv)
{
    free(lv);
}

/* Each frame's squares are summed first (in channel order), then added to the hop's sum, so the
 * hop's running sum waits on one add per frame. Inlined with a constant channel count. */
static inline __attribute__((always_inline)) int levels_run(lg_levels *lv, const float *in, int n,
                                                            double *mean_square, double *peak,
                                                            const int ch)
{
    const double scale = 1.0 / ((double)lv->hop * (double)ch);
    int count = 0, fill = lv->fill;
    double sumsq = lv->sumsq;
    float pk = lv->peak;
    long long bad = 0;
    for (int i = 0; i < n; i++) {
        const float *frame = in + (size_t)i * (size_t)ch;
        double frame_sq = 0.0;
        float frame_pk = 0.0f;
        for (int c = 0; c < ch; c++) {
            float a = fabsf(frame[c]);
            int ok = a <= FLT_MAX;
            a = ok ? a : 0.0f;
            bad += !ok;
            frame_sq += (double)a * (double)a;
            frame_pk = a > frame_pk ? a : frame_pk;
        }
        sumsq += frame_sq;
        pk = frame_pk > pk ? frame_pk : pk;
        if (++fill == lv->hop) {
            mean_square[count] = sumsq * scale;
            peak[count] = (double)pk;
            count++;
            lv->total_sumsq += sumsq;
            lv->total_peak = pk > lv->total_peak ? pk : lv->total_peak;
            fill = 0;
            sumsq = 0.0;
            pk = 0.0f;
        }
    }
    lv->fill = fill;
    lv->sumsq = sumsq;
    lv->peak = pk;
    lv->nonfinite += bad;
    return count;
}

int lg_levels_process(lg_levels *lv, const float *in, int n, double *mean_square, double *peak,
                      int cap)
{
    if (!lv || n < 0 || (n > 0 && !in))
        return LG_ERR_ARGUMENT;
    long long hops = ((long long)lv->fill + n) / lv->hop;
    if (hops > 0 && (!mean_square || !peak))
        return LG_ERR_ARGUMENT;
    if (hops > cap)
        return LG_ERR_CAPACITY;
    int count;
    switch (lv->channels) {
    case 1:
        count = levels_run(lv, in, n, mean_square, peak, 1);
        break;
    case 2:
        count = levels_run(lv, in, n, mean_square, peak, 2);
        break;
    default:
        count = levels_run(lv, in, n, mean_square, peak, lv->channels);
        break;
    }
    lv->frames += n;
    return count;
}

int lg_levels_partial(const lg_levels *lv, double *mean_square, double *peak)
{
    if (!lv || lv->fill == 0)
        return 0;
    if (mean_square)
        *mean_square = lv->sumsq / ((double)lv->fill * (double)lv->channels);
    if (peak)
        *peak = (double)lv->peak;
    return lv->fill;
}

double lg_levels_mean_square(const lg_levels *lv)
{
    if (!lv || lv->frames == 0)
        return 0.0;
    return (lv->total_sumsq + lv->sumsq) / ((double)lv->frames * (double)lv->channels);
}

double lg_levels_peak(const lg_levels *lv)
{
    if (!lv)
        return 0.0;
    return (double)(lv->peak > lv->total_peak ? lv->peak : lv->total_peak);
}

long long lg_levels_frames(const lg_levels *lv)
{
    return lv ? lv->frames : 0;
}

long long lg_levels_nonfinite(const lg_levels *lv)
{
    return lv ? lv->nonfinite : 0;
}

void lg_levels_transfer(lg_ck *ck, lg_levels *lv)
{
    lg_ck_config(ck, &lv->channels, sizeof lv->channels);
    lg_ck_config(ck, &lv->hop, sizeof lv->hop);
    int fill = lv->fill;
    lg_ck_value(ck, &fill, sizeof fill);
    if (fill < 0 || fill >= lv->hop)
        lg_ck_refuse(ck);
    lg_ck_state(ck, &lv->sumsq, sizeof lv->sumsq);
    lg_ck_state(ck, &lv->peak, sizeof lv->peak);
    lg_ck_state(ck, &lv->total_sumsq, sizeof lv->total_sumsq);
    lg_ck_state(ck, &lv->total_peak, sizeof lv->total_peak);
    lg_ck_state(ck, &lv->frames, sizeof lv->frames);
    lg_ck_state(ck, &lv->nonfinite, sizeof lv->nonfinite);
    if (lg_ck_restoring(ck))
        lv->fill = fill;
}
