/* Status codes shared by every kernel.
 *
 * Conventions of the kernel interface, every name prefixed lg_<kernel>_:
 *   _new      returns the state, or NULL if a parameter is invalid (or memory ran out); all
 *             allocation happens here;
 *   _free     releases it (NULL is ignored);
 *   _reset    returns it to the state of a new one;
 *   _process  consumes a block of the stream;
 *   _finish   ends the stream, in kernels that hold output back (lookahead, latency): writes what
 *             is still held. After it, every call that consumes input or finishes returns
 *             LG_ERR_FINISHED until _reset;
 *   _save     writes a checkpoint of the streaming state (checkpoint.h); with a NULL buffer,
 *             returns its size;
 *   _load     restores a checkpoint into a state made with the same parameters, or changes
 *             nothing (LG_ERR_CORRUPT, LG_ERR_MISMATCH).
 * A function that writes or consumes items returns their count (>= 0) or a negative LG_ERR_*;
 * one that only succeeds or fails returns LG_OK or a negative LG_ERR_*. A call that fails
 * changes no state and consumes nothing. When several errors apply, LG_ERR_ARGUMENT is reported
 * before LG_ERR_FINISHED, and both before LG_ERR_CAPACITY. Python reads the codes as
 * lib.LG_OK, lib.LG_ERR_ARGUMENT, ... and a code's name as
 * ffi.string(ffi.cast("enum lg_status", code)). */
#ifndef LEGATO_STATUS_H
#define LEGATO_STATUS_H

/* cffi:begin */
enum lg_status {
    /* Success. */
    LG_OK = 0,
    /* A bad argument: a NULL state or a NULL buffer the call needs, a negative count, a value
     * out of its documented range. */
    LG_ERR_ARGUMENT = -1,
    /* An output buffer's capacity (cap) is smaller than what the call may write; the caller
     * retries with more room (the kernel's max_outputs, where it has one, gives the size). */
    LG_ERR_CAPACITY = -2,
    /* The stream has ended (lg_<kernel>_finish was called): only reset starts a new one. */
    LG_ERR_FINISHED = -3,
    /* A checkpoint that is cut short or altered: its length or checksum does not hold. */
    LG_ERR_CORRUPT = -4,
    /* A sound checkpoint that does not fit this state: another kernel, another version of its
     * checkpoint format, another platform, or other parameters. */
    LG_ERR_MISMATCH = -5,
};
/* cffi:end */

#endif
