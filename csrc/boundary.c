/* The table behind boundary.h. */
#include <stddef.h>
#include "boundary.h"
#include "tar.h"
#include "tarruns.h"
#include "writer.h"

#define FIELD(type, f) {#type, #f, (uint32_t)offsetof(type, f), (uint32_t)sizeof(((type *)0)->f)}
/* The whole structure: its size, under the field name "". */
#define WHOLE(type) {#type, "", 0, (uint32_t)sizeof(type)}

static const oe_field_layout fields[] = {
    WHOLE(oe_open_params),
    FIELD(oe_open_params, max_blocks),

    WHOLE(oe_inode),
    FIELD(oe_inode, mode),
    FIELD(oe_inode, uid),
    FIELD(oe_inode, gid),
    FIELD(oe_inode, nlink),
    FIELD(oe_inode, atime_sec),
    FIELD(oe_inode, ctime_sec),
    FIELD(oe_inode, mtime_sec),
    FIELD(oe_inode, atime_nsec),
    FIELD(oe_inode, ctime_nsec),
    FIELD(oe_inode, mtime_nsec),
    FIELD(oe_inode, xattr_len),
    FIELD(oe_inode, size),
    FIELD(oe_inode, ref),
    FIELD(oe_inode, xattr_off),
    FIELD(oe_inode, ref_len),
    FIELD(oe_inode, parent),
    FIELD(oe_inode, min_blocks),
    FIELD(oe_inode, reserved),

    WHOLE(oe_dirent),
    FIELD(oe_dirent, name_off),
    FIELD(oe_dirent, child),
    FIELD(oe_dirent, name_len),

    WHOLE(oe_commit_params),
    FIELD(oe_commit_params, blocks),
    FIELD(oe_commit_params, free_blocks),
    FIELD(oe_commit_params, min_inodes),
    FIELD(oe_commit_params, journal_blocks),
    FIELD(oe_commit_params, log_groups_per_flex),
    FIELD(oe_commit_params, timestamp),
    FIELD(oe_commit_params, uuid),
    FIELD(oe_commit_params, hash_seed),
    FIELD(oe_commit_params, label),

    WHOLE(oe_commit_result),
    FIELD(oe_commit_result, blocks),
    FIELD(oe_commit_result, free_blocks),
    FIELD(oe_commit_result, inodes),
    FIELD(oe_commit_result, free_inodes),
    FIELD(oe_commit_result, groups),
    FIELD(oe_commit_result, data_blocks),
    FIELD(oe_commit_result, metadata_blocks),

    WHOLE(oe_tar_limits),
    FIELD(oe_tar_limits, max_meta),
    FIELD(oe_tar_limits, max_path),

    WHOLE(oe_tar_entry),
    FIELD(oe_tar_entry, type),
    FIELD(oe_tar_entry, mode),
    FIELD(oe_tar_entry, uid),
    FIELD(oe_tar_entry, gid),
    FIELD(oe_tar_entry, mtime_sec),
    FIELD(oe_tar_entry, atime_sec),
    FIELD(oe_tar_entry, mtime_nsec),
    FIELD(oe_tar_entry, atime_nsec),
    FIELD(oe_tar_entry, flags),
    FIELD(oe_tar_entry, devmajor),
    FIELD(oe_tar_entry, devminor),
    FIELD(oe_tar_entry, name_len),
    FIELD(oe_tar_entry, name_off),
    FIELD(oe_tar_entry, link_off),
    FIELD(oe_tar_entry, link_len),
    FIELD(oe_tar_entry, xattr_len),
    FIELD(oe_tar_entry, xattr_off),
    FIELD(oe_tar_entry, size),
    FIELD(oe_tar_entry, data),
    FIELD(oe_tar_entry, offset),

    WHOLE(oe_tar_seg),
    FIELD(oe_tar_seg, run),
    FIELD(oe_tar_seg, first),
    FIELD(oe_tar_seg, count),
    FIELD(oe_tar_seg, dir_len),
    FIELD(oe_tar_seg, dir_off),
    FIELD(oe_tar_seg, names_off),
    FIELD(oe_tar_seg, names_len),
    FIELD(oe_tar_seg, recs_off),

    WHOLE(oe_field_layout),
    FIELD(oe_field_layout, type),
    FIELD(oe_field_layout, field),
    FIELD(oe_field_layout, offset),
    FIELD(oe_field_layout, size),
};

const oe_field_layout *oe_field_layouts(uint32_t *count)
{
    *count = (uint32_t)(sizeof fields / sizeof fields[0]);
    return fields;
}
