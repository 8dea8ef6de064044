/* CRC-32C (Castagnoli) as ext4 uses it: raw update, no pre/post inversion. */
#ifndef OCIEXT4_CRC32C_H
#define OCIEXT4_CRC32C_H
#include <stddef.h>
#include <stdint.h>

uint32_t oe_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
