/* The superblock and its backups, each followed by the group descriptors. */
#include "commit.h"
#include "crc32c.h"

#define SB_SET(s, field, v) EXT4_SET(ext4_super_block, s, field, v)

/* What mke2fs enables by default on Debian (ARCHITECTURE.md, "The ext4 it writes"). */
#define COMPAT (EXT4_FEATURE_COMPAT_EXT_ATTR | EXT4_FEATURE_COMPAT_DIR_INDEX)
#define INCOMPAT (EXT4_FEATURE_INCOMPAT_FILETYPE | EXT4_FEATURE_INCOMPAT_EXTENTS | \
                  EXT4_FEATURE_INCOMPAT_64BIT | EXT4_FEATURE_INCOMPAT_FLEX_BG)
#define RO_COMPAT (EXT4_FEATURE_RO_COMPAT_SPARSE_SUPER | EXT4_FEATURE_RO_COMPAT_LARGE_FILE | \
                   EXT4_FEATURE_RO_COMPAT_HUGE_FILE | EXT4_FEATURE_RO_COMPAT_DIR_NLINK | \
                   EXT4_FEATURE_RO_COMPAT_EXTRA_ISIZE | EXT4_FEATURE_RO_COMPAT_METADATA_CSUM)

static void fill_super(const oe_ctx *c, uint8_t *s, const oe_layout *L, uint64_t free_blocks,
                       uint64_t free_inodes, uint16_t group)
{
    const oe_commit_params *p = c->p;
    /* oe_commit checked it is in 0..OE_MAX_TIME; past 2106 the high bits go
     * to the *_hi bytes. */
    uint64_t t = (uint64_t)p->timestamp;

    memset(s, 0, sizeof(struct ext4_super_block));
    SB_SET(s, s_inodes_count, (uint32_t)(L->groups * L->ipg));
    SB_SET(s, s_blocks_count_lo, (uint32_t)L->blocks);
    SB_SET(s, s_free_blocks_count_lo, (uint32_t)free_blocks);
    SB_SET(s, s_free_inodes_count, (uint32_t)free_inodes);
    SB_SET(s, s_first_data_block, 0);
    SB_SET(s, s_log_block_size, OE_LOG_BLOCK);
    SB_SET(s, s_log_cluster_size, OE_LOG_BLOCK);
    SB_SET(s, s_blocks_per_group, OE_BLOCKS_PER_GROUP);
    SB_SET(s, s_clusters_per_group, OE_BLOCKS_PER_GROUP);
    SB_SET(s, s_inodes_per_group, L->ipg);
    SB_SET(s, s_wtime, (uint32_t)t);
    SB_SET(s, s_wtime_hi, t >> 32);
    SB_SET(s, s_max_mnt_count, EXT4_MAX_MNT_COUNT_NONE);
    SB_SET(s, s_magic, EXT4_SUPER_MAGIC);
    SB_SET(s, s_state, EXT4_VALID_FS);
    SB_SET(s, s_errors, EXT4_ERRORS_CONTINUE);
    SB_SET(s, s_lastcheck, (uint32_t)t);
    SB_SET(s, s_lastcheck_hi, t >> 32);
    SB_SET(s, s_creator_os, EXT4_OS_LINUX);
    SB_SET(s, s_rev_level, EXT4_DYNAMIC_REV);
    SB_SET(s, s_first_ino, OE_FIRST_INO);
    SB_SET(s, s_inode_size, OE_INODE_SIZE);
    SB_SET(s, s_block_group_nr, group);
    SB_SET(s, s_feature_compat, COMPAT | (p->journal_blocks ? EXT4_FEATURE_COMPAT_HAS_JOURNAL : 0));
    SB_SET(s, s_feature_incompat, INCOMPAT);
    SB_SET(s, s_feature_ro_compat, RO_COMPAT);
    memcpy(EXT4_PTR(ext4_super_block, s, s_uuid), p->uuid, 16);
    memcpy(EXT4_PTR(ext4_super_block, s, s_volume_name), p->label, 16);
    memcpy(EXT4_PTR(ext4_super_block, s, s_hash_seed), p->hash_seed, 16);
    SB_SET(s, s_def_hash_version, DX_HASH_HALF_MD4);
    SB_SET(s, s_desc_size, OE_DESC_SIZE);
    SB_SET(s, s_default_mount_opts, EXT4_DEFM_XATTR_USER | EXT4_DEFM_ACL);
    SB_SET(s, s_mkfs_time, (uint32_t)t);
    SB_SET(s, s_mkfs_time_hi, t >> 32);
    if (p->journal_blocks && c->out_slot[EXT4_JOURNAL_INO]) {
        const oe_ino_out *j = &c->outs[c->out_slot[EXT4_JOURNAL_INO] - 1];
        uint8_t *jnl = EXT4_PTR(ext4_super_block, s, s_jnl_blocks);
        SB_SET(s, s_journal_inum, EXT4_JOURNAL_INO);
        /* A copy of the journal inode's map, for e2fsck to rebuild it from. */
        SB_SET(s, s_jnl_backup_type, EXT3_JNL_BACKUP_BLOCKS);
        memcpy(jnl, j->iblock, OE_I_BLOCK_BYTES);
        put32(jnl + OE_I_BLOCK_BYTES, (uint32_t)(j->size >> 32));
        put32(jnl + OE_I_BLOCK_BYTES + 4, (uint32_t)j->size);
    }
    SB_SET(s, s_blocks_count_hi, (uint32_t)(L->blocks >> 32));
    SB_SET(s, s_free_blocks_count_hi, (uint32_t)(free_blocks >> 32));
    SB_SET(s, s_min_extra_isize, OE_EXTRA_ISIZE);
    SB_SET(s, s_want_extra_isize, OE_EXTRA_ISIZE);
    SB_SET(s, s_flags, EXT2_FLAGS_SIGNED_HASH);
    SB_SET(s, s_log_groups_per_flex, p->log_groups_per_flex);
    SB_SET(s, s_checksum_type, EXT4_CRC32C_CHKSUM);
    SB_SET(s, s_checksum, oe_crc32c(0xFFFFFFFFu, s, offsetof(struct ext4_super_block, s_checksum)));
}

int oe_write_supers(oe_ctx *c, const oe_layout *L, const uint8_t *gdt,
                    uint64_t free_blocks, uint64_t free_inodes)
{
    for (uint64_t g = 0; g < L->groups; g++) {
        uint8_t sb[sizeof(struct ext4_super_block)];
        uint64_t group_start = g * OE_BLOCKS_PER_GROUP * OE_BLOCK_SIZE;
        if (!oe_is_backup_group(g))
            continue;
        fill_super(c, sb, L, free_blocks, free_inodes, (uint16_t)g);
        /* Group 0's copy sits 1024 bytes in, the backups at their group's start. */
        if (oe_pwrite_all(c->w, sb, sizeof sb, g ? group_start : EXT4_SUPERBLOCK_OFFSET) ||
            oe_pwrite_all(c->w, gdt, (uint64_t)L->gdt_blocks * OE_BLOCK_SIZE,
                          group_start + OE_BLOCK_SIZE))
            return -1;
    }
    return 0;
}
