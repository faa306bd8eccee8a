/* continual.h — what an incremental run (train.init) carries from one model
 * version to the next, and the continual-learning metrics of metrics.json.
 *
 * continual.safetensors (written beside best.safetensors, copied into the
 * registry's version directory) holds, as uncompressed safetensors:
 *   memory.x   F32 [M, context, channels]  the replay bank's normalized inputs
 *   memory.y   F32 [M, target_len]         their training targets
 *                                          (classification: the class index)
 *   ewc.<k>.fisher.<tensor>, ewc.<k>.theta.<tensor>   (k = 0, 1, …)
 *              F32, each of the model's trainable tensors' shape
 *   holdout.<j>.x, holdout.<j>.y  (j = 1 … increments)  the test split of
 *              increment j, laid out as memory.x / memory.y
 * and the metadata key "continual": JSON text (contract.md §2: increments,
 * R, R_before, baseline, metric, higher_is_better, memory_seen, ewc_mode,
 * classes).  memory.x and memory.y are written even with M = 0 (shape [0, …])
 * so that a reader knows the bank is empty rather than missing.
 *
 * Every size read from a file is checked against the file's length (the
 * safetensors decoder) and against what the model and data expect before
 * anything is allocated from it, so a hostile file cannot make the reader
 * allocate more than the file holds or read out of bounds. */
#ifndef LOOM_TF_CONTINUAL_H
#define LOOM_TF_CONTINUAL_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "model.h"

typedef struct tf_holdout {
	int64_t index;        /* increment, 1-based */
	char *data;           /* that increment's data path */
	int64_t rows;         /* rows of that file */
	int64_t n;            /* test windows */
	float *x;             /* [n, window_floats] normalized inputs */
	float *y;             /* [n, target_len] training targets */
} tf_holdout;

typedef struct tf_ewc_term {
	float *fisher;        /* [m->n_params], laid out as the model given to load/save */
	float *theta;         /* [m->n_params] */
} tf_ewc_term;

typedef struct tf_continual {
	int64_t window_floats;   /* context · channels */
	int64_t target_len;
	int64_t mem_n;           /* replay bank rows */
	float *mem_x, *mem_y;    /* [mem_n, window_floats], [mem_n, target_len] */
	uint64_t mem_seen;       /* training windows ever offered to the bank */
	int n_terms;
	tf_ewc_term *terms;
	int n_holdouts;
	tf_holdout *holdouts;
	json_t *meta;            /* the stored metadata object (contract.md §2), owned */
} tf_continual;

/* The most EWC terms and holdouts a file may hold (separate mode adds one
 * term per increment): a file claiming more is refused. */
#define TF_CONTINUAL_MAX_TERMS 1024
#define TF_CONTINUAL_MAX_HOLDOUTS 4096

/* Read path into c for model m.  EWC tensors are mapped by tensor name onto m's layout:
 * same shape copied; a head tensor whose classes dimension grew (as in
 * tf_weights_load_init) copies the old part and gives the new part F = 0, θ = 0; a
 * trainable tensor of m the file lacks gets F = 0.  Memory and holdout shapes must match
 * window_floats and target_len (else LOOM_EINVAL naming the file and what differs).
 * A truncated or corrupt file is refused before c is filled.
 *
 * The holdouts' data and rows, and memory_seen, come from the metadata's
 * "increments" entry of the same index and "memory_seen"; the EWC terms are
 * ewc.0, ewc.1, … up to the first index the file lacks (a later index is
 * then an error, as is a tensor of the file m has no trainable tensor for,
 * or one whose shape differs other than by a grown head).  c is zeroed
 * first; on an error it holds nothing (no need to free it).  0, or a
 * LOOM_E* code with *err set: LOOM_ENOENT (no such file), LOOM_EIO,
 * LOOM_ECORRUPT (not a continual file), LOOM_EINVAL (another model's or
 * data's file), LOOM_ENOMEM. */
int tf_continual_load(const char *path, const tf_model *m, int64_t window_floats,
                      int64_t target_len, tf_continual *c, char **err);
/* Write c atomically (temporary file, fsync, rename, fsync of the directory — see how
 * checkpoint.c writes), EWC terms by m's trainable tensor names (TF_BUFFER tensors are
 * not trainable).  c->meta (may be NULL: "{}") is written as the "continual" metadata
 * with "memory_seen" set from c->mem_seen.  LOOM_EINVAL for inconsistent
 * sizes (a negative count, rows without data); LOOM_EIO, LOOM_ENOMEM. */
int tf_continual_save(const char *path, const tf_model *m, const tf_continual *c, char **err);
/* Free what c holds and zero it (NULL-safe, idempotent). */
void tf_continual_free(tf_continual *c);

/* The continual-learning summary of contract.md §3 from R (array of rows, row i having
 * i+1 numbers), R_before (array, entry 0 null) and baseline (array); higher: accuracy-like.
 * NAN where undefined (forgetting, bwt with one increment; fwt with one increment or
 * missing entries).
 *
 * With T = the number of rows of R (increments 1 … T, R[i][j] 0-based):
 *   average    = mean_j R[T−1][j]
 *   forgetting = mean_{j<T−1} (R[j][j] − R[T−1][j]), negated when !higher:
 *                > 0 means the model got worse on old increments
 *   bwt        = mean_{j<T−1} (R[T−1][j] − R[j][j]), negated when !higher:
 *                > 0 means learning new increments helped old ones
 *   fwt        = mean_{j≥1} (R_before[j] − baseline[j]), negated when !higher
 * A row shorter than it should be, an entry missing or not a number where
 * one is needed (a null R_before[j] or baseline[j] for some j ≥ 1), makes
 * the figures that need it NAN (never a crash: R is read from files). */
typedef struct tf_cl_summary {
	double average, forgetting, bwt, fwt;
} tf_cl_summary;
void tf_cl_summarize(const json_t *R, const json_t *R_before, const json_t *baseline,
                     bool higher, tf_cl_summary *out);

#endif /* LOOM_TF_CONTINUAL_H */
