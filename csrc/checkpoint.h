/* Checkpoints of a kernel's streaming state: what a session needs to continue on another
 * process exactly where it stopped (the same outputs, bit for bit, as if it never moved).
 *
 * A checkpoint is a 48-byte header (magic "LGCK", the format's layout, the kernel's name and
 * checkpoint version, the platform's byte order and type sizes, the payload's length and its
 * 64-bit checksum) and a payload written by the kernel's transfer function. That one function
 * lists, in order, the fields that identify the configuration (lg_ck_config: written, then
 * compared on load) and those that carry the stream (lg_ck_state: written, then restored), so
 * saving and loading cannot drift apart. Loading checks the header and checksum, then runs the
 * transfer function once to compare every configuration field and walk every length without
 * touching the state, and only then once more to restore it: a checkpoint is loaded whole or
 * not at all. */
#ifndef LEGATO_CHECKPOINT_H
#define LEGATO_CHECKPOINT_H

#include <stddef.h>

#include "status.h"

/* cffi:begin */
/* The 64-bit checksum checkpoints carry, of n bytes: as fast as copying them. */
unsigned long long lg_checksum(const void *p, size_t n);
/* cffi:end */

typedef enum { LG_CK_SIZE, LG_CK_WRITE, LG_CK_CHECK, LG_CK_READ } lg_ck_mode;

typedef struct {
    lg_ck_mode mode;
    unsigned char *out;      /* LG_CK_WRITE */
    const unsigned char *in; /* LG_CK_CHECK, LG_CK_READ */
    size_t len;              /* payload bytes available to read */
    size_t pos;              /* payload bytes written or read so far */
    int problem;             /* 0, or the LG_ERR_* that stops the load */
} lg_ck;

/* A field of the configuration: saved, and on load required to equal the state's own. */
void lg_ck_config(lg_ck *ck, const void *field, size_t n);
/* A field of the stream: saved, and restored on load. */
void lg_ck_state(lg_ck *ck, void *field, size_t n);
/* A value the transfer function needs to know the rest (a count, a range): saved from *value,
 * and on load read into *value (in both passes) for the function to check and use. */
void lg_ck_value(lg_ck *ck, void *value, size_t n);
/* Marks the checkpoint unusable (a value out of range): the load fails with LG_ERR_MISMATCH. */
void lg_ck_refuse(lg_ck *ck);
/* Whether the state itself is being written to (the second pass of a load). */
int lg_ck_restoring(const lg_ck *ck);

typedef void (*lg_ck_transfer)(lg_ck *ck, void *state);

/* A checkpoint of state into buf (cap bytes): its size; with buf NULL, only the size; or
 * LG_ERR_CAPACITY when cap is too small. kind: the kernel's name (at most 8 characters). */
long long lg_ck_save(const char *kind, unsigned version, lg_ck_transfer transfer,
                     const void *state, void *buf, long long cap);
/* Restores a checkpoint made by lg_ck_save with the same kind and version: LG_OK, or
 * LG_ERR_CORRUPT / LG_ERR_MISMATCH with the state unchanged. */
int lg_ck_load(const char *kind, unsigned version, lg_ck_transfer transfer, void *state,
               const void *buf, long long n);

/* Defines a kernel's public checkpoint functions, save_fn(const T *, void *, long long) and
 * load_fn(T *, const void *, long long) (see status.h: _save and _load), from its transfer
 * function, under its name and checkpoint version. */
#define LG_CK_FUNCTIONS(save_fn, load_fn, T, kind, version, transfer)                         \
    long long save_fn(const T *s, void *buf, long long cap)                                   \
    {                                                                                          \
        return s ? lg_ck_save(kind, version, transfer, s, buf, cap) : LG_ERR_ARGUMENT;        \
    }                                                                                          \
    int load_fn(T *s, const void *buf, long long n)                                            \
    {                                                                                          \
        return s ? lg_ck_load(kind, version, transfer, s, buf, n) : LG_ERR_ARGUMENT;          \
    }

#endif
