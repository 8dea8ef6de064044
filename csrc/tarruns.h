/* Runs of plain files in a batch of the tar reader's entries.
 *
 * Most members of an image are regular files listed together under one
 * directory (a package's files), each with a plain name, no atime or
 * xattrs and an mtime ext4 stores as it is.  The policy side keeps such a
 * file as a plain record (ociext4/tree.py: oe_inode's first
 * OE_PLAIN_RECORD bytes) and puts a directory's run of them into its tree
 * in one step.  Finding the runs and making their records is per-entry
 * mechanics: here, a batch a call, not a member at a time in Python. */
#ifndef OCIEXT4_TARRUNS_H
#define OCIEXT4_TARRUNS_H
#include <stdint.h>
#include "tar.h"

/* One segment of a batch, in order: a run, or members to apply one by one. */
typedef struct {
    uint32_t run;        /* 1: plain files of one directory; 0: any members */
    uint32_t first;      /* the segment's first entry in the batch */
    uint32_t count;      /* its entries */
    uint32_t dir_len;    /* a run's directory (no leading or trailing '/') */
    uint64_t dir_off;    /* in the batch's strings */
    uint64_t names_off;  /* a run's basenames in `names`, a NUL between two */
    uint64_t names_len;
    uint64_t recs_off;   /* a run's plain records in `recs`, one after another */
} oe_tar_seg;

/* Splits the n entries of a batch (their strings: str, str_len bytes) into
 * segments.  A run member is a regular file whose flags are exactly
 * OE_TAR_PLAIN_NAME, with no xattrs, uid and gid below 2^32, mtime seconds
 * in [0, plain_sec_end), a directory (it is not at the root) and a
 * basename that does not start with `marker` (marker_len bytes: the
 * policy side's whiteout prefix); consecutive ones in the same directory
 * make one run.  Writes at most segs_cap segments, names_cap
 * bytes of names and recs_cap of records.  Returns the number of segments,
 * or -1 with errno set: ERANGE for anything outside the arrays or the
 * strings (n segments, str_len bytes of names and n * OE_PLAIN_RECORD of
 * records always suffice), EINVAL for a name flagged plain that is not
 * (oe_tar_plain_name). */
int64_t oe_tar_runs(const oe_tar_entry *ents, uint32_t n, const uint8_t *str, uint64_t str_len,
                    int64_t plain_sec_end, const uint8_t *marker, uint32_t marker_len,
                    oe_tar_seg *segs, uint32_t segs_cap,
                    uint8_t *names, uint64_t names_cap, uint8_t *recs, uint64_t recs_cap);

#endif
