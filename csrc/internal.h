/* State and helpers shared by the writer's translation units. */
#ifndef OCIEXT4_INTERNAL_H
#define OCIEXT4_INTERNAL_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "ext4_format.h"
#include "writer.h"

/* The geometry this writer always uses (mke2fs's defaults for a file
 * system of this kind). */
#define OE_BLOCK_SIZE 4096u
#define OE_LOG_BLOCK 2u            /* 1024 << 2 */
#define OE_BLOCKS_PER_GROUP 32768u /* one block of bitmap */
#define OE_INODE_SIZE 256u
#define OE_DESC_SIZE ((uint32_t)EXT4_MIN_DESC_SIZE_64BIT)
#define OE_FIRST_INO ((uint32_t)EXT4_GOOD_OLD_FIRST_INO)
#define OE_MAX_EXTENT_LEN EXT_INIT_MAX_LEN
#define OE_BUF_BLOCKS 512u         /* 2 MiB of sequential output: held all the unpack long */
#define OE_DIRECT_MIN (64u << 10)  /* shorter pieces are gathered in the buffer */

typedef struct {
    uint32_t lblk;
    uint32_t len;
    uint64_t pblk;
} oe_extent;

/* One a file of data, so kept to 16 bytes; its blocks are the sum of its
 * extents' lengths.  Nearly every file is one extent from its first block:
 * that one is kept here (`one`), not in oe_writer.ext, which saves 16 bytes
 * a file (16 MB at a million files, during the whole unpack). */
typedef struct {
    uint64_t at;             /* `one`: the extent's pblk; else its first extent in oe_writer.ext */
    uint32_t count;          /* `one`: the extent's length in blocks; else how many extents */
    uint8_t discarded;
    uint8_t open;
    uint8_t one;
} oe_file;

typedef struct {
    uint64_t pblk;
    uint64_t len;
} oe_run;

struct oe_writer {
    int fd;
    uint64_t out_dev;         /* st_dev of the image, for in-kernel copies */
    int out_is_device;        /* a block device: it has its own size */
    char err[512];
    int failed;               /* a data call failed: every later one reports it */
    int err_no;               /* errno of the error in err, or 0 */
    uint64_t max_blocks;
    uint32_t gdt_reserve;     /* GDT blocks kept free in every backup group */
    uint64_t next;            /* next physical block to hand out */

    oe_extent *ext;
    uint64_t n_ext, cap_ext;
    oe_file *files;
    uint64_t n_files, cap_files;
    int64_t cur;              /* open file, -1 when none */
    uint64_t cur_pos;         /* logical byte position in the open file */

    uint8_t *buf;             /* covers [buf_pblk, buf_pblk + buf_blocks) */
    uint64_t buf_pblk;
    uint64_t buf_blocks;

    oe_run *runs;             /* metadata allocations, for the bitmaps */
    uint64_t n_runs, cap_runs;
    int meta_mode;            /* allocations go to runs, not to a file */

    struct oe_verity *verity; /* --verity's per-block hashes (verity.c), or NULL */
};

int oe_fail(oe_writer *w, const char *fmt, ...);
int oe_fail_errno(oe_writer *w, int errnum, const char *what);
int oe_grow(oe_writer *w, void **arr, uint64_t *cap, uint64_t need, size_t elem);
int oe_is_backup_group(uint64_t g);
uint64_t oe_reserved_end(const oe_writer *w, uint64_t group);
int oe_place(const oe_writer *w, uint64_t from, uint64_t want, int contiguous,
             uint64_t *pblk, uint64_t *got);
int oe_reserve_blocks(oe_writer *w, uint64_t want, int contiguous, uint64_t *pblk, uint64_t *got);
int oe_alloc_run(oe_writer *w, uint64_t want, int contiguous, uint64_t *pblk, uint64_t *got);
int oe_emit_block(oe_writer *w, uint64_t *pblk, uint8_t **block);
int oe_flush(oe_writer *w);
int oe_pwrite_all(oe_writer *w, const void *buf, uint64_t len, uint64_t off);
/* Appends to the list, merging with its last extent when that one is at or
 * after `first` (the owner's first extent) and the two are contiguous. */
int oe_extents_append(oe_extent **arr, uint64_t *n, uint64_t *cap, uint64_t first, oe_writer *w,
                      uint32_t lblk, uint64_t pblk, uint64_t len);

/* A file's extents and how many: oe_writer.ext's, or the one the record
 * holds itself, copied into `*tmp`. */
static inline const oe_extent *oe_file_extents(const oe_writer *w, const oe_file *f,
                                               oe_extent *tmp, uint32_t *count)
{
    if (f->one) {
        tmp->lblk = 0;
        tmp->len = f->count;
        tmp->pblk = f->at;
        *count = 1;
        return tmp;
    }
    *count = f->count;
    if (!f->count)
        return tmp;     /* nothing to read there, and w->ext may still be NULL */
    return w->ext + f->at;
}

static inline uint32_t oe_file_extent_count(const oe_file *f) { return f->one ? 1 : f->count; }

static inline void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }
static inline void putbe32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

#endif
