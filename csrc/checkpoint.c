/* Checkpoints of kernel states; see checkpoint.h. */
#include "checkpoint.h"

#include <stdint.h>
#include <string.h>

#define CK_LAYOUT 1u
#define CK_KIND 8
#define CK_HEADER 48
#define CK_ORDER 0x01020304u

/* Byte order and the sizes of the types kernels keep in their states. */
static uint32_t platform(void)
{
    return (uint32_t)(sizeof(int) | sizeof(long long) << 4 | sizeof(double) << 8 |
                      sizeof(float) << 12 | sizeof(size_t) << 16);
}

/* FNV-1a over 64-bit words in four independent lanes (then the tail bytes), folded into one
 * value: a checksum that keeps up with memcpy, where byte-wise FNV-1a would cost more than the
 * rest of a checkpoint. */
static uint64_t checksum(const unsigned char *p, size_t n)
{
    const uint64_t prime = 0x100000001b3ull;
    uint64_t lane[4] = {0xcbf29ce484222325ull, 0x84222325cbf29ce4ull, 0x9ce484222325cbf2ull,
                        0x2325cbf29ce48422ull};
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; k++) {
            uint64_t w;
            memcpy(&w, p + i + 8 * (size_t)k, 8);
            lane[k] = (lane[k] ^ w) * prime;
        }
    uint64_t h = lane[0];
    for (int k = 1; k < 4; k++)
        h = (h ^ lane[k]) * prime;
    for (; i < n; i++)
        h = (h ^ p[i]) * prime;
    return (h ^ (uint64_t)n) * prime;
}

unsigned long long lg_checksum(const void *p, size_t n)
{
    return p ? checksum(p, n) : 0;
}

static int take(lg_ck *ck, size_t n)
{
    if (ck->problem)
        return 0;
    if (ck->mode == LG_CK_CHECK || ck->mode == LG_CK_READ) {
        if (n > ck->len - ck->pos) {
            ck->problem = LG_ERR_MISMATCH; /* the payload is shorter than this state's */
            return 0;
        }
    }
    return 1;
}

void lg_ck_config(lg_ck *ck, const void *field, size_t n)
{
    if (!take(ck, n))
        return;
    if (ck->mode == LG_CK_WRITE)
        memcpy(ck->out + ck->pos, field, n);
    else if (ck->mode == LG_CK_CHECK && memcmp(ck->in + ck->pos, field, n) != 0)
        ck->problem = LG_ERR_MISMATCH;
    ck->pos += n;
}

/* Writes the field, or reads it back: when restoring, or in both load passes (`always`). */
static void move(lg_ck *ck, void *field, size_t n, int always)
{
    if (!take(ck, n))
        return;
    if (ck->mode == LG_CK_WRITE)
        memcpy(ck->out + ck->pos, field, n);
    else if (n && (ck->mode == LG_CK_READ || (always && ck->mode == LG_CK_CHECK)))
        memcpy(field, ck->in + ck->pos, n);
    ck->pos += n;
}

void lg_ck_state(lg_ck *ck, void *field, size_t n) { move(ck, field, n, 0); }

void lg_ck_value(lg_ck *ck, void *value, size_t n) { move(ck, value, n, 1); }

void lg_ck_refuse(lg_ck *ck)
{
    if (!ck->problem)
        ck->problem = LG_ERR_MISMATCH;
}

int lg_ck_restoring(const lg_ck *ck) { return ck->mode == LG_CK_READ && !ck->problem; }

static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t get64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static void name_of(const char *kind, unsigned char out[CK_KIND])
{
    memset(out, 0, CK_KIND);
    size_t n = strlen(kind);
    memcpy(out, kind, n < CK_KIND ? n : CK_KIND);
}

long long lg_ck_save(const char *kind, unsigned version, lg_ck_transfer transfer,
                     const void *state, void *buf, long long cap)
{
    if (!kind || !transfer || !state || cap < 0)
        return LG_ERR_ARGUMENT;
    /* Saving only reads the state: the transfer function takes it non-const for loading. */
    lg_ck size = {.mode = LG_CK_SIZE};
    transfer(&size, (void *)state);
    long long total = CK_HEADER + (long long)size.pos;
    if (!buf)
        return total;
    if (cap < total)
        return LG_ERR_CAPACITY;
    unsigned char *h = buf;
    lg_ck out = {.mode = LG_CK_WRITE, .out = h + CK_HEADER};
    transfer(&out, (void *)state);
    memcpy(h, "LGCK", 4);
    put32(h + 4, CK_LAYOUT);
    name_of(kind, h + 8);
    put32(h + 16, version);
    put32(h + 20, CK_ORDER);
    put32(h + 24, platform());
    put32(h + 28, 0);
    put64(h + 32, (uint64_t)out.pos);
    put64(h + 40, checksum(out.out, out.pos));
    return total;
}

int lg_ck_load(const char *kind, unsigned version, lg_ck_transfer transfer, void *state,
               const void *buf, long long n)
{
    if (!kind || !transfer || !state || !buf || n < 0)
        return LG_ERR_ARGUMENT;
    const unsigned char *h = buf;
    if (n < CK_HEADER || memcmp(h, "LGCK", 4) != 0)
        return LG_ERR_CORRUPT;
    uint64_t len = get64(h + 32);
    if (len != (uint64_t)(n - CK_HEADER) || get64(h + 40) != checksum(h + CK_HEADER, (size_t)len))
        return LG_ERR_CORRUPT;
    unsigned char name[CK_KIND];
    name_of(kind, name);
    if (get32(h + 4) != CK_LAYOUT || memcmp(h + 8, name, CK_KIND) != 0 ||
        get32(h + 16) != version || get32(h + 20) != CK_ORDER || get32(h + 24) != platform())
        return LG_ERR_MISMATCH;
    lg_ck check = {.mode = LG_CK_CHECK, .in = h + CK_HEADER, .len = (size_t)len};
    transfer(&check, state);
    if (check.problem)
        return check.problem;
    if (check.pos != check.len)
        return LG_ERR_MISMATCH; /* longer than this state's: made with other parameters */
    lg_ck in = {.mode = LG_CK_READ, .in = h + CK_HEADER, .len = (size_t)len};
    transfer(&in, state);
    return in.problem ? in.problem : LG_OK;
}
