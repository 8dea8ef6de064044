/* What the writer tells verity.c about the bytes it puts in the image. */
#ifndef OCIEXT4_VERITY_HOOKS_H
#define OCIEXT4_VERITY_HOOKS_H
#include <stdint.h>

/* oe_pwrite_all's largest write with verity on: hashed right after, while
 * it is still in the cache. */
#define OE_VERITY_PIECE (1u << 20)

struct oe_writer;
struct oe_verity;

/* `len` bytes of `data` went to the image at byte `off`. */
void oe_verity_wrote(struct oe_writer *w, const uint8_t *data, uint64_t len, uint64_t off);
/* Blocks filled without passing through memory (copy_file_range). */
void oe_verity_unseen(struct oe_writer *w, uint64_t pblk, uint64_t count);
/* Blocks punched out of the file: zeros again. */
void oe_verity_zeroed(struct oe_writer *w, uint64_t pblk, uint64_t count);
void oe_verity_free(struct oe_verity *v);

#endif
