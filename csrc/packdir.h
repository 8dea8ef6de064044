/* Packing one directory's entries for the commit: the records of its plain
 * files, given whole by the policy side (ociext4/tree.py keeps a plain file
 * as oe_inode's first fields), and its listing.  The numbering is the
 * policy side's (ociext4/ext4/pack.py); this is its per-entry mechanics, a
 * directory a call, where per entry in Python it was most of the packing. */
#ifndef OCIEXT4_PACKDIR_H
#define OCIEXT4_PACKDIR_H
#include <stdint.h>
#include "writer.h"

/* A plain record's bytes: oe_inode from `mode` to `ref`. */
enum { OE_PLAIN_RECORD = 72 };
/* oe_pack_entries' number[] on the way in: a plain record (its bytes are
 * the next in `records`), or an entry numbered here that the policy side
 * packs itself (a plain Inode). */
enum { OE_PACK_RECORD = -1, OE_PACK_NEXT = -2 };

/* The n entries of the directory numbered `parent`, in name order.  Entry i
 * takes the number number[i], or, for OE_PACK_RECORD and OE_PACK_NEXT, the
 * next free one, `at` on the way in; so does an entry whose given number is
 * that next one (its record comes here, not where it was numbered).  A
 * plain record is written at its number, with `parent`; each entry's dirent
 * goes to dirents[dirent_at + i], its name at name_off on in the blob
 * (name_len[i] bytes, the names one after another).  On the way out,
 * number[i] is the entry's number and fresh[i] is 1 where the policy side
 * must pack the record (numbered here, not a plain record), else 0.
 * Returns the next free number, or -1 with errno set: EINVAL for a record
 * that is not plain or a name of 0 or over 255 bytes, ERANGE for anything
 * outside the arrays. */
int64_t oe_pack_entries(oe_inode *inodes, uint64_t n_inodes, oe_dirent *dirents,
                        uint64_t n_dirents, uint32_t at, uint32_t parent, uint64_t dirent_at,
                        uint64_t name_off, const uint8_t *records, uint64_t records_len,
                        const uint32_t *name_len, int64_t *number, uint8_t *fresh, uint32_t n);

#endif
