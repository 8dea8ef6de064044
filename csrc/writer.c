/* Opening, the block allocator and the streamed file data. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include "internal.h"
#include "verity_hooks.h"

/* After a failed data call the first error is the one worth reporting:
 * what follows it (a file left open, say) is only its consequence. */
int oe_fail(oe_writer *w, const char *fmt, ...)
{
    va_list ap;
    if (w->failed)
        return -1;
    va_start(ap, fmt);
    vsnprintf(w->err, sizeof w->err, fmt, ap);
    va_end(ap);
    w->err_no = 0;
    return -1;
}

/* "what: strerror(errnum)", keeping errnum for the caller. */
int oe_fail_errno(oe_writer *w, int errnum, const char *what)
{
    if (w->failed)
        return -1;
    oe_fail(w, "%s: %s", what, strerror(errnum));
    w->err_no = errnum;
    return -1;
}

const char *oe_error(const oe_writer *w) { return w->err; }
int oe_errno(const oe_writer *w) { return w->err_no; }
int oe_failed(const oe_writer *w) { return w->failed; }

/* The data calls' way out: a failure sticks. */
static int sticky(oe_writer *w, int rc)
{
    if (rc)
        w->failed = 1;
    return rc;
}

int oe_grow(oe_writer *w, void **arr, uint64_t *cap, uint64_t need, size_t elem)
{
    uint64_t ncap;
    void *p;

    if (need <= *cap)
        return 0;
    ncap = *cap ? *cap : 64;
    while (ncap < need) {
        if (ncap > (UINT64_MAX / 2) / elem)
            return oe_fail(w, "out of memory");
        ncap *= 2;
    }
    p = realloc(*arr, (size_t)(ncap * elem));
    if (!p)
        return oe_fail(w, "out of memory (%llu bytes)", (unsigned long long)(ncap * elem));
    *arr = p;
    *cap = ncap;
    return 0;
}

/* sparse_super: groups 0, 1 and powers of 3, 5 and 7 hold backups. */
int oe_is_backup_group(uint64_t g)
{
    static const uint64_t bases[3] = {3, 5, 7};
    int i;

    if (g <= 1)
        return 1;
    for (i = 0; i < 3; i++) {
        uint64_t p = bases[i];
        while (p < g)
            p *= bases[i];
        if (p == g)
            return 1;
    }
    return 0;
}

/* First block after the superblock and descriptor room of a backup group. */
uint64_t oe_reserved_end(const oe_writer *w, uint64_t group)
{
    return group * OE_BLOCKS_PER_GROUP + 1 + w->gdt_reserve;
}

oe_writer *oe_open(int fd, const oe_open_params *params, char *err, uint32_t errlen)
{
    oe_writer *w;
    uint64_t groups;
    struct stat st;

    if (params->max_blocks < 64 || params->max_blocks > (1ull << 32) * OE_BLOCKS_PER_GROUP / 64) {
        if (err && errlen)
            snprintf(err, errlen, "maximum image size out of range");
        return NULL;
    }
    w = calloc(1, sizeof *w);
    if (!w) {
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->fd = fd;
    if (fstat(fd, &st) == 0) {
        w->out_is_device = S_ISBLK(st.st_mode);
        /* A device node's st_dev is that of the file system holding the
         * node, not of the device: no in-kernel copies into it. */
        w->out_dev = w->out_is_device ? 0 : (uint64_t)st.st_dev;
    }
    w->max_blocks = params->max_blocks;
    groups = (params->max_blocks + OE_BLOCKS_PER_GROUP - 1) / OE_BLOCKS_PER_GROUP;
    w->gdt_reserve = (uint32_t)((groups * OE_DESC_SIZE + OE_BLOCK_SIZE - 1) / OE_BLOCK_SIZE);
    w->next = oe_reserved_end(w, 0);
    w->cur = -1;
    w->buf = malloc((size_t)OE_BUF_BLOCKS * OE_BLOCK_SIZE);
    if (!w->buf) {
        free(w);
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->buf_pblk = w->next;
    return w;
}

void oe_close(oe_writer *w)
{
    if (!w)
        return;
    free(w->buf);
    free(w->ext);
    free(w->files);
    free(w->runs);
    oe_verity_free(w->verity);
    free(w);
}

int oe_pwrite_all(oe_writer *w, const void *buf, uint64_t len, uint64_t off)
{
    const uint8_t *p = buf;
    /* With verity, pieces small enough that their hashing finds them still
     * in the cache. */
    uint64_t most = w->verity ? OE_VERITY_PIECE : (1u << 30);

    while (len) {
        ssize_t n = pwrite(w->fd, p, (size_t)(len > most ? most : len), (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return oe_fail_errno(w, errno, "writing the image");
        }
        if (n == 0)
            return oe_fail(w, "writing the image: short write");
        oe_verity_wrote(w, p, (uint64_t)n, off);
        p += n;
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    return 0;
}

int oe_flush(oe_writer *w)
{
    if (w->buf_blocks) {
        if (oe_pwrite_all(w, w->buf, w->buf_blocks * OE_BLOCK_SIZE, w->buf_pblk * OE_BLOCK_SIZE))
            return -1;
    }
    w->buf_pblk += w->buf_blocks;
    w->buf_blocks = 0;
    return 0;
}

static uint64_t next_reserved_start(uint64_t from)
{
    uint64_t g = from / OE_BLOCKS_PER_GROUP + 1;
    while (!oe_is_backup_group(g))
        g++;
    return g * OE_BLOCKS_PER_GROUP;
}

/* Where `want` blocks (at most) would go from `from`, stepping over the
 * backup superblock areas.  With `contiguous`, all of them or a jump past the
 * next backup area. */
int oe_place(const oe_writer *w, uint64_t from, uint64_t want, int contiguous,
             uint64_t *pblk, uint64_t *got)
{
    uint64_t p = from, g, limit;

    for (;;) {
        g = p / OE_BLOCKS_PER_GROUP;
        if (oe_is_backup_group(g) && p < oe_reserved_end(w, g))
            p = oe_reserved_end(w, g);
        limit = next_reserved_start(p);
        if (!contiguous || limit - p >= want)
            break;
        if (want > OE_BLOCKS_PER_GROUP - 1 - w->gdt_reserve)
            return -1;
        p = limit;
    }
    *pblk = p;
    *got = limit - p < want ? limit - p : want;
    return 0;
}

/* Takes blocks at the cursor without buffering them (they stay holes unless
 * written); metadata allocations are remembered for the bitmaps. */
int oe_reserve_blocks(oe_writer *w, uint64_t want, int contiguous, uint64_t *pblk, uint64_t *got)
{
    uint64_t p, n;

    if (oe_place(w, w->next, want, contiguous, &p, &n))
        return oe_fail(w, "cannot place %llu contiguous blocks", (unsigned long long)want);
    if (p + n > w->max_blocks)
        return oe_fail(w, "content needs more than the %llu blocks given",
                       (unsigned long long)w->max_blocks);
    w->next = p + n;
    if (w->meta_mode) {
        if (w->n_runs && w->runs[w->n_runs - 1].pblk + w->runs[w->n_runs - 1].len == p) {
            w->runs[w->n_runs - 1].len += n;
        } else {
            if (oe_grow(w, (void **)&w->runs, &w->cap_runs, w->n_runs + 1, sizeof *w->runs))
                return -1;
            w->runs[w->n_runs].pblk = p;
            w->runs[w->n_runs].len = n;
            w->n_runs++;
        }
    }
    *pblk = p;
    *got = n;
    return 0;
}

/* Like oe_reserve_blocks, but the blocks land in the output buffer, which is
 * flushed first when they would not fit or would not follow on. */
int oe_alloc_run(oe_writer *w, uint64_t want, int contiguous, uint64_t *pblk, uint64_t *got)
{
    uint64_t p, n;

    if (want > OE_BUF_BLOCKS)
        want = OE_BUF_BLOCKS;
    if (oe_place(w, w->next, want, contiguous, &p, &n))
        return oe_fail(w, "cannot place %llu contiguous blocks", (unsigned long long)want);
    if (w->buf_pblk + w->buf_blocks != p || w->buf_blocks + n > OE_BUF_BLOCKS) {
        if (oe_flush(w))
            return -1;
        w->buf_pblk = p;
    }
    if (oe_reserve_blocks(w, want, contiguous, pblk, got))
        return -1;
    w->buf_blocks += *got;
    return 0;
}

static uint8_t *buf_at(oe_writer *w, uint64_t pblk)
{
    return w->buf + (pblk - w->buf_pblk) * OE_BLOCK_SIZE;
}

int oe_emit_block(oe_writer *w, uint64_t *pblk, uint8_t **block)
{
    uint64_t got;
    if (oe_alloc_run(w, 1, 1, pblk, &got))
        return -1;
    *block = buf_at(w, *pblk);
    memset(*block, 0, OE_BLOCK_SIZE);
    return 0;
}

int oe_extents_append(oe_extent **arr, uint64_t *n, uint64_t *cap, uint64_t first, oe_writer *w,
                      uint32_t lblk, uint64_t pblk, uint64_t len)
{
    while (len) {
        oe_extent *last = *n > first ? &(*arr)[*n - 1] : NULL;
        uint64_t take;
        if (last && last->lblk + last->len == lblk && last->pblk + last->len == pblk &&
            last->len < OE_MAX_EXTENT_LEN) {
            take = OE_MAX_EXTENT_LEN - last->len;
            if (take > len)
                take = len;
            last->len += (uint32_t)take;
        } else {
            if (oe_grow(w, (void **)arr, cap, *n + 1, sizeof **arr))
                return -1;
            take = len > OE_MAX_EXTENT_LEN ? OE_MAX_EXTENT_LEN : len;
            (*arr)[*n].lblk = lblk;
            (*arr)[*n].pblk = pblk;
            (*arr)[*n].len = (uint32_t)take;
            (*n)++;
        }
        lblk += (uint32_t)take;
        pblk += take;
        len -= take;
    }
    return 0;
}

static int do_file_begin(oe_writer *w, int64_t *handle)
{
    oe_file *f;

    if (w->cur >= 0)
        return oe_fail(w, "a file is already open");
    if (oe_grow(w, (void **)&w->files, &w->cap_files, w->n_files + 1, sizeof *w->files))
        return -1;
    f = &w->files[w->n_files];
    memset(f, 0, sizeof *f);
    f->at = w->n_ext;
    f->open = 1;
    w->cur = (int64_t)w->n_files;
    w->cur_pos = 0;
    *handle = w->cur;
    w->n_files++;
    return 0;
}

/* Adds blocks to the open file, merging them with its last extent as
 * oe_extents_append does, so the extents are the same wherever they are
 * kept.  A first extent from block 0 stays in the record; a second one moves
 * it to oe_writer.ext, where the open file's extents are always the last. */
static int file_append(oe_writer *w, uint32_t lblk, uint64_t pblk, uint64_t len)
{
    oe_file *f = &w->files[w->cur];

    if (f->one) {
        if (lblk == f->count && f->at + f->count == pblk && len <= OE_MAX_EXTENT_LEN - f->count) {
            f->count += (uint32_t)len;
            return 0;
        }
        f->one = 0;
        if (oe_extents_append(&w->ext, &w->n_ext, &w->cap_ext, w->n_ext, w, 0, f->at, f->count))
            return -1;
        f->at = w->n_ext - 1;
    } else if (f->count == 0 && lblk == 0 && len <= OE_MAX_EXTENT_LEN) {
        f->one = 1;
        f->at = pblk;
        f->count = (uint32_t)len;
        return 0;
    }
    if (oe_extents_append(&w->ext, &w->n_ext, &w->cap_ext, f->at, w, lblk, pblk, len))
        return -1;
    if (w->n_ext - f->at > UINT32_MAX)
        return oe_fail(w, "a file of more than %u extents", (unsigned)UINT32_MAX);
    f->count = (uint32_t)(w->n_ext - f->at);
    return 0;
}

/* Where byte `pos` of the open file sits in the output buffer, if its block
 * is already allocated; *room says how many bytes follow it there. */
static uint8_t *tail_block(oe_writer *w, oe_file *f, uint64_t pos, uint64_t *room)
{
    oe_extent tmp;
    const oe_extent *e;
    uint32_t count;
    uint64_t lblk = pos / OE_BLOCK_SIZE, pblk, end;

    e = oe_file_extents(w, f, &tmp, &count);
    if (!count)
        return NULL;
    e += count - 1;
    if (lblk < e->lblk || lblk >= (uint64_t)e->lblk + e->len)
        return NULL;
    pblk = e->pblk + (lblk - e->lblk);
    end = e->pblk + e->len;
    if (pblk < w->buf_pblk || end > w->buf_pblk + w->buf_blocks)
        return NULL;
    if (room)
        *room = (end - pblk) * OE_BLOCK_SIZE - pos % OE_BLOCK_SIZE;
    return buf_at(w, pblk);
}

/* Moves the open file to `offset`, leaving a hole; zeroes what lies between
 * inside an already allocated block. */
static int seek_to(oe_writer *w, oe_file *f, uint64_t offset)
{
    uint64_t room = 0;
    uint8_t *b;

    if (offset < w->cur_pos)
        return oe_fail(w, "file data out of order");
    if (offset == w->cur_pos)
        return 0;
    /* Allocated bytes that the jump passes over must read as zeros. */
    b = tail_block(w, f, w->cur_pos, &room);
    if (b) {
        uint64_t gap = offset - w->cur_pos;
        memset(b + w->cur_pos % OE_BLOCK_SIZE, 0, (size_t)(gap < room ? gap : room));
    }
    w->cur_pos = offset;
    return 0;
}

/* Gives a pointer to where the next `*len` (at most) bytes of the open file
 * go, allocating blocks as needed. */
static int reserve(oe_writer *w, oe_file *f, uint8_t **dst, uint64_t *len)
{
    uint64_t pos = w->cur_pos, in = pos % OE_BLOCK_SIZE, lblk = pos / OE_BLOCK_SIZE;
    uint64_t pblk, got, want, room = 0;
    uint8_t *b = tail_block(w, f, pos, &room);

    if (b) {
        if (*len > room)
            *len = room;
        *dst = b + in;
        return 0;
    }
    if (lblk >= (1ull << 32))
        return oe_fail(w, "file larger than 16 TiB");
    want = (in + *len + OE_BLOCK_SIZE - 1) / OE_BLOCK_SIZE;
    if (oe_alloc_run(w, want, 0, &pblk, &got))
        return -1;
    if (file_append(w, (uint32_t)lblk, pblk, got))
        return -1;
    b = buf_at(w, pblk);
    if (in)
        memset(b, 0, in);
    if (*len > got * OE_BLOCK_SIZE - in)
        *len = got * OE_BLOCK_SIZE - in;
    *dst = b + in;
    return 0;
}

static oe_file *open_file(oe_writer *w)
{
    if (w->cur < 0) {
        oe_fail(w, "no file is open");
        return NULL;
    }
    return &w->files[w->cur];
}

/* Whole blocks of a long piece go from the caller's memory to the image in
 * one pwrite: copying them through the output buffer first costs a memcpy of
 * every byte.  Only whole blocks, so no later write lands in them. */
static int write_direct(oe_writer *w, const uint8_t *src, uint64_t len, uint64_t *done)
{
    uint64_t want = len / OE_BLOCK_SIZE, p, n;

    if (want > OE_MAX_EXTENT_LEN)
        want = OE_MAX_EXTENT_LEN;
    if (w->cur_pos / OE_BLOCK_SIZE + want > (1ull << 32))
        return oe_fail(w, "file larger than 16 TiB");
    if (oe_flush(w) || oe_reserve_blocks(w, want, 0, &p, &n))
        return -1;
    w->buf_pblk = w->next;
    if (oe_pwrite_all(w, src, n * OE_BLOCK_SIZE, p * OE_BLOCK_SIZE))
        return -1;
    if (file_append(w, (uint32_t)(w->cur_pos / OE_BLOCK_SIZE), p, n))
        return -1;
    *done = n * OE_BLOCK_SIZE;
    return 0;
}

static int do_file_write(oe_writer *w, uint64_t offset, const void *buf, uint64_t len)
{
    const uint8_t *src = buf;
    oe_file *f = open_file(w);

    if (!f || seek_to(w, f, offset))
        return -1;
    while (len) {
        uint8_t *dst;
        uint64_t n = len, in = w->cur_pos % OE_BLOCK_SIZE;
        if (in == 0 && len >= OE_DIRECT_MIN && !tail_block(w, f, w->cur_pos, NULL)) {
            if (write_direct(w, src, len, &n))
                return -1;
            f = &w->files[w->cur];
        } else {
            /* Up to the next block boundary only, when a long run follows it. */
            if (in && len > OE_BLOCK_SIZE - in && len - (OE_BLOCK_SIZE - in) >= OE_DIRECT_MIN)
                n = OE_BLOCK_SIZE - in;
            if (reserve(w, f, &dst, &n))
                return -1;
            f = &w->files[w->cur];
            memcpy(dst, src, (size_t)n);
        }
        src += n;
        len -= n;
        w->cur_pos += n;
    }
    return 0;
}

/* Large aligned pieces go file to file inside the kernel: one copy instead
 * of a read and a write.  Returns 1, having changed nothing, when the kernel
 * cannot do that for these two files. */
static int copy_direct(oe_writer *w, int fd, uint64_t len)
{
    int first = 1;

    while (len) {
        uint64_t want = (len + OE_BLOCK_SIZE - 1) / OE_BLOCK_SIZE, p, n, done = 0, room;
        if (want > OE_MAX_EXTENT_LEN)
            want = OE_MAX_EXTENT_LEN;
        if (oe_flush(w) || oe_reserve_blocks(w, want, 0, &p, &n))
            return -1;
        w->buf_pblk = w->next;
        room = n * OE_BLOCK_SIZE < len ? n * OE_BLOCK_SIZE : len;
        while (done < room) {
            loff_t src = (loff_t)(w->cur_pos + done), dst = (loff_t)(p * OE_BLOCK_SIZE + done);
            ssize_t r = copy_file_range(fd, &src, w->fd, &dst, (size_t)(room - done), 0);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0 && first && done == 0 &&
                (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP ||
                 errno == EBADF)) {
                w->next = p;
                w->buf_pblk = p;
                return 1;
            }
            if (r < 0)
                return oe_fail_errno(w, errno, "copying source file");
            if (r == 0)
                return oe_fail(w, "source file shrank while being read");
            done += (uint64_t)r;
            first = 0;
        }
        oe_verity_unseen(w, p, n);
        if (file_append(w, (uint32_t)(w->cur_pos / OE_BLOCK_SIZE), p, n))
            return -1;
        w->cur_pos += done;
        len -= done;
    }
    return 0;
}

static int copy_range(oe_writer *w, int fd, uint64_t off, uint64_t len, int to_eof, int direct)
{
    oe_file *f = &w->files[w->cur];

    if (seek_to(w, f, off))
        return -1;
    /* Only within one file system (elsewhere the kernel's copy is slower
     * than ours), and only where no later write can land in a block copied
     * this way: the piece starts on a block and ends on one or at EOF. */
    if (direct && len >= (256u << 10) && off % OE_BLOCK_SIZE == 0 &&
        (to_eof || len % OE_BLOCK_SIZE == 0)) {
        int rc = copy_direct(w, fd, len);
        if (rc <= 0)
            return rc;
        f = &w->files[w->cur];
    }
    while (len) {
        uint8_t *dst;
        uint64_t n = len;
        ssize_t r;
        if (reserve(w, f, &dst, &n))
            return -1;
        f = &w->files[w->cur];
        r = pread(fd, dst, (size_t)n, (off_t)w->cur_pos);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return oe_fail_errno(w, errno, "reading source file");
        }
        if (r == 0)
            return oe_fail(w, "source file shrank while being read");
        len -= (uint64_t)r;
        w->cur_pos += (uint64_t)r;
    }
    return 0;
}

static int do_file_copy_fd(oe_writer *w, int fd, uint64_t size)
{
    oe_file *f = open_file(w);
    uint64_t pos = 0;
    struct stat st;
    int direct;

    if (!f)
        return -1;
    direct = fstat(fd, &st) == 0 && w->out_dev && (uint64_t)st.st_dev == w->out_dev;
    if (w->cur_pos)
        return oe_fail(w, "copy_fd needs a fresh file");
    while (pos < size) {
        off_t data = lseek(fd, (off_t)pos, SEEK_DATA), hole;
        if (data < 0) {
            if (errno == ENXIO)
                break; /* only a hole remains */
            if (errno == EINVAL || errno == EOPNOTSUPP) {
                data = (off_t)pos; /* no hole support: copy all */
                hole = (off_t)size;
            } else {
                return oe_fail_errno(w, errno, "reading source file");
            }
        } else {
            hole = lseek(fd, data, SEEK_HOLE);
            if (hole < 0)
                hole = (off_t)size;
        }
        if ((uint64_t)data >= size)
            break;
        if ((uint64_t)hole > size)
            hole = (off_t)size;
        if (copy_range(w, fd, (uint64_t)data, (uint64_t)(hole - data), (uint64_t)hole >= size, direct))
            return -1;
        pos = (uint64_t)hole;
    }
    return 0;
}

static int do_file_end(oe_writer *w)
{
    oe_file *f = open_file(w);
    uint64_t in;
    uint8_t *b;

    if (!f)
        return -1;
    in = w->cur_pos % OE_BLOCK_SIZE;
    b = in ? tail_block(w, f, w->cur_pos, NULL) : NULL;
    if (b)
        memset(b + in, 0, OE_BLOCK_SIZE - in);
    f->open = 0;
    w->cur = -1;
    return 0;
}

static int do_file_discard(oe_writer *w, int64_t handle)
{
    if (handle < 0 || (uint64_t)handle >= w->n_files)
        return oe_fail(w, "bad file handle %lld", (long long)handle);
    if (w->files[handle].open)
        return oe_fail(w, "cannot discard an open file");
    w->files[handle].discarded = 1;
    return 0;
}

uint64_t oe_data_blocks(const oe_writer *w)
{
    return w->next;
}

int oe_file_begin(oe_writer *w, int64_t *handle)
{
    if (w->failed)
        return -1;
    return sticky(w, do_file_begin(w, handle));
}

int oe_file_write(oe_writer *w, uint64_t offset, const void *buf, uint64_t len)
{
    if (w->failed)
        return -1;
    return sticky(w, do_file_write(w, offset, buf, len));
}

int oe_file_copy_fd(oe_writer *w, int fd, uint64_t size)
{
    if (w->failed)
        return -1;
    return sticky(w, do_file_copy_fd(w, fd, size));
}

int oe_file_end(oe_writer *w)
{
    if (w->failed)
        return -1;
    return sticky(w, do_file_end(w));
}

int oe_file_discard(oe_writer *w, int64_t handle)
{
    if (w->failed)
        return -1;
    return sticky(w, do_file_discard(w, handle));
}
