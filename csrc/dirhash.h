/* The htree name hash (half MD4, the ext4 default) and the xattr entry hash. */
#ifndef OCIEXT4_DIRHASH_H
#define OCIEXT4_DIRHASH_H
#include <stddef.h>
#include <stdint.h>

/* seed: the superblock's s_hash_seed as four little-endian words.  The
 * characters are taken as signed, matching the signed_directory_hash flag
 * that mke2fs sets on x86. */
void oe_dx_hash(const uint32_t seed[4], const unsigned char *name, size_t len,
                uint32_t *hash, uint32_t *minor);

uint32_t oe_xattr_entry_hash(const unsigned char *name, size_t name_len,
                             const unsigned char *value, size_t value_len);

#endif
