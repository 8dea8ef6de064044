/* One directory's entries packed for the commit (see packdir.h). */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include "packdir.h"

_Static_assert(offsetof(oe_inode, xattr_off) == OE_PLAIN_RECORD,
               "a plain record is oe_inode up to xattr_off");

int64_t oe_pack_entries(oe_inode *inodes, uint64_t n_inodes, oe_dirent *dirents,
                        uint64_t n_dirents, uint32_t at, uint32_t parent, uint64_t dirent_at,
                        uint64_t name_off, const uint8_t *records, uint64_t records_len,
                        const uint32_t *name_len, int64_t *number, uint8_t *fresh, uint32_t n)
{
    uint64_t used = 0;
    uint32_t i;

    if (dirent_at > n_dirents || n > n_dirents - dirent_at) {
        errno = ERANGE;
        return -1;
    }
    for (i = 0; i < n; i++) {
        int64_t want = number[i];
        uint64_t ci = at;

        if (name_len[i] == 0 || name_len[i] > 255) {
            errno = EINVAL;
            return -1;
        }
        fresh[i] = 0;
        if (want == OE_PACK_RECORD) {
            oe_inode *in;

            if (at >= n_inodes || records_len - used < OE_PLAIN_RECORD) {
                errno = ERANGE;
                return -1;
            }
            in = &inodes[at];
            memcpy(in, records + used, OE_PLAIN_RECORD);
            if ((in->mode & 0170000) != 0100000 || in->nlink != 1) {
                errno = EINVAL;
                return -1;
            }
            in->xattr_off = 0;
            in->ref_len = 0;
            in->parent = parent;
            in->min_blocks = 0;
            in->reserved = 0;
            used += OE_PLAIN_RECORD;
            at++;
        } else if (want == OE_PACK_NEXT || want == (int64_t)at) {
            fresh[i] = 1;
            at++;
        } else if (want < 0 || (uint64_t)want >= n_inodes) {
            errno = ERANGE;
            return -1;
        } else {
            ci = (uint64_t)want;
        }
        if (at > n_inodes) {
            errno = ERANGE;
            return -1;
        }
        number[i] = (int64_t)ci;
        dirents[dirent_at + i].name_off = name_off;
        dirents[dirent_at + i].child = (uint32_t)ci;
        dirents[dirent_at + i].name_len = name_len[i];
        name_off += name_len[i];
    }
    if (used != records_len) {
        errno = EINVAL;
        return -1;
    }
    return at;
}
