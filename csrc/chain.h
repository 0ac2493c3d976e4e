/* A pipeline's per-block work in one C call: the stream's block is mixed down once, then every
 * stage's kernel is fed it through a uniform step, writing into buffers its Python stage made.
 * Python is entered once per block instead of once per stage, and only for the stages whose
 * step wrote something. */
#ifndef LEGATO_CHAIN_H
#define LEGATO_CHAIN_H

#include <stdint.h>

#include "status.h"

/* cffi:begin */
/* One stage's kernel call: run(step, in, n) feeds n frames (mono when mono is 1, else
 * interleaved with the stream's channels) to state and writes at most capacity items into each
 * of out[]; it returns the count written or a negative lg_status, and a call that fails
 * consumes nothing (LG_ERR_CAPACITY: the caller grows out[] and calls again). frames counts
 * what successful calls consumed. */
typedef struct lg_step {
    int (*run)(struct lg_step *step, const float *in, int n);
    void *state;
    void *out[4];
    int capacity;
    int mono;
    int64_t frames;
} lg_step;

/* Runs one step on its input (what lg_chain_run does for each): its result; frames counted
 * when it succeeds. */
int lg_step_run(lg_step *step, const float *in, int n);

/* Runs steps[first..count) on n frames of `channels` interleaved channels; mono steps get the
 * channel mean (lg_downmix, computed once into mix, room for n floats, when channels > 1).
 * counts[i] gets step i's result. Returns the index of the first step that failed (its status
 * in counts[i], the steps after it not run), count when all ran, or LG_ERR_ARGUMENT. */
int lg_chain_run(lg_step *const *steps, int count, int first, const float *frames, int n,
                 int channels, float *mix, int *counts);
/* cffi:end */

#endif
