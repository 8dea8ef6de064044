/* The digest an image is named by: its UUID, its directory hash seed and its
 * verity salt come from it, so equal trees give equal images.  It covers each
 * packed inode record in the layout the digest has always read (the 128-byte
 * record from before oe_inode was cut to 96 bytes), then the dirents and the
 * blob.  Computed here over the packed array in one call: per record in
 * Python it was a second struct packing beside oe_inode's. */
#ifndef OCIEXT4_CONTENTID_H
#define OCIEXT4_CONTENTID_H
#include <stdint.h>
#include "hash.h"
#include "writer.h"

/* Feeds `count` records into `h` as the legacy layout lays them out.
 * Returns 0, or -1 when a record cannot be expressed in it (a directory's
 * first dirent past 2^32), which a tree of fewer than 2^32 names never
 * has. */
int oe_hash_inodes(oe_hash *h, const oe_inode *inodes, uint64_t count);

#endif
