/* The streaming tar reader (see tar.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "tar.h"

enum { ST_HEADER, ST_META, ST_GNU_SPARSE, ST_SPARSE_MAP, ST_DATA, ST_SKIP, ST_END };

typedef struct {
    uint64_t off, len;
} seg;

typedef struct {
    int has_uid, has_gid, has_mtime, has_atime, has_size;
    uint64_t uid, gid, size;
    int64_t mtime_sec, atime_sec;
    uint32_t mtime_nsec, atime_nsec;
} overrides;

struct oe_tar {
    oe_writer *w;
    oe_tar_limits lim;
    char err[512];
    int state;
    uint64_t pos;            /* bytes consumed so far */
    uint64_t member;         /* offset of the current header */
    uint8_t hdr[512];
    uint32_t hdr_fill;
    int zero_blocks;

    uint8_t *meta;           /* a PAX header, long name or sparse map being read */
    uint64_t meta_len, meta_need, meta_cap;
    int meta_kind;
    uint64_t skip;           /* padding (or unwanted data) still to pass over */

    /* What PAX headers and GNU long names say of the next member. */
    overrides local, global;
    uint8_t *path, *link;
    uint64_t path_len, link_len, path_cap, link_cap;
    int has_path, has_link;
    uint8_t *xattrs;
    uint64_t xattrs_len, xattrs_cap;
    seg *segs;
    uint64_t n_segs, cap_segs;
    int sparse;              /* 0 none, 1 map known, 2 PAX 1.0 map in the data */
    uint64_t real_size;
    int has_real_size;
    int64_t pending_offset;  /* GNU.sparse.offset waiting for its numbytes */
    int described;           /* a PAX header or long name waits for its member */

    /* The regular file being streamed. */
    oe_tar_entry cur;
    uint64_t data_left;      /* member bytes still to come */
    uint64_t seg_i, seg_pos;

    oe_tar_entry *ents;
    uint64_t n_ents, cap_ents;
    uint8_t *str;
    uint64_t str_len, str_cap;
};

static int fail(oe_tar *t, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(t->err, sizeof t->err, "at byte %llu: ", (unsigned long long)t->member);
    va_start(ap, fmt);
    vsnprintf(t->err + n, sizeof t->err - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

const char *oe_tar_error(const oe_tar *t) { return t->err; }

static int grow(oe_tar *t, void **arr, uint64_t *cap, uint64_t need, size_t elem)
{
    if (oe_grow(t->w, arr, cap, need, elem))
        return fail(t, "out of memory");
    return 0;
}

oe_tar *oe_tar_new(oe_writer *w, const oe_tar_limits *limits)
{
    oe_tar *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->w = w;
    t->lim = *limits;
    t->pending_offset = -1;
    return t;
}

void oe_tar_free(oe_tar *t)
{
    if (!t)
        return;
    free(t->meta);
    free(t->path);
    free(t->link);
    free(t->xattrs);
    free(t->segs);
    free(t->ents);
    free(t->str);
    free(t);
}

uint32_t oe_tar_count(const oe_tar *t) { return (uint32_t)t->n_ents; }
const oe_tar_entry *oe_tar_entries(const oe_tar *t) { return t->ents; }
const uint8_t *oe_tar_strings(const oe_tar *t) { return t->str; }
uint64_t oe_tar_strings_len(const oe_tar *t) { return t->str_len; }

void oe_tar_clear(oe_tar *t)
{
    uint64_t from = t->str_len;

    /* A member whose data is still streaming keeps its strings, which were
     * pushed last: name first, then link target and xattrs. */
    if (t->state == ST_DATA || t->state == ST_GNU_SPARSE || t->state == ST_SPARSE_MAP) {
        from = t->cur.name_off;
        memmove(t->str, t->str + from, t->str_len - from);
        t->cur.name_off -= from;
        t->cur.link_off -= from;
        if (t->cur.xattr_len)
            t->cur.xattr_off -= from;
    }
    t->n_ents = 0;
    t->str_len -= from;
}

/* ---- numbers ------------------------------------------------------------ */

/* Octal, space or NUL terminated, or base-256 when the top bit is set.
 * `*out` is the magnitude: at most 2^64-1, or 2^63 when negative, so that
 * the value always fits an int64_t or a uint64_t. */
static int parse_num(const uint8_t *f, size_t n, uint64_t *out, int *negative)
{
    uint64_t v = 0;
    size_t i = 0;

    *negative = 0;
    if (f[0] & 0x80) {
        int neg = f[0] == 0xff;
        v = neg ? UINT64_MAX : (f[0] & 0x7f);  /* the first byte, sign-extended */
        for (i = 1; i < n; i++) {
            /* What shifts out must be sign bits, or the value is too big. */
            if (neg ? v >> 56 != 0xff : v >> 56 != 0)
                return -1;
            v = (v << 8) | f[i];
        }
        if (neg) {
            if (!(v >> 63))
                return -1; /* below -2^63 */
            *negative = 1;
            v = ~v + 1;
        }
        *out = v;
        return 0;
    }
    while (i < n && f[i] == ' ')
        i++;
    for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
        if (v >> 61)
            return -1;
        v = v * 8 + (uint64_t)(f[i] - '0');
    }
    for (; i < n; i++)
        if (f[i] != ' ' && f[i] != 0)
            return -1;
    *out = v;
    return 0;
}

static int header_num(oe_tar *t, size_t off, size_t n, const char *what, uint64_t *out)
{
    int neg;
    if (parse_num(t->hdr + off, n, out, &neg) || neg)
        return fail(t, "bad %s field in tar header", what);
    return 0;
}

static int parse_decimal(const uint8_t *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;
    if (n == 0)
        return -1;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

/* "[-]SECONDS[.FRACTION]" as PAX writes times. */
static int parse_time(const uint8_t *s, size_t n, int64_t *sec, uint32_t *nsec)
{
    int neg = n && s[0] == '-';
    size_t i = (size_t)neg, dot;
    uint64_t whole = 0, frac = 0;
    int digits = 0;

    for (dot = i; dot < n && s[dot] != '.'; dot++)
        ;
    if (dot == i || parse_decimal(s + i, dot - i, &whole) || whole > (1ull << 62))
        return -1;
    for (i = dot + 1; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        if (digits < 9) {
            frac = frac * 10 + (uint64_t)(s[i] - '0');
            digits++;
        }
    }
    while (digits < 9) {
        frac *= 10;
        digits++;
    }
    if (neg && frac) {
        *sec = -(int64_t)whole - 1;
        *nsec = (uint32_t)(1000000000u - frac);
    } else {
        *sec = neg ? -(int64_t)whole : (int64_t)whole;
        *nsec = (uint32_t)frac;
    }
    return 0;
}

/* ---- pending state -------------------------------------------------------- */

static int set_bytes(oe_tar *t, uint8_t **dst, uint64_t *len, uint64_t *cap, const uint8_t *s, uint64_t n)
{
    if (n > t->lim.max_path)
        return fail(t, "path of %llu bytes is over the limit of %llu", (unsigned long long)n,
                    (unsigned long long)t->lim.max_path);
    if (grow(t, (void **)dst, cap, n + 1, 1))
        return -1;
    memcpy(*dst, s, n);
    *len = n;
    return 0;
}

static int add_xattr(oe_tar *t, const uint8_t *name, uint64_t nlen, const uint8_t *val, uint64_t vlen)
{
    uint64_t need = t->xattrs_len + 8 + nlen + vlen;
    if (grow(t, (void **)&t->xattrs, &t->xattrs_cap, need, 1))
        return -1;
    put32(t->xattrs + t->xattrs_len, (uint32_t)nlen);
    put32(t->xattrs + t->xattrs_len + 4, (uint32_t)vlen);
    memcpy(t->xattrs + t->xattrs_len + 8, name, nlen);
    memcpy(t->xattrs + t->xattrs_len + 8 + nlen, val, vlen);
    t->xattrs_len = need;
    return 0;
}

static int add_seg(oe_tar *t, uint64_t off, uint64_t len)
{
    if (t->n_segs && off < t->segs[t->n_segs - 1].off + t->segs[t->n_segs - 1].len)
        return fail(t, "sparse map out of order");
    if (off + len < off)
        return fail(t, "sparse map overflows");
    if (t->n_segs * sizeof(seg) > t->lim.max_meta)
        return fail(t, "sparse map over the limit");
    if (grow(t, (void **)&t->segs, &t->cap_segs, t->n_segs + 1, sizeof(seg)))
        return -1;
    t->segs[t->n_segs].off = off;
    t->segs[t->n_segs].len = len;
    t->n_segs++;
    return 0;
}

static void reset_local(oe_tar *t)
{
    memset(&t->local, 0, sizeof t->local);
    t->has_path = t->has_link = 0;
    t->xattrs_len = 0;
    t->n_segs = 0;
    t->sparse = 0;
    t->has_real_size = 0;
    t->pending_offset = -1;
    t->described = 0;
}

static int keyis(const uint8_t *k, size_t n, const char *s)
{
    return strlen(s) == n && memcmp(k, s, n) == 0;
}

/* One PAX header's records; `g` for a global header. */
static int parse_pax(oe_tar *t, const uint8_t *p, uint64_t n, int g)
{
    overrides *o = g ? &t->global : &t->local;
    uint64_t i = 0;

    while (i < n) {
        uint64_t rec_len = 0, j = i, k, v;
        const uint8_t *key, *val;
        size_t klen, vlen;
        while (j < n && p[j] >= '0' && p[j] <= '9' && j - i < 20)
            j++;
        if (j == i || j >= n || p[j] != ' ' || parse_decimal(p + i, j - i, &rec_len) ||
            rec_len > n - i || rec_len < j - i + 3 || p[i + rec_len - 1] != '\n')
            return fail(t, "malformed PAX record");
        key = p + j + 1;
        for (k = j + 1; k < i + rec_len - 1 && p[k] != '='; k++)
            ;
        if (k >= i + rec_len - 1)
            return fail(t, "malformed PAX record");
        klen = (size_t)(p + k - key);
        val = p + k + 1;
        vlen = (size_t)(p + i + rec_len - 1 - val);
        i += rec_len;

        if (keyis(key, klen, "path")) {
            if (!g && (set_bytes(t, &t->path, &t->path_len, &t->path_cap, val, vlen) == 0))
                t->has_path = 1;
            else if (!g)
                return -1;
        } else if (keyis(key, klen, "linkpath")) {
            if (!g && (set_bytes(t, &t->link, &t->link_len, &t->link_cap, val, vlen) == 0))
                t->has_link = 1;
            else if (!g)
                return -1;
        } else if (keyis(key, klen, "size")) {
            if (parse_decimal(val, vlen, &o->size))
                return fail(t, "bad PAX size");
            o->has_size = 1;
        } else if (keyis(key, klen, "uid") || keyis(key, klen, "gid")) {
            uint64_t id;
            if (parse_decimal(val, vlen, &id) || id > UINT32_MAX)
                return fail(t, "bad PAX %.*s", (int)klen, key);
            if (key[0] == 'u') {
                o->uid = id;
                o->has_uid = 1;
            } else {
                o->gid = id;
                o->has_gid = 1;
            }
        } else if (keyis(key, klen, "mtime")) {
            if (parse_time(val, vlen, &o->mtime_sec, &o->mtime_nsec))
                return fail(t, "bad PAX mtime");
            o->has_mtime = 1;
        } else if (keyis(key, klen, "atime")) {
            if (parse_time(val, vlen, &o->atime_sec, &o->atime_nsec))
                return fail(t, "bad PAX atime");
            o->has_atime = 1;
        } else if (klen > 13 && memcmp(key, "SCHILY.xattr.", 13) == 0) {
            if (!g && add_xattr(t, key + 13, klen - 13, val, vlen))
                return -1;
        } else if (g) {
            continue;
        } else if (keyis(key, klen, "GNU.sparse.name")) {
            if (set_bytes(t, &t->path, &t->path_len, &t->path_cap, val, vlen))
                return -1;
            t->has_path = 1;
        } else if (keyis(key, klen, "GNU.sparse.realsize") || keyis(key, klen, "GNU.sparse.size")) {
            if (parse_decimal(val, vlen, &t->real_size))
                return fail(t, "bad sparse size");
            t->has_real_size = 1;
        } else if (keyis(key, klen, "GNU.sparse.major")) {
            if (vlen == 1 && val[0] == '1')
                t->sparse = 2;
        } else if (keyis(key, klen, "GNU.sparse.offset")) {
            if (parse_decimal(val, vlen, &v))
                return fail(t, "bad sparse offset");
            t->pending_offset = (int64_t)v;
        } else if (keyis(key, klen, "GNU.sparse.numbytes")) {
            if (t->pending_offset < 0 || parse_decimal(val, vlen, &v))
                return fail(t, "bad sparse numbytes");
            if (add_seg(t, (uint64_t)t->pending_offset, v))
                return -1;
            t->pending_offset = -1;
            t->sparse = 1;
        } else if (keyis(key, klen, "GNU.sparse.map")) {
            size_t a = 0, b;
            uint64_t pair[2];
            int half = 0;
            while (a < vlen) {
                for (b = a; b < vlen && val[b] != ','; b++)
                    ;
                if (parse_decimal(val + a, b - a, &pair[half]))
                    return fail(t, "bad sparse map");
                if (half && add_seg(t, pair[0], pair[1]))
                    return -1;
                half ^= 1;
                a = b + 1;
            }
            if (half)
                return fail(t, "bad sparse map");
            t->sparse = 1;
        }
    }
    return 0;
}

/* ---- members ------------------------------------------------------------- */

static int push_string(oe_tar *t, const uint8_t *s, uint64_t n, uint64_t *off)
{
    *off = t->str_len;
    if (n == 0) /* the buffer may not exist yet: no pointer arithmetic on it */
        return 0;
    if (grow(t, (void **)&t->str, &t->str_cap, t->str_len + n, 1))
        return -1;
    memcpy(t->str + t->str_len, s, n);
    *off = t->str_len;
    t->str_len += n;
    return 0;
}

static size_t field_len(const uint8_t *f, size_t n)
{
    const uint8_t *z = memchr(f, 0, n);
    return z ? (size_t)(z - f) : n;
}

#define NAME_BYTES_MAX 255   /* of a path component, in the VFS and on ext4 */

int oe_tar_plain_name(const uint8_t *name, uint64_t len)
{
    uint64_t start = 0, end = len;
    while (start < end && name[start] == '/')
        start++;
    while (end > start && name[end - 1] == '/')
        end--;
    if (start == end)
        return 0;
    for (uint64_t i = start; i < end;) {
        uint64_t j = i;
        while (j < end && name[j] != '/') {
            if (name[j] == 0)
                return 0;
            j++;
        }
        uint64_t n = j - i;
        if (n == 0 || n > NAME_BYTES_MAX || (name[i] == '.' && (n == 1 || (n == 2 && name[i + 1] == '.'))))
            return 0;
        i = j + 1;
    }
    return 1;
}

static int emit(oe_tar *t, oe_tar_entry *e)
{
    if (oe_tar_plain_name(t->str + e->name_off, e->name_len))
        e->flags |= OE_TAR_PLAIN_NAME;
    if (grow(t, (void **)&t->ents, &t->cap_ents, t->n_ents + 1, sizeof *e))
        return -1;
    t->ents[t->n_ents++] = *e;
    return 0;
}

/* Fills the entry from the header and whatever PAX and GNU headers said. */
static int build_entry(oe_tar *t, oe_tar_entry *e, uint64_t size)
{
    const uint8_t *h = t->hdr;
    uint64_t v;
    int gnu = memcmp(h + 257, "ustar  ", 8) == 0;
    int ustar = memcmp(h + 257, "ustar", 6) == 0;
    int neg;

    memset(e, 0, sizeof *e);
    e->type = h[156] ? h[156] : '0';
    e->data = -1;
    e->offset = t->member;
    e->size = size;
    if (header_num(t, 100, 8, "mode", &v))
        return -1;
    e->mode = (uint32_t)(v & 07777);
    if (parse_num(h + 108, 8, &e->uid, &neg) || neg || parse_num(h + 116, 8, &e->gid, &neg) || neg)
        return fail(t, "bad uid or gid in tar header");
    if (parse_num(h + 136, 12, &v, &neg))
        return fail(t, "bad mtime in tar header");
    if (neg ? v > (uint64_t)INT64_MAX + 1 : v > (uint64_t)INT64_MAX)
        return fail(t, "bad mtime in tar header");
    /* -(v-1)-1 and not -v: v may be 2^63, which no int64_t holds. */
    e->mtime_sec = neg ? -(int64_t)(v - 1) - 1 : (int64_t)v;
    if ((ustar || gnu) && (e->type == '3' || e->type == '4')) {
        if (header_num(t, 329, 8, "devmajor", &v) || v > 0xfff)
            return fail(t, "bad device major");
        e->devmajor = (uint32_t)v;
        if (header_num(t, 337, 8, "devminor", &v) || v > 0xfffff)
            return fail(t, "bad device minor");
        e->devminor = (uint32_t)v;
    }
    /* Global, then local PAX values win over the header. */
    for (int pass = 0; pass < 2; pass++) {
        const overrides *o = pass ? &t->local : &t->global;
        if (o->has_uid)
            e->uid = o->uid;
        if (o->has_gid)
            e->gid = o->gid;
        if (o->has_mtime) {
            e->mtime_sec = o->mtime_sec;
            e->mtime_nsec = o->mtime_nsec;
        }
        if (o->has_atime) {
            e->atime_sec = o->atime_sec;
            e->atime_nsec = o->atime_nsec;
            e->flags |= OE_TAR_ATIME;
        }
    }
    if (e->uid > UINT32_MAX || e->gid > UINT32_MAX)
        return fail(t, "uid or gid over 2^32");
    if (t->has_path) {
        if (push_string(t, t->path, t->path_len, &e->name_off))
            return -1;
        e->name_len = (uint32_t)t->path_len;
    } else {
        size_t nlen = field_len(h, 100), plen = ustar && !gnu ? field_len(h + 345, 155) : 0;
        uint8_t buf[256];
        if (plen) {
            memcpy(buf, h + 345, plen);
            buf[plen] = '/';
            memcpy(buf + plen + 1, h, nlen);
            nlen += plen + 1;
        } else {
            memcpy(buf, h, nlen);
        }
        if (push_string(t, buf, nlen, &e->name_off))
            return -1;
        e->name_len = (uint32_t)nlen;
    }
    if (t->has_link) {
        if (push_string(t, t->link, t->link_len, &e->link_off))
            return -1;
        e->link_len = (uint32_t)t->link_len;
    } else {
        size_t llen = field_len(h + 157, 100);
        if (push_string(t, h + 157, llen, &e->link_off))
            return -1;
        e->link_len = (uint32_t)llen;
    }
    if (t->xattrs_len) {
        if (push_string(t, t->xattrs, t->xattrs_len, &e->xattr_off))
            return -1;
        e->xattr_len = (uint32_t)t->xattrs_len;
    }
    return 0;
}

static int writer_fail(oe_tar *t)
{
    return fail(t, "%s", oe_error(t->w));
}

/* Starts a regular file whose `data` bytes follow in the archive. */
static int start_file(oe_tar *t, uint64_t data)
{
    uint64_t end = 0;
    t->data_left = data;
    t->seg_i = t->seg_pos = 0;
    if (t->sparse) {
        uint64_t sum = 0;
        for (uint64_t i = 0; i < t->n_segs; i++) {
            sum += t->segs[i].len;
            end = t->segs[i].off + t->segs[i].len;
        }
        if (sum != data)
            return fail(t, "sparse map covers %llu bytes, the member holds %llu",
                        (unsigned long long)sum, (unsigned long long)data);
        if (!t->has_real_size)
            t->real_size = end;
        if (end > t->real_size)
            return fail(t, "sparse map points past the end of the file");
        t->cur.size = t->real_size;
    } else {
        t->cur.size = data;
    }
    if (data == 0) { /* nothing to store: no data handle */
        t->cur.data = -1;
        if (emit(t, &t->cur))
            return -1;
        reset_local(t);
        t->state = ST_SKIP;
        return 0;
    }
    if (oe_file_begin(t->w, &t->cur.data))
        return writer_fail(t);
    t->state = ST_DATA;
    return 0;
}

static int finish_file(oe_tar *t)
{
    if (oe_file_end(t->w))
        return writer_fail(t);
    if (emit(t, &t->cur))
        return -1;
    reset_local(t);
    return 0;
}

static uint64_t pad512(uint64_t n) { return (512 - n % 512) % 512; }

static int header_checksum_ok(const uint8_t *h)
{
    uint64_t stored;
    int neg;
    uint32_t u = 0;
    int32_t s = 0;
    for (int i = 0; i < 512; i++) {
        uint8_t c = (i >= 148 && i < 156) ? ' ' : h[i];
        u += c;
        s += (signed char)c;
    }
    if (parse_num(h + 148, 8, &stored, &neg) || neg)
        return 0;
    return stored == u || stored == (uint64_t)(uint32_t)s;
}

static int read_gnu_sparse(oe_tar *t, const uint8_t *p, int n)
{
    for (int i = 0; i < n; i++) {
        uint64_t off, len;
        int neg;
        if (p[i * 24] == 0)
            break;
        if (parse_num(p + i * 24, 12, &off, &neg) || neg || parse_num(p + i * 24 + 12, 12, &len, &neg) || neg)
            return fail(t, "bad GNU sparse map");
        if (add_seg(t, off, len))
            return -1;
    }
    return 0;
}

static const char orphan[] = "PAX header or GNU long name without the member it describes";

static int on_header(oe_tar *t)
{
    const uint8_t *h = t->hdr;
    uint64_t size;
    uint8_t type;
    int i;

    for (i = 0; i < 512 && !h[i]; i++)
        ;
    if (i == 512) {
        if (t->described)
            return fail(t, "%s", orphan);
        if (++t->zero_blocks == 2)
            t->state = ST_END;
        return 0;
    }
    if (t->zero_blocks)
        return fail(t, "data after an end-of-archive block");
    if (!header_checksum_ok(h))
        return fail(t, "bad tar header checksum");
    type = h[156];
    if (header_num(t, 124, 12, "size", &size))
        return -1;
    if (t->local.has_size && type != 'x' && type != 'g' && type != 'L' && type != 'K')
        size = t->local.size;
    switch (type) {
    case 'x': case 'g': case 'L': case 'K':
        if (size > t->lim.max_meta)
            return fail(t, "%s of %llu bytes is over the limit of %llu",
                        type == 'L' || type == 'K' ? "GNU long name" : "PAX header",
                        (unsigned long long)size, (unsigned long long)t->lim.max_meta);
        if (grow(t, (void **)&t->meta, &t->meta_cap, size + 1, 1))
            return -1;
        t->meta_kind = type;
        t->meta_len = 0;
        t->meta_need = size;
        t->skip = pad512(size);
        t->state = ST_META;
        return 0;
    case 'V':  /* a volume label: nothing to extract */
        t->skip = size + pad512(size);
        t->state = ST_SKIP;
        reset_local(t);
        return 0;
    case 'M':
        return fail(t, "multi-volume archives are not supported");
    default:
        break;
    }
    if (build_entry(t, &t->cur, size))
        return -1;
    if (type == 'S') {
        uint64_t real;
        t->cur.type = '0';
        if (read_gnu_sparse(t, h + 386, 4) || header_num(t, 483, 12, "realsize", &real))
            return -1;
        t->real_size = real;
        t->has_real_size = 1;
        t->sparse = 1;
        t->data_left = size;
        if (h[482]) {
            t->state = ST_GNU_SPARSE;
            t->hdr_fill = 0;
            return 0;
        }
        t->skip = pad512(size);
        return start_file(t, size);
    }
    if (type == 0 || (type == '0' && memcmp(h + 257, "ustar", 5) != 0)) {
        /* Before ustar, a trailing slash was how a header said "directory";
         * GNU tar and Go's archive/tar still read it so. */
        if (t->cur.name_len && t->str[t->cur.name_off + t->cur.name_len - 1] == '/') {
            t->cur.type = '5';
            t->cur.size = 0;
            type = '5';
        }
    }
    if (type == '0' || type == 0 || type == '7') {
        t->cur.type = '0';
        t->skip = pad512(size);
        if (t->sparse == 2) {
            /* PAX 1.0: the map is at the start of the data, in 512-byte blocks. */
            t->meta_kind = '1';
            t->meta_len = 0;
            t->data_left = size;
            t->state = ST_SPARSE_MAP;
            return 0;
        }
        return start_file(t, size);
    }
    if (type == 'D')
        t->cur.type = '5';
    if (emit(t, &t->cur))
        return -1;
    reset_local(t);
    /* Other members carry no data we keep (a dumpdir list, say). */
    t->skip = size + pad512(size);
    t->state = ST_SKIP;
    return 0;
}

static int on_meta(oe_tar *t)
{
    int rc = 0;
    if (t->meta_kind != 'g')
        t->described = 1;
    switch (t->meta_kind) {
    case 'x':
        rc = parse_pax(t, t->meta, t->meta_len, 0);
        break;
    case 'g':
        rc = parse_pax(t, t->meta, t->meta_len, 1);
        break;
    case 'L':
        rc = set_bytes(t, &t->path, &t->path_len, &t->path_cap, t->meta, field_len(t->meta, t->meta_len));
        t->has_path = 1;
        break;
    case 'K':
        rc = set_bytes(t, &t->link, &t->link_len, &t->link_cap, t->meta, field_len(t->meta, t->meta_len));
        t->has_link = 1;
        break;
    }
    t->state = ST_SKIP;
    return rc;
}

/* The next newline-terminated decimal of the buffered map: 1 read, 0 more
 * input needed, -1 malformed. */
static int map_number(oe_tar *t, uint64_t *i, uint64_t *v)
{
    uint64_t j = *i;
    while (j < t->meta_len && t->meta[j] != '\n')
        j++;
    if (j >= t->meta_len)
        return 0;
    if (parse_decimal(t->meta + *i, j - *i, v))
        return fail(t, "bad PAX sparse map");
    *i = j + 1;
    return 1;
}

/* Reads the PAX 1.0 sparse map from the buffered start of the data: 1 and
 * the bytes it takes (padded to 512) when complete, 0 when more is needed. */
static int try_sparse_map(oe_tar *t, uint64_t *used)
{
    uint64_t i = 0, count, k, off = 0, len;
    int rc;

    t->n_segs = 0;
    if ((rc = map_number(t, &i, &count)) <= 0)
        return rc;
    if (count > t->lim.max_meta / 16)
        return fail(t, "sparse map over the limit");
    for (k = 0; k < 2 * count; k++) {
        if ((rc = map_number(t, &i, k % 2 ? &len : &off)) <= 0)
            return rc;
        if (k % 2 && add_seg(t, off, len))
            return -1;
    }
    *used = i + pad512(i);
    return *used <= t->meta_len;
}

int oe_tar_feed(oe_tar *t, const uint8_t *buf, uint64_t len)
{
    while (len) {
        uint64_t n;
        switch (t->state) {
        case ST_HEADER:
        case ST_GNU_SPARSE:
            n = 512 - t->hdr_fill < len ? 512 - t->hdr_fill : len;
            if (t->state == ST_HEADER && t->hdr_fill == 0)
                t->member = t->pos;
            memcpy(t->hdr + t->hdr_fill, buf, n);
            t->hdr_fill += (uint32_t)n;
            buf += n;
            len -= n;
            t->pos += n;
            if (t->hdr_fill < 512)
                break;
            t->hdr_fill = 0;
            if (t->state == ST_HEADER) {
                if (on_header(t))
                    return -1;
            } else {
                /* A GNU sparse extension block: 21 more map entries. */
                if (read_gnu_sparse(t, t->hdr, 21))
                    return -1;
                if (!t->hdr[504]) {
                    t->skip = pad512(t->data_left);
                    if (start_file(t, t->data_left))
                        return -1;
                }
            }
            break;
        case ST_META:
            n = t->meta_need - t->meta_len < len ? t->meta_need - t->meta_len : len;
            memcpy(t->meta + t->meta_len, buf, n);
            t->meta_len += n;
            buf += n;
            len -= n;
            t->pos += n;
            if (t->meta_len == t->meta_need && on_meta(t))
                return -1;
            break;
        case ST_SPARSE_MAP: {
            uint64_t used = 0;
            int rc;
            n = len < 512 ? len : 512;
            if (n > t->data_left - t->meta_len)
                n = t->data_left - t->meta_len;
            if (n == 0 || t->meta_len + n > t->lim.max_meta)
                return fail(t, "sparse map over the limit or past the member");
            if (grow(t, (void **)&t->meta, &t->meta_cap, t->meta_len + n, 1))
                return -1;
            memcpy(t->meta + t->meta_len, buf, n);
            t->meta_len += n;
            buf += n;
            len -= n;
            t->pos += n;
            rc = try_sparse_map(t, &used);
            if (rc < 0)
                return -1;
            if (rc == 1) {
                /* Everything buffered past the padded map is file data. */
                if (start_file(t, t->data_left - used))
                    return -1;
                if (t->meta_len > used) {
                    /* The bytes read past the map are file data: feed them
                     * again, from a copy since feeding may reuse t->meta. */
                    uint8_t again[512];
                    uint64_t extra = t->meta_len - used;
                    memcpy(again, t->meta + used, extra);
                    t->pos -= extra;
                    if (oe_tar_feed(t, again, extra))
                        return -1;
                }
            }
            break;
        }
        case ST_DATA:
            while (len && t->data_left) {
                uint64_t off, room;
                if (t->sparse) {
                    while (t->seg_i < t->n_segs && t->seg_pos == t->segs[t->seg_i].len) {
                        t->seg_i++;
                        t->seg_pos = 0;
                    }
                    off = t->segs[t->seg_i].off + t->seg_pos;
                    room = t->segs[t->seg_i].len - t->seg_pos;
                } else {
                    off = t->cur.size - t->data_left;
                    room = t->data_left;
                }
                n = room < len ? room : len;
                if (oe_file_write(t->w, off, buf, n))
                    return writer_fail(t);
                t->seg_pos += n;
                t->data_left -= n;
                buf += n;
                len -= n;
                t->pos += n;
            }
            if (!t->data_left) {
                if (finish_file(t))
                    return -1;
                t->state = ST_SKIP;
            }
            break;
        case ST_SKIP:
            n = t->skip < len ? t->skip : len;
            t->skip -= n;
            buf += n;
            len -= n;
            t->pos += n;
            if (!t->skip)
                t->state = ST_HEADER;
            break;
        case ST_END:
            /* Blocking padding after the end marker. */
            t->pos += len;
            len = 0;
            break;
        }
    }
    /* A member with no data finishes without more input. */
    if (t->state == ST_DATA && !t->data_left) {
        if (finish_file(t))
            return -1;
        t->state = ST_SKIP;
    }
    if (t->state == ST_SKIP && !t->skip)
        t->state = ST_HEADER;
    return 0;
}

int oe_tar_finish(oe_tar *t)
{
    t->member = t->pos;
    if (t->described && t->state == ST_HEADER && t->hdr_fill == 0)
        return fail(t, "%s", orphan);
    if (t->state == ST_END || (t->state == ST_HEADER && t->hdr_fill == 0 && t->zero_blocks))
        return 0;
    if (t->state == ST_HEADER && t->hdr_fill == 0)
        return 0; /* no end marker: many writers omit it */
    return fail(t, "archive is truncated");
}
