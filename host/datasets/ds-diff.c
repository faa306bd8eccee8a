/* Diff (dslib.h): two versions' chunk lists aligned by hash.  The common
 * prefix and suffix go first (an unchanged version or an append never
 * reaches the rest), then Myers' O(ND) greedy alignment over the middle,
 * bounded at D = 4096; past that, one coarse changed hunk. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <loom/error.h>

#include "ds-internal.h"
#include "dslib.h"

#define D_BOUND 4096

static inline bool
heq(const ds_hash *x, const ds_hash *y)
{
	uint64_t a[4], b[4];

	memcpy(a, x->b, 32);
	memcpy(b, y->b, 32);
	return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3])) == 0;
}

/* ------------------------------------------------------------------ columns */

static int
col_cmp(const void *x, const void *y)
{
	return strcmp((*(const ds_column *const *)x)->name, (*(const ds_column *const *)y)->name);
}

static int
push(char ***v, size_t *n, const char *s)
{
	char **t = realloc(*v, (*n + 1) * sizeof(char *));

	if (t == NULL)
		return LOOM_ENOMEM;
	*v = t;
	if ((t[*n] = strdup(s)) == NULL)
		return LOOM_ENOMEM;
	(*n)++;
	return 0;
}

static int
diff_columns(const ds_manifest *a, const ds_manifest *b, ds_diff *d, bool *same)
{
	const ds_column **va = malloc((a->n_columns + 1) * sizeof(*va));
	const ds_column **vb = malloc((b->n_columns + 1) * sizeof(*vb));
	size_t i = 0, j = 0;
	int rv = 0;

	if (va == NULL || vb == NULL) {
		rv = LOOM_ENOMEM;
		goto out;
	}
	*same = a->n_columns == b->n_columns;
	for (size_t k = 0; k < a->n_columns && *same; k++)
		*same = strcmp(a->columns[k].name, b->columns[k].name) == 0 &&
		        a->columns[k].type == b->columns[k].type;
	for (size_t k = 0; k < a->n_columns; k++)
		va[k] = &a->columns[k];
	for (size_t k = 0; k < b->n_columns; k++)
		vb[k] = &b->columns[k];
	qsort(va, a->n_columns, sizeof(*va), col_cmp);
	qsort(vb, b->n_columns, sizeof(*vb), col_cmp);
	while (rv == 0 && (i < a->n_columns || j < b->n_columns)) {
		int c = i == a->n_columns ? 1 : j == b->n_columns ? -1 : strcmp(va[i]->name, vb[j]->name);

		if (c < 0) {
			rv = push(&d->cols_removed, &d->n_cols_removed, va[i++]->name);
		} else if (c > 0) {
			rv = push(&d->cols_added, &d->n_cols_added, vb[j++]->name);
		} else {
			if (va[i]->type != vb[j]->type)
				rv = push(&d->cols_changed, &d->n_cols_changed, va[i]->name);
			i++;
			j++;
		}
	}
out:
	free(va);
	free(vb);
	return rv;
}

/* ------------------------------------------------------------------ alignment */

/* Myers' greedy algorithm over A[0,n) and B[0,m): marks the chunks of A
 * deleted (da) and of B inserted (ib); 1 when the edit distance passes the
 * bound (nothing marked). */
static int
myers(const ds_chunk *A, size_t n, const ds_chunk *B, size_t m, uint8_t *da, uint8_t *ib)
{
	size_t max = n + m < D_BOUND ? n + m : D_BOUND;
	int32_t *v, *trace = NULL;
	size_t tn = 0, tcap = 0, D = 0;
	int32_t off = (int32_t)max + 1;
	bool done = false;
	int rv = 1;

	if (n > INT32_MAX / 2 || m > INT32_MAX / 2)
		return 1;
	if ((v = calloc(2 * max + 3, sizeof(*v))) == NULL)
		return -1;
	for (size_t d = 0; d <= max && !done; d++) {
		int32_t dd = (int32_t)d;

		for (int32_t k = -dd; k <= dd; k += 2) {
			int32_t x, y;

			if (k == -dd || (k != dd && v[off + k - 1] < v[off + k + 1]))
				x = v[off + k + 1];
			else
				x = v[off + k - 1] + 1;
			y = x - k;
			while ((size_t)x < n && (size_t)y < m && heq(&A[x].hash, &B[y].hash)) {
				x++;
				y++;
			}
			v[off + k] = x;
			if ((size_t)x >= n && (size_t)y >= m) {
				done = true;
				D = d;
			}
		}
		/* keep v[-d..d] of this round for the way back */
		if (tn + 2 * d + 1 > tcap) {
			size_t nc = tcap ? tcap * 2 : 1024;
			int32_t *t;

			while (nc < tn + 2 * d + 1)
				nc *= 2;
			if ((t = realloc(trace, nc * sizeof(*t))) == NULL) {
				rv = -1;
				goto out;
			}
			trace = t;
			tcap = nc;
		}
		memcpy(trace + tn, v + off - dd, (2 * d + 1) * sizeof(*v));
		tn += 2 * d + 1;
	}
	if (!done)
		goto out;
	/* back from (n, m): round d's entries start at d*d in trace */
	{
		int32_t x = (int32_t)n, y = (int32_t)m;

		for (size_t d = D; d > 0; d--) {
			int32_t dd = (int32_t)d, k = x - y, pk, px, py;
			const int32_t *pv = trace + (d - 1) * (d - 1) + (d - 1); /* index 0 = k 0 */

			if (k == -dd || (k != dd && pv[k - 1] < pv[k + 1]))
				pk = k + 1; /* came down: B[py] inserted */
			else
				pk = k - 1; /* came right: A[px] deleted */
			px = pv[pk];
			py = px - pk;
			if (pk == k + 1)
				ib[py] = 1;
			else
				da[px] = 1;
			x = px;
			y = py;
		}
	}
	rv = 0;
out:
	free(v);
	free(trace);
	return rv;
}

/* ------------------------------------------------------------------ hash set */

/* A set of b's edited chunks (few, usually): a is scanned once against
 * it, so a large a costs one pass and no table of its own. */
struct hset {
	uint64_t *key; /* the hash's first 8 bytes, 0 in an empty slot's idx */
	size_t *idx;   /* 1 + the chunk's index in b, 0: empty */
	bool *in_a;
	size_t mask;
};

static int
hset_init(struct hset *s, size_t n)
{
	size_t cap = 16;

	while (cap < 2 * n + 2)
		cap *= 2;
	s->mask = cap - 1;
	s->key = calloc(cap, sizeof(*s->key));
	s->idx = calloc(cap, sizeof(*s->idx));
	s->in_a = calloc(cap, sizeof(*s->in_a));
	return s->key == NULL || s->idx == NULL || s->in_a == NULL ? LOOM_ENOMEM : 0;
}

static void
hset_free(struct hset *s)
{
	free(s->key);
	free(s->idx);
	free(s->in_a);
}

/* The slot of h: where it is, or the empty one where it would go. */
static size_t
hset_slot(const struct hset *s, const ds_chunk *b, const ds_hash *h)
{
	uint64_t k;

	memcpy(&k, h->b, 8);
	for (size_t i = k & s->mask;; i = (i + 1) & s->mask)
		if (s->idx[i] == 0 || (s->key[i] == k && heq(&b[s->idx[i] - 1].hash, h)))
			return i;
}

/* ------------------------------------------------------------------ hunks */

static int
add_hunk(ds_diff *d, size_t *cap, const ds_hunk *h)
{
	if (d->n_hunks == *cap) {
		size_t n = *cap ? *cap * 2 : 16;
		ds_hunk *t = realloc(d->hunks, n * sizeof(*t));

		if (t == NULL)
			return LOOM_ENOMEM;
		d->hunks = t;
		*cap = n;
	}
	d->hunks[d->n_hunks++] = *h;
	if (h->a_chunks > 0 && h->b_chunks > 0) {
		uint64_t c = h->a_rows < h->b_rows ? h->a_rows : h->b_rows;

		d->rows_changed += c;
		d->rows_added += h->b_rows - c;
		d->rows_removed += h->a_rows - c;
	} else {
		d->rows_added += h->b_rows;
		d->rows_removed += h->a_rows;
	}
	return 0;
}

int
ds_diff_compute(const ds_manifest *a, const ds_manifest *b, ds_diff *out)
{
	size_t na = a->n_chunks, nb = b->n_chunks, lo = 0, hi = 0, mn = na < nb ? na : nb;
	size_t hcap = 0, i, j, ma, mb;
	uint8_t *da = NULL, *ib = NULL;
	uint64_t ar = 0, br = 0;
	bool same_cols;
	int rv;

	memset(out, 0, sizeof(*out));
	if ((rv = diff_columns(a, b, out, &same_cols)) != 0)
		goto fail;
	while (lo < mn && heq(&a->chunks[lo].hash, &b->chunks[lo].hash))
		lo++;
	while (hi < mn - lo && heq(&a->chunks[na - 1 - hi].hash, &b->chunks[nb - 1 - hi].hash))
		hi++;
	out->same = same_cols && na == nb && lo == na;
	ma = na - lo - hi;
	mb = nb - lo - hi;
	/* which middle chunks are edits: all of them unless aligned */
	if ((da = malloc(ma + 1)) == NULL || (ib = malloc(mb + 1)) == NULL) {
		rv = LOOM_ENOMEM;
		goto fail;
	}
	memset(da, 0, ma + 1);
	memset(ib, 0, mb + 1);
	if (ma > 0 && mb > 0) {
		int r = myers(a->chunks + lo, ma, b->chunks + lo, mb, da, ib);

		if (r < 0) {
			rv = LOOM_ENOMEM;
			goto fail;
		}
		if (r > 0)
			out->coarse = true;
	}
	if (out->coarse || ma == 0 || mb == 0) {
		memset(da, 1, ma);
		memset(ib, 1, mb);
	}
	/* walk both lists: kept chunks pair up in order, the edits between
	 * two kept pairs make one hunk */
	i = j = 0;
	while (i < na || j < nb) {
		bool ea = i >= lo && i < lo + ma && da[i - lo];
		bool eb = j >= lo && j < lo + mb && ib[j - lo];

		if (!ea && !eb && i < na && j < nb) {
			out->rows_same += a->chunks[i].rows;
			out->chunks_same++;
			ar += a->chunks[i++].rows;
			br += b->chunks[j++].rows;
			continue;
		}
		ds_hunk h = {0};

		h.a_row = ar;
		h.b_row = br;
		h.a_chunk = i;
		h.b_chunk = j;
		while (i < na && i >= lo && i < lo + ma && da[i - lo]) {
			h.a_rows += a->chunks[i].rows;
			h.a_chunks++;
			i++;
		}
		while (j < nb && j >= lo && j < lo + mb && ib[j - lo]) {
			h.b_rows += b->chunks[j].rows;
			h.b_chunks++;
			j++;
		}
		if (h.a_chunks == 0 && h.b_chunks == 0) {
			rv = LOOM_EINTERNAL; /* the lists did not pair up */
			goto fail;
		}
		h.op = h.a_chunks == 0 ? DS_ADDED : h.b_chunks == 0 ? DS_REMOVED : DS_CHANGED;
		ar += h.a_rows;
		br += h.b_rows;
		if ((rv = add_hunk(out, &hcap, &h)) != 0)
			goto fail;
	}
	/* new bytes: b's edited chunks whose hash a does not hold (each
	 * distinct hash counted once) */
	if (mb > 0) {
		struct hset s;
		const ds_chunk *bc = b->chunks;

		if ((rv = hset_init(&s, mb)) != 0) {
			hset_free(&s);
			goto fail;
		}
		for (size_t k = lo; k < lo + mb; k++) {
			size_t at;

			if (!ib[k - lo])
				continue;
			at = hset_slot(&s, bc, &bc[k].hash);
			if (s.idx[at] == 0) {
				memcpy(&s.key[at], bc[k].hash.b, 8);
				s.idx[at] = k + 1;
			}
		}
		for (size_t k = 0; k < na; k++) {
			size_t at = hset_slot(&s, bc, &a->chunks[k].hash);

			if (s.idx[at] != 0)
				s.in_a[at] = true;
		}
		for (size_t at = 0; at <= s.mask; at++)
			if (s.idx[at] != 0 && !s.in_a[at])
				out->bytes_new += bc[s.idx[at] - 1].stored;
		hset_free(&s);
	}
	free(da);
	free(ib);
	return 0;
fail:
	free(da);
	free(ib);
	ds_diff_free(out);
	return rv;
}

static void
free_names(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void
ds_diff_free(ds_diff *d)
{
	if (d == NULL)
		return;
	free_names(d->cols_added, d->n_cols_added);
	free_names(d->cols_removed, d->n_cols_removed);
	free_names(d->cols_changed, d->n_cols_changed);
	free(d->hunks);
	memset(d, 0, sizeof(*d));
}

void
ds_diff_unchanged(uint64_t rows, uint64_t n_chunks, ds_diff *out)
{
	memset(out, 0, sizeof(*out));
	out->same = true;
	out->rows_same = rows;
	out->chunks_same = n_chunks;
}

static json_t *
names_json(char **v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n && a != NULL; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

static json_t *
side_json(uint64_t row, uint64_t rows, size_t chunk, size_t chunks)
{
	return json_pack("{s:I,s:I,s:I,s:I}", "row", (json_int_t)row, "rows", (json_int_t)rows,
	                 "chunk", (json_int_t)chunk, "chunks", (json_int_t)chunks);
}

json_t *
ds_diff_json(const ds_diff *d, size_t max_hunks)
{
	static const char *const ops[] = {"", "added", "removed", "changed"};
	json_t *hunks = json_array(), *o;

	for (size_t i = 0; i < d->n_hunks && i < max_hunks && hunks != NULL; i++) {
		const ds_hunk *h = &d->hunks[i];

		json_array_append_new(
		    hunks, json_pack("{s:s,s:o,s:o}", "op", ops[h->op >= 1 && h->op <= 3 ? h->op : 0],
		                     "a", side_json(h->a_row, h->a_rows, h->a_chunk, h->a_chunks), "b",
		                     side_json(h->b_row, h->b_rows, h->b_chunk, h->b_chunks)));
	}
	o = json_pack("{s:b,s:{s:o,s:o,s:o},s:{s:I,s:I,s:I,s:I},s:I,s:I,s:b,s:o,s:I}", "same",
	              d->same, "columns", "added", names_json(d->cols_added, d->n_cols_added),
	              "removed", names_json(d->cols_removed, d->n_cols_removed), "changed",
	              names_json(d->cols_changed, d->n_cols_changed), "rows", "added",
	              (json_int_t)d->rows_added, "removed", (json_int_t)d->rows_removed, "changed",
	              (json_int_t)d->rows_changed, "same", (json_int_t)d->rows_same, "chunks_same",
	              (json_int_t)d->chunks_same, "bytes_new", (json_int_t)d->bytes_new, "coarse",
	              d->coarse, "hunks", hunks, "hunks_total", (json_int_t)d->n_hunks);
	if (o != NULL && d->n_hunks > max_hunks)
		json_object_set_new(o, "hunks_truncated", json_true());
	return o;
}
