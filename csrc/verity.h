/* The dm-verity tree's lowest level, hashed as the image is written: the
 * cffi boundary (ociext4/ext4/writer.py).  The levels above it and their
 * layout in the file are ociext4/ext4/verity.py's. */
#ifndef OCIEXT4_VERITY_H
#define OCIEXT4_VERITY_H
#include <stdint.h>
#include "writer.h"

/* From now on, hashes every 4 KiB block of the image as it is written:
 * SHA-256(salt || block), dm-verity's format 1.  `salt_known` 0: the salt
 * comes only at the end (mkfs derives it from the content), so blocks are
 * only noted as written and read back then.  Before the first file only;
 * 0, or -1 with oe_error() set. */
int oe_verity_begin(oe_writer *w, int salt_known, const uint8_t *salt, uint32_t salt_len);

/* The hashes of blocks [first, first + count), 32 bytes each, into `out`,
 * for `salt`: a block never written is zeros and gets the zero block's hash;
 * one hashed with this salt as it was written gets that hash; any other
 * (written in part, copied inside the kernel, or hashed with another salt)
 * is read back from the image.  It changes nothing in the writer, so
 * threads may call it at once on different ranges.  0, or an errno. */
int oe_verity_leaves(const oe_writer *w, const uint8_t *salt, uint32_t salt_len,
                     uint64_t first, uint64_t count, uint8_t *out);

/* How many of blocks [first, first + count) oe_verity_leaves would read
 * back for `salt` (so tests and --stats can tell the two paths apart). */
uint64_t oe_verity_to_read(const oe_writer *w, const uint8_t *salt, uint32_t salt_len,
                           uint64_t first, uint64_t count);

/* Writes `len` bytes at byte `off` of the image through the one path every
 * byte of it takes (so through the hashing above), as the commit's
 * metadata writes do: for tests.  0, or -1 with oe_error() set. */
int oe_write_at(oe_writer *w, const uint8_t *data, uint64_t len, uint64_t off);

/* SHA-256 of `len` bytes with one implementation (0 the fastest this CPU
 * has, 1 portable C, 2 x86 SHA extensions) into out[32], for tests and
 * benchmarks; -1 when this CPU lacks that implementation. */
int oe_sha256_digest(int impl, const uint8_t *data, uint64_t len, uint8_t *out);
/* The two digests of prefix || a and prefix || b (`len` bytes each), hashed
 * in step as the writer hashes two blocks at once. */
int oe_sha256_digest_pair(int impl, const uint8_t *prefix, uint64_t prefix_len,
                          const uint8_t *a, const uint8_t *b, uint64_t len,
                          uint8_t *out_a, uint8_t *out_b);

#endif
