/* A streaming tar reader that feeds the writer.
 *
 * Decompressed bytes go in with oe_tar_feed() in chunks of any size.  The
 * reader parses ustar, PAX (local and global), GNU long names and links and
 * the GNU and PAX sparse formats; regular file data goes straight into the
 * writer (oe_file_*), and every member becomes an oe_tar_entry in a batch the
 * caller reads and then clears.  Names, link targets and xattrs live in the
 * batch's string buffer. */
#ifndef OCIEXT4_TAR_H
#define OCIEXT4_TAR_H
#include <stdint.h>
#include "writer.h"

typedef struct oe_tar oe_tar;

typedef struct {
    uint64_t max_meta;    /* bytes of a PAX header, long name or sparse map */
    uint64_t max_path;    /* bytes of a path or link target */
} oe_tar_limits;

typedef struct {
    uint32_t type;        /* the typeflag: '0' file, '1' hard link, '2' symlink, ... */
    uint32_t mode;
    uint64_t uid;
    uint64_t gid;
    int64_t mtime_sec;
    int64_t atime_sec;    /* valid with OE_TAR_ATIME */
    uint32_t mtime_nsec;
    uint32_t atime_nsec;
    uint32_t flags;       /* OE_TAR_* */
    uint32_t devmajor;
    uint32_t devminor;
    uint32_t name_len;
    uint64_t name_off;    /* in the string buffer */
    uint64_t link_off;
    uint32_t link_len;
    uint32_t xattr_len;   /* records: u32 name length, u32 value length, name, value */
    uint64_t xattr_off;
    uint64_t size;        /* the file's size (for sparse files, the full size) */
    int64_t data;         /* writer handle of a regular file's data, or -1 */
    uint64_t offset;      /* of the member's header in the stream */
} oe_tar_entry;

/* oe_tar_entry.flags.  OE_TAR_PLAIN_NAME: the name, less its leading and
 * trailing slashes, is one or more components of 1 to 255 bytes, none of
 * them "." or "..", and holds no NUL, so a split on '/' is already the path
 * (checked here, where the bytes are hot, and not again in Python for each
 * member). */
enum { OE_TAR_ATIME = 1, OE_TAR_PLAIN_NAME = 2 };
/* 1 if `name` (len bytes) is plain as OE_TAR_PLAIN_NAME says, else 0. */
int oe_tar_plain_name(const uint8_t *name, uint64_t len);

oe_tar *oe_tar_new(oe_writer *w, const oe_tar_limits *limits);
void oe_tar_free(oe_tar *t);
const char *oe_tar_error(const oe_tar *t);
/* Returns 0, or -1 with the error in oe_tar_error (or, for writer failures,
 * in oe_error of the writer). */
int oe_tar_feed(oe_tar *t, const uint8_t *buf, uint64_t len);
/* At the end of the stream: fails unless the archive ended cleanly. */
int oe_tar_finish(oe_tar *t);
uint32_t oe_tar_count(const oe_tar *t);
const oe_tar_entry *oe_tar_entries(const oe_tar *t);
const uint8_t *oe_tar_strings(const oe_tar *t);
uint64_t oe_tar_strings_len(const oe_tar *t);
void oe_tar_clear(oe_tar *t);

#endif
