/* libFuzzer harness for the streaming tar reader: any bytes, fed in chunks
 * whose sizes come from the input too, must give entries or a clean error,
 * never a crash, a leak or undefined behaviour (built with ASan + UBSan). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tar.h"
#include "writer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    oe_open_params op = {.max_blocks = 1u << 20};
    oe_tar_limits lim = {.max_meta = 1u << 16, .max_path = 4096};
    FILE *f = tmpfile();
    oe_writer *w;
    oe_tar *t;
    size_t pos = 0;
    uint32_t step;
    int rc = 0;

    if (!f)
        abort();
    w = oe_open(fileno(f), &op, err, sizeof err);
    if (!w)
        abort();
    t = oe_tar_new(w, &lim);
    if (!t)
        abort();
    /* The first byte picks the chunking: 1, 7, 512 or 513 bytes, or all. */
    step = size ? (uint32_t[]){1, 7, 512, 513, 1u << 30}[data[0] % 5] : 1;
    while (rc == 0 && pos < size) {
        size_t n = size - pos < step ? size - pos : step;
        rc = oe_tar_feed(t, data + pos, n);
        pos += n;
        if (rc == 0 && oe_tar_count(t)) {
            const oe_tar_entry *e = oe_tar_entries(t);
            uint64_t slen = oe_tar_strings_len(t);
            for (uint32_t i = 0; i < oe_tar_count(t); i++)
                if (e[i].name_off + e[i].name_len > slen || e[i].link_off + e[i].link_len > slen ||
                    e[i].xattr_off + e[i].xattr_len > slen)
                    abort(); /* an entry pointing outside its strings */
            oe_tar_clear(t);
        }
    }
    if (rc == 0)
        rc = oe_tar_finish(t);
    if (rc != 0 && strlen(oe_tar_error(t)) == 0)
        abort(); /* a failure must say why */
    oe_tar_free(t);
    oe_close(w);
    fclose(f);
    return 0;
}
