/* The commit's shared state, between the files that build one structure
 * each: extents.c, dirs.c, xattrs.c, inodes.c, journal.c, layout.c,
 * groups.c and super.c, driven by commit.c. */
#ifndef OCIEXT4_COMMIT_H
#define OCIEXT4_COMMIT_H
#include "internal.h"

/* In-inode xattrs: the area after the large inode's fields. */
#define OE_IBODY_START ((uint32_t)sizeof(struct ext4_inode))
#define OE_IBODY_SIZE (OE_INODE_SIZE - OE_IBODY_START)
#define OE_EXTRA_ISIZE (OE_IBODY_START - EXT4_GOOD_OLD_INODE_SIZE)
#define OE_I_BLOCK_BYTES EXT4_FIELD_SIZE(ext4_inode, i_block)

/* ext4's last second in an inode: a signed 32-bit low word plus two epoch
 * bits (2446-05-10). */
#define OE_MAX_TIME ((3ll << 32) + INT32_MAX)

/* What an inode will say about the blocks built for it in pass A.  Kept
 * only for the inodes that own blocks or xattrs (directories, slow
 * symlinks, files of more than four extents): for the rest, nearly all of
 * them, it is rebuilt from the record when the inode table is written, so
 * a million files cost 4 bytes each here instead of 96. */
typedef struct {
    uint8_t iblock[OE_I_BLOCK_BYTES];
    uint32_t flags;
    uint64_t acl;        /* xattr block, 0 if none */
    uint64_t blocks;     /* file-system blocks charged to the inode */
    uint64_t size;
    uint32_t ibody;      /* 1 + index into the in-inode xattr areas, 0 if none */
} oe_ino_out;

/* Where the metadata of every group went. */
typedef struct {
    uint64_t blocks, groups;
    uint32_t ipg, itb, gdt_blocks; /* inodes and inode-table blocks per group */
    uint64_t *block_bitmap, *inode_bitmap, *inode_table; /* block numbers, per group */
} oe_layout;

typedef struct {
    oe_writer *w;
    const oe_commit_params *p;
    const oe_inode *inodes;
    uint32_t n_inodes;
    uint64_t max_ino;
    const oe_dirent *dirents;
    uint32_t n_dirents;
    const uint8_t *blob;
    uint64_t blob_len;
    uint32_t csum_seed;   /* crc32c of the uuid: every metadata checksum starts here */
    uint32_t hash_seed[4];
    uint32_t *out_slot;   /* by inode number: 1 + index into outs, 0 if rebuilt */
    oe_ino_out *outs;
    uint64_t n_outs, cap_outs;
    uint8_t *referenced;  /* per file handle: some inode holds its data */
    uint8_t *ibodies;
    uint64_t n_ibodies, cap_ibodies;
    oe_extent *tmp;       /* scratch extent list for one inode */
    uint64_t n_tmp, cap_tmp;
    uint32_t *dirs;       /* directories per group */
} oe_ctx;

/* The fields of an oe_inode that only one kind of inode has. */
static inline int64_t oe_rec_file(const oe_inode *in)
{
    return in->ref > (uint64_t)INT64_MAX ? -1 : (int64_t)in->ref;
}
static inline uint64_t oe_rec_dirent_first(const oe_inode *in) { return in->ref; }
static inline uint32_t oe_rec_dirent_count(const oe_inode *in) { return in->ref_len; }
static inline uint64_t oe_rec_target_off(const oe_inode *in) { return in->ref; }
static inline uint32_t oe_rec_target_len(const oe_inode *in) { return in->ref_len; }
static inline uint32_t oe_rec_rdev_major(const oe_inode *in) { return (uint32_t)(in->ref >> 32); }
static inline uint32_t oe_rec_rdev_minor(const oe_inode *in) { return (uint32_t)in->ref; }

/* Record k of the commit's inode array is inode rec_ino(k). */
static inline uint32_t oe_rec_ino(uint32_t k) { return k == 0 ? EXT4_ROOT_INO : 10 + k; }
/* The record of an inode number, or NULL for the reserved ones. */
static inline const oe_inode *oe_ino_rec(const oe_ctx *c, uint64_t ino)
{
    if (ino == EXT4_ROOT_INO)
        return &c->inodes[0];
    return ino >= OE_FIRST_INO ? &c->inodes[ino - 10] : NULL;
}
static inline uint64_t oe_div_up(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

/* crc32c(uuid seed, inode number, generation 0): where the checksums of an
 * inode and of every block it owns start. */
uint32_t oe_ino_seed(const oe_ctx *c, uint32_t ino);

/* extents.c */
void oe_put_empty_extent_root(uint8_t *iblock);
int oe_build_extent_tree(oe_ctx *c, uint32_t ino, const oe_extent *ex, uint64_t n, oe_ino_out *o);
int oe_emit_owned(oe_ctx *c, uint32_t lblk, uint8_t **b);

/* dirs.c */
int oe_build_dir(oe_ctx *c, uint32_t k, oe_ino_out *o);

/* xattrs.c */
int oe_build_xattrs(oe_ctx *c, uint32_t k, oe_ino_out *o);

/* inodes.c: pass A for one record, then the inode tables.  oe_keep_out
 * stores what inode `ino` will say (its out_slot names it). */
int oe_keep_out(oe_ctx *c, uint32_t ino, const oe_ino_out *o);
int oe_build_inode(oe_ctx *c, uint32_t k);
int oe_write_inode_tables(oe_ctx *c, const oe_layout *L);

/* journal.c */
int oe_build_journal(oe_ctx *c, uint64_t *first_block);
int oe_write_journal_super(oe_ctx *c, uint64_t block);

/* layout.c */
int oe_plan_layout(oe_ctx *c, uint64_t min_inodes, oe_layout *L);
int oe_place_group_metadata(oe_ctx *c, oe_layout *L);
void oe_free_layout(oe_layout *L);

/* groups.c: bitmaps and descriptors; returns the totals for the superblock. */
int oe_write_groups(oe_ctx *c, const oe_layout *L, uint8_t *gdt,
                    uint64_t *free_blocks, uint64_t *free_inodes);

/* super.c */
int oe_write_supers(oe_ctx *c, const oe_layout *L, const uint8_t *gdt,
                    uint64_t free_blocks, uint64_t free_inodes);

#endif
