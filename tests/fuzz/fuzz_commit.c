/* libFuzzer harness for oe_commit, the writer's other entry point: whatever
 * inode, dirent and blob arrays arrive over the cffi boundary, the C side
 * must check them and fail cleanly, never read or write out of bounds.
 * A few fields are clamped only so that one run stays small and quick. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "writer.h"

#define MAX_INODES 32
#define MAX_DIRENTS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    oe_open_params op = {.max_blocks = 1u << 16};
    oe_commit_params cp;
    oe_commit_result res;
    oe_inode inodes[MAX_INODES];
    oe_dirent dirents[MAX_DIRENTS];
    uint32_t n_inodes, n_dirents, i;
    int64_t handle = -1;
    FILE *f;
    oe_writer *w;

    if (size < 4)
        return 0;
    n_inodes = 1 + data[0] % MAX_INODES;
    n_dirents = data[1] % MAX_DIRENTS;
    memset(&cp, 0, sizeof cp);
    cp.journal_blocks = data[2] & 1 ? 1024 : 0;
    cp.min_inodes = data[3];
    cp.log_groups_per_flex = 4;
    data += 4;
    size -= 4;
    memset(inodes, 0, sizeof inodes);
    memset(dirents, 0, sizeof dirents);
    for (i = 0; i < n_inodes && size >= sizeof(oe_inode); i++) {
        memcpy(&inodes[i], data, sizeof(oe_inode));
        data += sizeof(oe_inode);
        size -= sizeof(oe_inode);
    }
    for (i = 0; i < n_dirents && size >= sizeof(oe_dirent); i++) {
        memcpy(&dirents[i], data, sizeof(oe_dirent));
        data += sizeof(oe_dirent);
        size -= sizeof(oe_dirent);
    }

    f = tmpfile();
    if (!f)
        abort();
    w = oe_open(fileno(f), &op, err, sizeof err);
    if (!w)
        abort();
    /* One real data handle for inodes that name one. */
    if (oe_file_begin(w, &handle) || oe_file_write(w, 0, "hello", 5) || oe_file_end(w))
        abort();
    for (i = 0; i < n_inodes; i++) {
        inodes[i].min_blocks %= 8;
        inodes[i].size %= 1ull << 40;
        /* A regular file's ref is a data handle: the one real one, or none.
         * Other kinds keep whatever ref the input gave (a blob offset, a
         * dirent index, device numbers): the commit must check those. */
        if ((inodes[i].mode & 0170000) == 0100000 && inodes[i].ref != OE_NO_FILE)
            inodes[i].ref = inodes[i].ref & 1 ? (uint64_t)handle : OE_NO_FILE;
    }
    if (oe_commit(w, &cp, inodes, n_inodes, dirents, n_dirents, data, size, &res) != 0 &&
        strlen(oe_error(w)) == 0)
        abort(); /* a failure must say why */
    oe_close(w);
    fclose(f);
    return 0;
}
