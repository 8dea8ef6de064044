/* The on-disk format of ext4 and of its jbd2 journal, named once.
 *
 * Structures and constants carry the names of the kernel's fs/ext4/ext4.h,
 * fs/ext4/xattr.h, include/linux/jbd2.h and e2fsprogs' lib/ext2fs/ext2_fs.h,
 * so code here cross-reads with those and with the kernel's
 * Documentation/filesystems/ext4/.  Only the fields and flags this writer
 * uses or must leave zero are spelled out; gaps are named `*_reserved`.
 *
 * The structures describe byte positions only: code never reads or writes
 * through them (the buffers are plain bytes and the image is little-endian
 * whatever the host).  Fields are stored with EXT4_SET, which takes the
 * field's offset and width from its declaration, so a value can't land in
 * the wrong place or spill into the next field.  The _Static_asserts pin the
 * offsets the documentation gives, so a field declared in the wrong order
 * or with the wrong width fails the build. */
#ifndef OCIEXT4_EXT4_FORMAT_H
#define OCIEXT4_EXT4_FORMAT_H
#include <stddef.h>
#include <stdint.h>

/* ---- storing fields --------------------------------------------------- */

static inline void oe_put_le(uint8_t *p, size_t width, uint64_t v)
{
    for (size_t i = 0; i < width; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void oe_put_be(uint8_t *p, size_t width, uint64_t v)
{
    for (size_t i = 0; i < width; i++)
        p[i] = (uint8_t)(v >> (8 * (width - 1 - i)));
}

#define EXT4_FIELD_SIZE(type, field) sizeof(((struct type *)0)->field)
/* p points at the first byte of a `struct type` in a byte buffer. */
#define EXT4_SET(type, p, field, v) \
    oe_put_le((p) + offsetof(struct type, field), EXT4_FIELD_SIZE(type, field), (uint64_t)(v))
#define EXT4_PTR(type, p, field) ((p) + offsetof(struct type, field))
/* jbd2 is big-endian. */
#define JBD2_SET(type, p, field, v) \
    oe_put_be((p) + offsetof(struct type, field), EXT4_FIELD_SIZE(type, field), (uint64_t)(v))

#define EXT4_STATIC_OFFSET(type, field, off) \
    _Static_assert(offsetof(struct type, field) == (off), #type "." #field " at " #off)
#define EXT4_STATIC_SIZE(type, size) _Static_assert(sizeof(struct type) == (size), #type " size")

/* ---- the superblock --------------------------------------------------- */

#define EXT4_SUPERBLOCK_OFFSET 1024   /* group 0's copy, in bytes */
#define EXT4_SUPER_MAGIC 0xEF53
#define EXT4_VALID_FS 0x0001          /* s_state: unmounted cleanly */
#define EXT4_ERRORS_CONTINUE 1
#define EXT4_OS_LINUX 0
#define EXT4_DYNAMIC_REV 1
#define EXT4_GOOD_OLD_FIRST_INO 11
#define EXT4_GOOD_OLD_INODE_SIZE 128
#define EXT4_MIN_DESC_SIZE_64BIT 64

#define EXT4_FEATURE_COMPAT_HAS_JOURNAL 0x0004
#define EXT4_FEATURE_COMPAT_EXT_ATTR 0x0008
#define EXT4_FEATURE_COMPAT_DIR_INDEX 0x0020

#define EXT4_FEATURE_INCOMPAT_FILETYPE 0x0002
#define EXT4_FEATURE_INCOMPAT_EXTENTS 0x0040
#define EXT4_FEATURE_INCOMPAT_64BIT 0x0080
#define EXT4_FEATURE_INCOMPAT_FLEX_BG 0x0200

#define EXT4_FEATURE_RO_COMPAT_SPARSE_SUPER 0x0001
#define EXT4_FEATURE_RO_COMPAT_LARGE_FILE 0x0002
#define EXT4_FEATURE_RO_COMPAT_HUGE_FILE 0x0008
#define EXT4_FEATURE_RO_COMPAT_DIR_NLINK 0x0020
#define EXT4_FEATURE_RO_COMPAT_EXTRA_ISIZE 0x0040
#define EXT4_FEATURE_RO_COMPAT_METADATA_CSUM 0x0400

#define EXT4_DEFM_XATTR_USER 0x0004   /* s_default_mount_opts */
#define EXT4_DEFM_ACL 0x0008
#define EXT2_FLAGS_SIGNED_HASH 0x0001 /* s_flags */
#define EXT3_JNL_BACKUP_BLOCKS 1      /* s_jnl_backup_type */
#define EXT4_CRC32C_CHKSUM 1          /* s_checksum_type */
#define EXT4_MAX_MNT_COUNT_NONE 0xFFFF /* s_max_mnt_count -1: no forced checks */

struct ext4_super_block {
    uint32_t s_inodes_count;
    uint32_t s_blocks_count_lo;
    uint32_t s_r_blocks_count_lo;
    uint32_t s_free_blocks_count_lo;
    uint32_t s_free_inodes_count;
    uint32_t s_first_data_block;
    uint32_t s_log_block_size;
    uint32_t s_log_cluster_size;
    uint32_t s_blocks_per_group;
    uint32_t s_clusters_per_group;
    uint32_t s_inodes_per_group;
    uint32_t s_mtime;
    uint32_t s_wtime;
    uint16_t s_mnt_count;
    uint16_t s_max_mnt_count;
    uint16_t s_magic;
    uint16_t s_state;
    uint16_t s_errors;
    uint16_t s_minor_rev_level;
    uint32_t s_lastcheck;
    uint32_t s_checkinterval;
    uint32_t s_creator_os;
    uint32_t s_rev_level;
    uint16_t s_def_resuid;
    uint16_t s_def_resgid;
    uint32_t s_first_ino;
    uint16_t s_inode_size;
    uint16_t s_block_group_nr;
    uint32_t s_feature_compat;
    uint32_t s_feature_incompat;
    uint32_t s_feature_ro_compat;
    uint8_t s_uuid[16];
    uint8_t s_volume_name[16];
    uint8_t s_last_mounted[64];
    uint32_t s_algorithm_usage_bitmap;
    uint8_t s_prealloc_blocks;
    uint8_t s_prealloc_dir_blocks;
    uint16_t s_reserved_gdt_blocks;
    uint8_t s_journal_uuid[16];
    uint32_t s_journal_inum;
    uint32_t s_journal_dev;
    uint32_t s_last_orphan;
    uint32_t s_hash_seed[4];
    uint8_t s_def_hash_version;
    uint8_t s_jnl_backup_type;
    uint16_t s_desc_size;
    uint32_t s_default_mount_opts;
    uint32_t s_first_meta_bg;
    uint32_t s_mkfs_time;
    uint32_t s_jnl_blocks[17];    /* the journal inode's i_block, i_size_high, i_size */
    uint32_t s_blocks_count_hi;
    uint32_t s_r_blocks_count_hi;
    uint32_t s_free_blocks_count_hi;
    uint16_t s_min_extra_isize;
    uint16_t s_want_extra_isize;
    uint32_t s_flags;
    uint16_t s_raid_stride;
    uint16_t s_mmp_update_interval;
    uint64_t s_mmp_block;
    uint32_t s_raid_stripe_width;
    uint8_t s_log_groups_per_flex;
    uint8_t s_checksum_type;
    uint8_t s_encryption_level;
    uint8_t s_reserved_pad;
    uint64_t s_kbytes_written;
    uint32_t s_snapshot_inum;
    uint32_t s_snapshot_id;
    uint64_t s_snapshot_r_blocks_count;
    uint32_t s_snapshot_list;
    uint32_t s_error_count;
    uint32_t s_first_error_time;
    uint32_t s_first_error_ino;
    uint64_t s_first_error_block;
    uint8_t s_first_error_func[32];
    uint32_t s_first_error_line;
    uint32_t s_last_error_time;
    uint32_t s_last_error_ino;
    uint32_t s_last_error_line;
    uint64_t s_last_error_block;
    uint8_t s_last_error_func[32];
    uint8_t s_mount_opts[64];
    uint32_t s_usr_quota_inum;
    uint32_t s_grp_quota_inum;
    uint32_t s_overhead_clusters;
    uint32_t s_backup_bgs[2];
    uint8_t s_encrypt_algos[4];
    uint8_t s_encrypt_pw_salt[16];
    uint32_t s_lpf_ino;
    uint32_t s_prj_quota_inum;
    uint32_t s_checksum_seed;
    uint8_t s_wtime_hi;
    uint8_t s_mtime_hi;
    uint8_t s_mkfs_time_hi;
    uint8_t s_lastcheck_hi;
    uint8_t s_first_error_time_hi;
    uint8_t s_last_error_time_hi;
    uint8_t s_first_error_errcode;
    uint8_t s_last_error_errcode;
    uint16_t s_encoding;
    uint16_t s_encoding_flags;
    uint32_t s_orphan_file_inum;
    uint32_t s_reserved[94];
    uint32_t s_checksum;          /* crc32c of the bytes before it */
};
EXT4_STATIC_SIZE(ext4_super_block, 1024);
EXT4_STATIC_OFFSET(ext4_super_block, s_wtime, 0x30);
EXT4_STATIC_OFFSET(ext4_super_block, s_magic, 0x38);
EXT4_STATIC_OFFSET(ext4_super_block, s_lastcheck, 0x40);
EXT4_STATIC_OFFSET(ext4_super_block, s_rev_level, 0x4C);
EXT4_STATIC_OFFSET(ext4_super_block, s_first_ino, 0x54);
EXT4_STATIC_OFFSET(ext4_super_block, s_feature_compat, 0x5C);
EXT4_STATIC_OFFSET(ext4_super_block, s_uuid, 0x68);
EXT4_STATIC_OFFSET(ext4_super_block, s_volume_name, 0x78);
EXT4_STATIC_OFFSET(ext4_super_block, s_journal_inum, 0xE0);
EXT4_STATIC_OFFSET(ext4_super_block, s_hash_seed, 0xEC);
EXT4_STATIC_OFFSET(ext4_super_block, s_def_hash_version, 0xFC);
EXT4_STATIC_OFFSET(ext4_super_block, s_desc_size, 0xFE);
EXT4_STATIC_OFFSET(ext4_super_block, s_default_mount_opts, 0x100);
EXT4_STATIC_OFFSET(ext4_super_block, s_mkfs_time, 0x108);
EXT4_STATIC_OFFSET(ext4_super_block, s_jnl_blocks, 0x10C);
EXT4_STATIC_OFFSET(ext4_super_block, s_blocks_count_hi, 0x150);
EXT4_STATIC_OFFSET(ext4_super_block, s_min_extra_isize, 0x15C);
EXT4_STATIC_OFFSET(ext4_super_block, s_flags, 0x160);
EXT4_STATIC_OFFSET(ext4_super_block, s_log_groups_per_flex, 0x174);
EXT4_STATIC_OFFSET(ext4_super_block, s_checksum_type, 0x175);
EXT4_STATIC_OFFSET(ext4_super_block, s_kbytes_written, 0x178);
EXT4_STATIC_OFFSET(ext4_super_block, s_mount_opts, 0x200);
EXT4_STATIC_OFFSET(ext4_super_block, s_wtime_hi, 0x274);
EXT4_STATIC_OFFSET(ext4_super_block, s_orphan_file_inum, 0x280);
EXT4_STATIC_OFFSET(ext4_super_block, s_checksum, 0x3FC);

/* ---- group descriptors (64-byte, for the 64bit feature) ---------------- */

#define EXT4_BG_INODE_UNINIT 0x0001   /* inode bitmap and table not in use */
#define EXT4_BG_BLOCK_UNINIT 0x0002
#define EXT4_BG_INODE_ZEROED 0x0004   /* inode table zeroed */

struct ext4_group_desc {
    uint32_t bg_block_bitmap_lo;
    uint32_t bg_inode_bitmap_lo;
    uint32_t bg_inode_table_lo;
    uint16_t bg_free_blocks_count_lo;
    uint16_t bg_free_inodes_count_lo;
    uint16_t bg_used_dirs_count_lo;
    uint16_t bg_flags;
    uint32_t bg_exclude_bitmap_lo;
    uint16_t bg_block_bitmap_csum_lo;
    uint16_t bg_inode_bitmap_csum_lo;
    uint16_t bg_itable_unused_lo;
    uint16_t bg_checksum;         /* crc32c(uuid, group number, descriptor) & 0xFFFF */
    uint32_t bg_block_bitmap_hi;
    uint32_t bg_inode_bitmap_hi;
    uint32_t bg_inode_table_hi;
    uint16_t bg_free_blocks_count_hi;
    uint16_t bg_free_inodes_count_hi;
    uint16_t bg_used_dirs_count_hi;
    uint16_t bg_itable_unused_hi;
    uint32_t bg_exclude_bitmap_hi;
    uint16_t bg_block_bitmap_csum_hi;
    uint16_t bg_inode_bitmap_csum_hi;
    uint32_t bg_reserved;
};
EXT4_STATIC_SIZE(ext4_group_desc, EXT4_MIN_DESC_SIZE_64BIT);
EXT4_STATIC_OFFSET(ext4_group_desc, bg_flags, 0x12);
EXT4_STATIC_OFFSET(ext4_group_desc, bg_block_bitmap_csum_lo, 0x18);
EXT4_STATIC_OFFSET(ext4_group_desc, bg_checksum, 0x1E);
EXT4_STATIC_OFFSET(ext4_group_desc, bg_block_bitmap_hi, 0x20);
EXT4_STATIC_OFFSET(ext4_group_desc, bg_free_blocks_count_hi, 0x2C);
EXT4_STATIC_OFFSET(ext4_group_desc, bg_block_bitmap_csum_hi, 0x38);

/* ---- inodes ------------------------------------------------------------- */

#define EXT4_ROOT_INO 2
#define EXT4_JOURNAL_INO 8
#define EXT4_N_BLOCKS 15
#define EXT4_LINK_MAX 65000           /* beyond it a directory's i_links_count is 1 (dir_nlink) */

#define EXT4_INDEX_FL 0x00001000      /* hashed directory */
#define EXT4_HUGE_FILE_FL 0x00040000
#define EXT4_EXTENTS_FL 0x00080000

/* Times: the 32-bit field holds the low bits of the seconds, the matching
 * *_extra field the nanoseconds shifted left by EXT4_EPOCH_BITS and, below
 * them, the epoch bits that extend the seconds past 2038. */
#define EXT4_EPOCH_BITS 2
#define EXT4_EPOCH_MASK ((1u << EXT4_EPOCH_BITS) - 1)

struct ext4_inode {
    uint16_t i_mode;
    uint16_t i_uid;
    uint32_t i_size_lo;
    uint32_t i_atime;
    uint32_t i_ctime;
    uint32_t i_mtime;
    uint32_t i_dtime;
    uint16_t i_gid;
    uint16_t i_links_count;
    uint32_t i_blocks_lo;         /* in 512-byte sectors (no huge_file scaling here) */
    uint32_t i_flags;
    uint32_t l_i_version;         /* osd1 */
    uint32_t i_block[EXT4_N_BLOCKS]; /* extent root, fast symlink target or device */
    uint32_t i_generation;
    uint32_t i_file_acl_lo;       /* xattr block */
    uint32_t i_size_high;
    uint32_t i_obso_faddr;
    uint16_t l_i_blocks_high;     /* osd2, as Linux reads it */
    uint16_t l_i_file_acl_high;
    uint16_t l_i_uid_high;
    uint16_t l_i_gid_high;
    uint16_t l_i_checksum_lo;
    uint16_t l_i_reserved;
    uint16_t i_extra_isize;       /* the large inode's fields below, from here */
    uint16_t i_checksum_hi;
    uint32_t i_ctime_extra;
    uint32_t i_mtime_extra;
    uint32_t i_atime_extra;
    uint32_t i_crtime;
    uint32_t i_crtime_extra;
    uint32_t i_version_hi;
    uint32_t i_projid;
};
/* The in-inode xattr area starts right after the structure. */
EXT4_STATIC_SIZE(ext4_inode, 160);
EXT4_STATIC_OFFSET(ext4_inode, i_links_count, 0x1A);
EXT4_STATIC_OFFSET(ext4_inode, i_flags, 0x20);
EXT4_STATIC_OFFSET(ext4_inode, i_block, 0x28);
EXT4_STATIC_OFFSET(ext4_inode, i_file_acl_lo, 0x68);
EXT4_STATIC_OFFSET(ext4_inode, l_i_blocks_high, 0x74);
EXT4_STATIC_OFFSET(ext4_inode, l_i_uid_high, 0x78);
EXT4_STATIC_OFFSET(ext4_inode, l_i_checksum_lo, 0x7C);
EXT4_STATIC_OFFSET(ext4_inode, i_extra_isize, EXT4_GOOD_OLD_INODE_SIZE);
EXT4_STATIC_OFFSET(ext4_inode, i_ctime_extra, 0x84);
EXT4_STATIC_OFFSET(ext4_inode, i_crtime, 0x90);
EXT4_STATIC_OFFSET(ext4_inode, i_projid, 0x9C);

/* Device numbers in i_block: the old encoding in word 0 when major and
 * minor fit a byte each, otherwise the new one in word 1. */
#define EXT4_OLD_DEV_MAX 255u
#define EXT4_NEW_DEV_MAJOR_MAX 0xFFFu
#define EXT4_NEW_DEV_MINOR_MAX 0xFFFFFu

/* ---- extent trees --------------------------------------------------------- */

#define EXT4_EXT_MAGIC 0xF30A
#define EXT_INIT_MAX_LEN 32768u       /* longest initialised extent */

struct ext4_extent_header {
    uint16_t eh_magic;
    uint16_t eh_entries;
    uint16_t eh_max;
    uint16_t eh_depth;            /* 0: the entries are leaves */
    uint32_t eh_generation;
};
struct ext4_extent {              /* leaf */
    uint32_t ee_block;
    uint16_t ee_len;
    uint16_t ee_start_hi;
    uint32_t ee_start_lo;
};
struct ext4_extent_idx {          /* interior node */
    uint32_t ei_block;
    uint32_t ei_leaf_lo;
    uint16_t ei_leaf_hi;
    uint16_t ei_unused;
};
struct ext4_extent_tail {         /* after eh_max entries in a tree block */
    uint32_t et_checksum;         /* crc32c(inode seed, block up to here) */
};
EXT4_STATIC_SIZE(ext4_extent_header, 12);
EXT4_STATIC_SIZE(ext4_extent, 12);
EXT4_STATIC_SIZE(ext4_extent_idx, 12);
EXT4_STATIC_OFFSET(ext4_extent, ee_start_hi, 6);
EXT4_STATIC_OFFSET(ext4_extent_idx, ei_leaf_hi, 8);

/* ---- directories ------------------------------------------------------------ */

#define EXT4_NAME_LEN 255
#define EXT4_DIR_ROUND 3u             /* records are 4-byte aligned */
#define EXT4_FT_UNKNOWN 0
#define EXT4_FT_REG_FILE 1
#define EXT4_FT_DIR 2
#define EXT4_FT_CHRDEV 3
#define EXT4_FT_BLKDEV 4
#define EXT4_FT_FIFO 5
#define EXT4_FT_SOCK 6
#define EXT4_FT_SYMLINK 7
#define EXT4_FT_DIR_CSUM 0xDE         /* file_type of the checksum tail */

struct ext4_dir_entry_2 {
    uint32_t inode;
    uint16_t rec_len;
    uint8_t name_len;
    uint8_t file_type;
    uint8_t name[EXT4_NAME_LEN];
};
/* The last 12 bytes of a leaf block, dressed as an unused entry. */
struct ext4_dir_entry_tail {
    uint32_t det_reserved_zero1;
    uint16_t det_rec_len;         /* 12 */
    uint8_t det_reserved_zero2;
    uint8_t det_reserved_ft;      /* EXT4_FT_DIR_CSUM */
    uint32_t det_checksum;        /* crc32c(inode seed, block up to here) */
};
EXT4_STATIC_OFFSET(ext4_dir_entry_2, name, 8);
EXT4_STATIC_SIZE(ext4_dir_entry_tail, 12);

/* Hashed (htree) directories: block 0 is the root, its "." and ".."
 * entries followed by dx_root_info and the index; interior nodes are one
 * empty entry spanning the block, then the index.  An index starts with a
 * dx_countlimit in the place of the first dx_entry's hash. */
#define DX_HASH_HALF_MD4 1

struct fake_dirent {
    uint32_t inode;
    uint16_t rec_len;
    uint8_t name_len;
    uint8_t file_type;
};
struct dx_root_info {
    uint32_t reserved_zero;
    uint8_t hash_version;
    uint8_t info_length;          /* 8 */
    uint8_t indirect_levels;
    uint8_t unused_flags;
};
struct dx_countlimit {
    uint16_t limit;
    uint16_t count;
};
struct dx_entry {
    uint32_t hash;                /* lowest hash in the child; bit 0: continues the previous one */
    uint32_t block;               /* logical block of the child */
};
struct dx_root {
    struct fake_dirent dot;
    uint8_t dot_name[4];
    struct fake_dirent dotdot;
    uint8_t dotdot_name[4];
    struct dx_root_info info;
    struct dx_entry entries[1];
};
struct dx_node {
    struct fake_dirent fake;
    struct dx_entry entries[1];
};
/* After `limit` entries of a root or node. */
struct dx_tail {
    uint32_t dt_reserved;
    uint32_t dt_checksum;         /* crc32c(inode seed, count entries, dx_tail with a zero checksum) */
};
EXT4_STATIC_SIZE(dx_entry, 8);
EXT4_STATIC_SIZE(dx_countlimit, 4);
EXT4_STATIC_OFFSET(dx_root, dotdot, 12);
EXT4_STATIC_OFFSET(dx_root, info, 24);
EXT4_STATIC_OFFSET(dx_root, entries, 32);
EXT4_STATIC_OFFSET(dx_node, entries, 8);
EXT4_STATIC_SIZE(dx_tail, 8);

/* ---- extended attributes ------------------------------------------------------- */

#define EXT4_XATTR_MAGIC 0xEA020000u
#define EXT4_XATTR_ROUND 3u           /* entries and values are 4-byte aligned */

struct ext4_xattr_header {        /* an xattr block */
    uint32_t h_magic;
    uint32_t h_refcount;
    uint32_t h_blocks;
    uint32_t h_hash;
    uint32_t h_checksum;          /* crc32c(seed, block number, block with this zero) */
    uint32_t h_reserved[3];
};
struct ext4_xattr_ibody_header {  /* the in-inode area */
    uint32_t h_magic;
};
struct ext4_xattr_entry {
    uint8_t e_name_len;
    uint8_t e_name_index;
    uint16_t e_value_offs;
    uint32_t e_value_inum;
    uint32_t e_value_size;
    uint32_t e_hash;
    uint8_t e_name[];
};
EXT4_STATIC_SIZE(ext4_xattr_header, 32);
EXT4_STATIC_SIZE(ext4_xattr_entry, 16);
EXT4_STATIC_OFFSET(ext4_xattr_header, h_checksum, 16);
EXT4_STATIC_OFFSET(ext4_xattr_entry, e_hash, 12);

/* ---- the jbd2 journal superblock (big-endian) ------------------------------------ */

#define JBD2_MAGIC_NUMBER 0xC03B3998u
#define JBD2_SUPERBLOCK_V2 4

typedef struct journal_header_s {
    uint32_t h_magic;
    uint32_t h_blocktype;
    uint32_t h_sequence;
} journal_header_t;

typedef struct journal_superblock_s {
    journal_header_t s_header;
    uint32_t s_blocksize;
    uint32_t s_maxlen;            /* blocks in the journal */
    uint32_t s_first;             /* first block of log information */
    uint32_t s_sequence;          /* first commit ID expected in the log */
    uint32_t s_start;             /* 0: the journal is empty */
    uint32_t s_errno;
    uint32_t s_feature_compat;
    uint32_t s_feature_incompat;
    uint32_t s_feature_ro_compat;
    uint8_t s_uuid[16];
    uint32_t s_nr_users;
    uint32_t s_dynsuper;
    uint32_t s_max_transaction;
    uint32_t s_max_trans_data;
    uint8_t s_checksum_type;
    uint8_t s_padding2[3];
    uint32_t s_num_fc_blks;
    uint32_t s_head;
    uint32_t s_padding[40];
    uint32_t s_checksum;
    uint8_t s_users[16 * 48];
} journal_superblock_t;
_Static_assert(sizeof(journal_superblock_t) == 1024, "journal superblock size");
_Static_assert(offsetof(journal_superblock_t, s_uuid) == 0x30, "journal s_uuid");
_Static_assert(offsetof(journal_superblock_t, s_nr_users) == 0x40, "journal s_nr_users");
_Static_assert(offsetof(journal_superblock_t, s_checksum) == 0xFC, "journal s_checksum");

#endif
