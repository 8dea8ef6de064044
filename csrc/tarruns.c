/* Runs of plain files in a tar batch (see tarruns.h). */
#include <errno.h>
#include <string.h>
#include "packdir.h"
#include "tarruns.h"

/* A new segment at entry i, or NULL with errno ERANGE past segs_cap. */
static oe_tar_seg *open_seg(oe_tar_seg *segs, uint32_t segs_cap, uint64_t *nseg, uint32_t i)
{
    oe_tar_seg *s;

    if (*nseg >= segs_cap) {
        errno = ERANGE;
        return NULL;
    }
    s = &segs[(*nseg)++];
    memset(s, 0, sizeof *s);
    s->first = i;
    return s;
}

/* A run member's plain record: oe_inode's first OE_PLAIN_RECORD bytes, as
 * ociext4.tree.plain_record makes them. */
static void plain_record(const oe_tar_entry *e, uint8_t *out)
{
    oe_inode in;

    memset(&in, 0, sizeof in);
    in.mode = 0100000u | (e->mode & 07777u);
    in.uid = (uint32_t)e->uid;
    in.gid = (uint32_t)e->gid;
    in.nlink = 1;
    in.atime_sec = in.ctime_sec = in.mtime_sec = e->mtime_sec;
    in.atime_nsec = in.ctime_nsec = in.mtime_nsec = e->mtime_nsec;
    in.size = e->size;
    in.ref = e->data >= 0 ? (uint64_t)e->data : OE_NO_FILE;
    memcpy(out, &in, OE_PLAIN_RECORD);
}

int64_t oe_tar_runs(const oe_tar_entry *ents, uint32_t n, const uint8_t *str, uint64_t str_len,
                    int64_t plain_sec_end, const uint8_t *marker, uint32_t marker_len,
                    oe_tar_seg *segs, uint32_t segs_cap,
                    uint8_t *names, uint64_t names_cap, uint8_t *recs, uint64_t recs_cap)
{
    uint64_t nseg = 0, names_at = 0, recs_at = 0;
    oe_tar_seg *cur = NULL;
    uint32_t i;

    for (i = 0; i < n; i++) {
        const oe_tar_entry *e = &ents[i];
        const uint8_t *s = NULL;
        uint64_t a = 0, z = 0, slash = 0, dir_len = 0, base_len = 0;
        int run = 0;

        if (e->type == '0' && e->flags == OE_TAR_PLAIN_NAME && e->xattr_len == 0 &&
            e->uid <= UINT32_MAX && e->gid <= UINT32_MAX &&
            e->mtime_sec >= 0 && e->mtime_sec < plain_sec_end) {
            if (e->name_off > str_len || e->name_len > str_len - e->name_off) {
                errno = ERANGE;
                return -1;
            }
            s = str + e->name_off;
            z = e->name_len;
            /* The reader said so; the names and directories made here are
             * split on '/' as they are, so it is checked, not trusted. */
            if (!oe_tar_plain_name(s, z)) {
                errno = EINVAL;
                return -1;
            }
            while (a < z && s[a] == '/')
                a++;
            while (z > a && s[z - 1] == '/')
                z--;
            for (slash = z; slash > a && s[slash - 1] != '/'; slash--)
                ;
            if (slash > a) {        /* not at the root (eStargz's files are) */
                dir_len = slash - 1 - a;
                base_len = z - slash;
                run = !(base_len >= marker_len && memcmp(s + slash, marker, marker_len) == 0);
            }
        }
        if (!run) {
            if (cur == NULL || cur->run) {
                cur = open_seg(segs, segs_cap, &nseg, i);
                if (cur == NULL)
                    return -1;
            }
            cur->count++;
            continue;
        }
        if (cur == NULL || !cur->run || cur->dir_len != dir_len ||
            memcmp(str + cur->dir_off, s + a, dir_len) != 0) {
            cur = open_seg(segs, segs_cap, &nseg, i);
            if (cur == NULL)
                return -1;
            cur->run = 1;
            cur->dir_off = e->name_off + a;
            cur->dir_len = (uint32_t)dir_len;
            cur->names_off = names_at;
            cur->recs_off = recs_at;
        }
        if (names_cap - names_at < base_len + (cur->count ? 1 : 0) ||
            recs_cap - recs_at < OE_PLAIN_RECORD) {
            errno = ERANGE;
            return -1;
        }
        if (cur->count) {
            names[names_at++] = 0;
            cur->names_len++;
        }
        memcpy(names + names_at, s + slash, base_len);
        names_at += base_len;
        cur->names_len += base_len;
        plain_record(e, recs + recs_at);
        recs_at += OE_PLAIN_RECORD;
        cur->count++;
    }
    return (int64_t)nseg;
}
