/* The commit: everything that can be laid out only once the tree is final.
 *
 * Pass A walks the records in order and emits, right after the file data,
 * the journal's extents and then each inode's own blocks (directory blocks,
 * slow symlink targets, xattr blocks, extent tree blocks), keeping what its
 * inode will say in an oe_ino_out (for the few inodes that need one).  Then the layout is fixed, the bitmaps
 * and inode tables are placed after everything else, and the inodes,
 * bitmaps, descriptors and superblocks are written.  One file a structure:
 * extents.c, dirs.c, xattrs.c, inodes.c, journal.c, layout.c, groups.c,
 * super.c. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include "commit.h"
#include "crc32c.h"

#define MIN_JOURNAL_BLOCKS 1024u      /* as mke2fs (JBD2_MIN_JOURNAL_BLOCKS) */
#define MAX_JOURNAL_BLOCKS (1u << 20)

static int start(oe_ctx *c, oe_writer *w, const oe_commit_params *params,
                 const oe_inode *inodes, uint32_t n_inodes,
                 const oe_dirent *dirents, uint32_t n_dirents,
                 const uint8_t *blob, uint64_t blob_len)
{
    memset(c, 0, sizeof *c);
    c->w = w;
    c->p = params;
    c->inodes = inodes;
    c->n_inodes = n_inodes;
    c->dirents = dirents;
    c->n_dirents = n_dirents;
    c->blob = blob;
    c->blob_len = blob_len;
    if (w->cur >= 0)
        return oe_fail(w, "a file is still open");
    if (n_inodes == 0 || (inodes[0].mode & S_IFMT) != S_IFDIR)
        return oe_fail(w, "record 0 must be the root directory");
    if (params->journal_blocks &&
        (params->journal_blocks < MIN_JOURNAL_BLOCKS || params->journal_blocks > MAX_JOURNAL_BLOCKS))
        return oe_fail(w, "journal of %u blocks out of range", params->journal_blocks);
    if (params->timestamp < 0 || params->timestamp > OE_MAX_TIME)
        return oe_fail(w, "timestamp %lld is outside ext4's range for the superblock and "
                       "journal times (0 to %lld, 1970 to 2446)",
                       (long long)params->timestamp, (long long)OE_MAX_TIME);
    c->csum_seed = oe_crc32c(0xFFFFFFFFu, params->uuid, sizeof params->uuid);
    for (int i = 0; i < 4; i++)
        c->hash_seed[i] = get32(params->hash_seed + 4 * i);
    c->max_ino = (uint64_t)n_inodes + 9;
    if (c->max_ino > UINT32_MAX - 16)
        return oe_fail(w, "too many inodes");
    c->out_slot = calloc(c->max_ino + 1, sizeof *c->out_slot);
    c->referenced = calloc(w->n_files + 1, 1);
    if (!c->out_slot || !c->referenced)
        return oe_fail(w, "out of memory");
    return 0;
}

static void finish(oe_ctx *c)
{
    c->w->meta_mode = 0;
    free(c->out_slot);
    free(c->outs);
    free(c->ibodies);
    free(c->tmp);
    free(c->referenced);
    free(c->dirs);
}

/* Pass A, the layout, and the placing of the group metadata. */
static int lay_out(oe_ctx *c, oe_layout *L, uint64_t *journal_block)
{
    oe_writer *w = c->w;
    uint64_t min_inodes = c->p->min_inodes > c->max_ino ? c->p->min_inodes : c->max_ino;

    w->meta_mode = 1;
    if (c->p->journal_blocks && oe_build_journal(c, journal_block))
        return -1;
    for (uint32_t k = 0; k < c->n_inodes; k++)
        if (oe_build_inode(c, k))
            return -1;
    if (oe_plan_layout(c, min_inodes, L) || oe_place_group_metadata(c, L) || oe_flush(w))
        return -1;
    w->meta_mode = 0;
    return 0;
}

int oe_commit(oe_writer *w, const oe_commit_params *params,
              const oe_inode *inodes, uint32_t n_inodes,
              const oe_dirent *dirents, uint32_t n_dirents,
              const uint8_t *blob, uint64_t blob_len,
              oe_commit_result *result)
{
    oe_ctx c;
    oe_layout L = {0};
    uint64_t journal_block = 0, free_blocks = 0, free_inodes = 0, data_end = w->next;
    uint8_t *gdt = NULL;
    int rc = -1;

    if (start(&c, w, params, inodes, n_inodes, dirents, n_dirents, blob, blob_len) ||
        lay_out(&c, &L, &journal_block))
        goto out;
    if (params->journal_blocks && oe_write_journal_super(&c, journal_block))
        goto out;
    c.dirs = calloc(L.groups, sizeof *c.dirs);
    gdt = calloc(L.gdt_blocks, OE_BLOCK_SIZE);
    if (!c.dirs || !gdt) {
        oe_fail(w, "out of memory");
        goto out;
    }
    if (oe_write_inode_tables(&c, &L) ||
        oe_write_groups(&c, &L, gdt, &free_blocks, &free_inodes) ||
        oe_write_supers(&c, &L, gdt, free_blocks, free_inodes))
        goto out;
    /* A block device has its own size: only a file is cut to the image's. */
    if (!w->out_is_device && ftruncate(w->fd, (off_t)(L.blocks * OE_BLOCK_SIZE))) {
        oe_fail(w, "sizing the image: %s", strerror(errno));
        goto out;
    }
    result->blocks = L.blocks;
    result->free_blocks = free_blocks;
    result->inodes = L.groups * L.ipg;
    result->free_inodes = free_inodes;
    result->groups = L.groups;
    result->data_blocks = data_end;
    result->metadata_blocks = L.blocks - free_blocks;
    rc = 0;
out:
    finish(&c);
    oe_free_layout(&L);
    free(gdt);
    return rc;
}
