/* ociext4's ext4 writer: the cffi boundary.
 *
 * Two phases.  While the source streams, file data goes straight to the image
 * in stream order (oe_file_*); blocks are handed out sequentially, so the data
 * region is written as one long sequential stream.  When the tree is final,
 * oe_commit() receives every inode, name and xattr in a few flat arrays and
 * lays out directories, extent trees, xattr blocks, the journal, bitmaps,
 * inode tables, group descriptors and superblocks after the data.
 *
 * Every function returns 0 on success or -1 with a message in the writer's
 * error buffer (oe_error) and, for a failed system call, its errno
 * (oe_errno).  A failed oe_file_* call is sticky: the writer's state is then
 * unknown, so every later oe_file_* call fails with that first error. */
#ifndef OCIEXT4_WRITER_H
#define OCIEXT4_WRITER_H
#include <stdint.h>

typedef struct oe_writer oe_writer;

/* Fixed at open: how much group-descriptor room every backup group keeps. */
typedef struct {
    uint64_t max_blocks; /* largest block count the image may have */
} oe_open_params;

/* One inode as the policy side decided it.  Record 0 is the root (inode 2),
 * record k >= 1 becomes inode 10 + k.  96 bytes, a million of them: what
 * only one kind of inode has shares `ref` and `ref_len`. */
typedef struct {
    uint32_t mode;        /* type and permission bits, as st_mode */
    uint32_t uid;
    uint32_t gid;
    uint32_t nlink;       /* names pointing here; for directories 2 + subdirs */
    int64_t atime_sec;
    int64_t ctime_sec;
    int64_t mtime_sec;    /* also the creation time */
    uint32_t atime_nsec;
    uint32_t ctime_nsec;
    uint32_t mtime_nsec;
    uint32_t xattr_len;   /* packed xattrs follow in the blob at xattr_off */
    uint64_t size;        /* regular files */
    uint64_t ref;         /* regular files: data handle from oe_file_begin, or
                           * OE_NO_FILE; symlinks: target offset in the blob;
                           * directories: first entry in the dirent array;
                           * devices: major << 32 | minor */
    uint64_t xattr_off;
    uint32_t ref_len;     /* symlinks: target length; directories: entries */
    uint32_t parent;      /* directories: record index of the parent */
    uint32_t min_blocks;  /* directories: blocks to preallocate (lost+found) */
    uint32_t reserved;    /* 0 */
} oe_inode;

#define OE_NO_FILE UINT64_MAX

typedef struct {
    uint64_t name_off;    /* in the blob */
    uint32_t child;       /* record index */
    uint32_t name_len;
} oe_dirent;

/* Packed xattr in the blob: u8 name_index, u8 name_len, u16 0, u32 value_len,
 * then the name (without its prefix) and the value, padded to 4 bytes. */

typedef struct {
    uint64_t blocks;         /* total blocks; 0 = size from content */
    uint64_t free_blocks;    /* headroom when sizing from content */
    uint64_t min_inodes;     /* at least this many inodes */
    uint32_t journal_blocks; /* 0 = no journal */
    uint32_t log_groups_per_flex;
    int64_t timestamp;       /* superblock times and the journal inode */
    uint8_t uuid[16];
    uint8_t hash_seed[16];
    uint8_t label[16];
} oe_commit_params;

typedef struct {
    uint64_t blocks;
    uint64_t free_blocks;
    uint64_t inodes;
    uint64_t free_inodes;
    uint64_t groups;
    uint64_t data_blocks;
    uint64_t metadata_blocks;
} oe_commit_result;

oe_writer *oe_open(int fd, const oe_open_params *params, char *err, uint32_t errlen);
void oe_close(oe_writer *w);
const char *oe_error(const oe_writer *w);
int oe_errno(const oe_writer *w);   /* errno of the error in oe_error, or 0 */
int oe_failed(const oe_writer *w);  /* 1 once an oe_file_* call has failed */

/* File data, one file at a time, at non-decreasing offsets; gaps are holes. */
int oe_file_begin(oe_writer *w, int64_t *handle);
int oe_file_write(oe_writer *w, uint64_t offset, const void *buf, uint64_t len);
int oe_file_copy_fd(oe_writer *w, int fd, uint64_t size); /* keeps the fd's holes */
int oe_file_end(oe_writer *w);
/* Frees the blocks of a file that a later layer deleted or replaced. */
int oe_file_discard(oe_writer *w, int64_t handle);

uint64_t oe_data_blocks(const oe_writer *w);

/* Checks that one inode's xattr records (as oe_commit takes them) fit in
 * its body and one block, so a source can refuse them while it still knows
 * where they came from.  0, or -1 with the reason in err.  It needs no
 * writer: it runs while a layer's data is being written on another thread. */
int oe_xattrs_check(const uint8_t *blob, uint64_t len, char *err, uint32_t errlen);

int oe_commit(oe_writer *w, const oe_commit_params *params,
              const oe_inode *inodes, uint32_t n_inodes,
              const oe_dirent *dirents, uint32_t n_dirents,
              const uint8_t *blob, uint64_t blob_len,
              oe_commit_result *result);

#endif
