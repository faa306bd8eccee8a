/* What the ds-*.c files share and nobody else needs (dslib.h is the
 * library's interface). */
#ifndef LOOM_HOST_DS_INTERNAL_H
#define LOOM_HOST_DS_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "dslib.h"

/* The longest csv row the importer holds (a longer one is refused naming
 * its line: most likely an unclosed quote). */
#define DS_ROW_MAX ((size_t)64 << 20)
/* The most columns a table has (the manifest decoder's bound too). */
#define DS_COLS_MAX 4096
/* The longest column name of a LOOMARR1 header. */
#define DS_ARR_NAME_MAX 1024
/* Bytes per chunk in a manifest blob's table. */
#define DS_CHUNK_REC 48

/* Set *err (when err is not NULL) to a formatted message; returns code. */
int ds_fail(char **err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The Gear chunker's state, carried across the bytes of one chunk: the
 * cut search runs over positions [min, max) of the chunk, with the harder
 * mask below avg and the easier one above (FastCDC's normalization). */
typedef struct ds_cdc {
	uint64_t fp;
	uint64_t mask_s, mask_l;
	size_t min, avg, max;
} ds_cdc;

void ds_cdc_init(ds_cdc *c, const ds_params *p);
/* Bytes data[from, to) of a chunk (from, to relative to the chunk's
 * start; the caller passes every position from 0 up in order, in any
 * number of calls): the cut (the chunk's length by the byte rule) when
 * found in this range or forced at max, else 0.  Reset fp to 0 for the
 * next chunk. */
size_t ds_cdc_scan(ds_cdc *c, const uint8_t *chunk, size_t from, size_t to);

/* The element size of a format ("f32": 4, "f64": 8), 0 for csv, -1 for
 * anything else. */
int ds_format_elsize(const char *format);

/* Write a csv header line of the names (quoted where needed) into a
 * malloc'd string; NULL when out of memory. */
char *ds_csv_header(const ds_column *cols, size_t n, size_t *len);

#endif /* LOOM_HOST_DS_INTERNAL_H */
