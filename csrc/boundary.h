/* The layout of the structures that cross the cffi boundary, as this C
 * compiler lays them out: one row per field.  Python checks its own view
 * of them (cffi's, and the struct formats it packs records with) against
 * this at import, so a field moved on one side only fails loudly instead
 * of corrupting images quietly. */
#ifndef OCIEXT4_BOUNDARY_H
#define OCIEXT4_BOUNDARY_H
#include <stdint.h>

typedef struct {
    const char *type;     /* the typedef name, e.g. "oe_inode" */
    const char *field;
    uint32_t offset;
    uint32_t size;
} oe_field_layout;

/* Every field of every structure in writer.h and tar.h, and each
 * structure's size as a row whose field is ""; *count rows. */
const oe_field_layout *oe_field_layouts(uint32_t *count);

#endif
