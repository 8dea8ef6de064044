/* The content digest over packed inode records (see contentid.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE     /* S_IFMT and the S_IF* kinds, outside plain C99 */
#endif
#include <sys/stat.h>
#include "contentid.h"
#include "internal.h"

#define RECORD 128  /* bytes hashed for each inode record */
#define BATCH 64    /* records hashed per update: 8 KiB */

/* One record's legacy layout into `out`, given the dirents the records
 * before it kept room for (what a record without a listing says is its
 * first). */
static int digested_record(const oe_inode *in, uint64_t dirents_before, uint8_t *out)
{
    uint32_t kind = in->mode & S_IFMT;
    uint64_t file = UINT64_MAX;         /* -1: no data */
    uint64_t rdev = 0, extra_off = 0, first = dirents_before;
    uint32_t extra_len = 0, count = 0;

    switch (kind) {
    case S_IFREG:
        file = in->ref;                 /* OE_NO_FILE is -1 too */
        break;
    case S_IFDIR:
        first = in->ref;
        count = in->ref_len;
        break;
    case S_IFLNK:
        extra_off = in->ref;
        extra_len = in->ref_len;
        break;
    default:                            /* devices, FIFOs, sockets */
        rdev = in->ref;
        break;
    }
    if (first > UINT32_MAX)
        return -1;
    put32(out + 0, in->mode);
    put32(out + 4, in->uid);
    put32(out + 8, in->gid);
    put32(out + 12, in->nlink);
    put64(out + 16, (uint64_t)in->atime_sec);
    put64(out + 24, (uint64_t)in->ctime_sec);
    put64(out + 32, (uint64_t)in->mtime_sec);
    put64(out + 40, (uint64_t)in->mtime_sec);   /* the creation time */
    put32(out + 48, in->atime_nsec);
    put32(out + 52, in->ctime_nsec);
    put32(out + 56, in->mtime_nsec);
    put32(out + 60, in->mtime_nsec);
    put64(out + 64, in->size);
    put64(out + 72, file);
    put32(out + 80, (uint32_t)(rdev >> 32));
    put32(out + 84, (uint32_t)rdev);
    put64(out + 88, extra_off);
    put32(out + 96, extra_len);
    put32(out + 100, in->xattr_len);
    put64(out + 104, in->xattr_off);
    put32(out + 112, (uint32_t)first);
    put32(out + 116, count);
    put32(out + 120, in->parent);
    put32(out + 124, in->min_blocks);
    return 0;
}

int oe_hash_inodes(oe_hash *h, const oe_inode *inodes, uint64_t count)
{
    uint8_t buf[BATCH * RECORD];
    uint64_t dirents = 0, i;
    size_t held = 0;

    for (i = 0; i < count; i++) {
        const oe_inode *in = &inodes[i];

        if (digested_record(in, dirents, buf + held * RECORD) != 0)
            return -1;
        /* A directory's listing is kept room for at its own record, so
         * the records after it start past its dirents. */
        if ((in->mode & S_IFMT) == S_IFDIR)
            dirents = in->ref + in->ref_len;
        if (++held == BATCH) {
            oe_hash_update(h, buf, sizeof buf);
            held = 0;
        }
    }
    oe_hash_update(h, buf, held * RECORD);
    return 0;
}
