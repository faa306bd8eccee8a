/* <loom/types.h> — values that several plugin kinds exchange with the host:
 * job states, resource amounts, tensors and metric points. */
#ifndef LOOM_TYPES_H
#define LOOM_TYPES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define LOOM_EXPORT __attribute__((visibility("default")))
#define LOOM_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define LOOM_EXPORT
#define LOOM_PRINTF(f, a)
#endif

/* Job states (SPEC §4): pending → running → completed | failed | cancelled,
 * and paused, reachable from running and back to running on resume. */
typedef enum loom_job_state {
	LOOM_JOB_PENDING = 1,
	LOOM_JOB_RUNNING = 2,
	LOOM_JOB_PAUSED = 3,
	LOOM_JOB_COMPLETED = 4,
	LOOM_JOB_FAILED = 5,
	LOOM_JOB_CANCELLED = 6,
} loom_job_state;

/* An amount of resources: what a job asks for, what it holds, what a node
 * has.  cpu is in thousandths of a core (2000 = two cores). */
typedef struct loom_resources {
	uint32_t cpu_millis;
	uint32_t gpu;       /* number of GPUs */
	uint64_t memory;    /* bytes */
	uint64_t gpu_mask;  /* for an allocation: which GPUs (bit i = GPU i) */
	uint64_t reserved[3];
} loom_resources;

/* Element types of tensors. */
typedef enum loom_dtype {
	LOOM_DTYPE_F32 = 1,
	LOOM_DTYPE_F64 = 2,
	LOOM_DTYPE_F16 = 3,
	LOOM_DTYPE_BF16 = 4,
	LOOM_DTYPE_I32 = 5,
	LOOM_DTYPE_I64 = 6,
	LOOM_DTYPE_U8 = 7,
} loom_dtype;

#define LOOM_TENSOR_MAX_DIMS 8

/* A dense, row-major tensor that one side lends the other for the length of
 * a call.  nbytes = product(dims) * element size. */
typedef struct loom_tensor {
	const char *name;
	uint32_t dtype; /* loom_dtype */
	uint32_t ndim;
	int64_t dims[LOOM_TENSOR_MAX_DIMS];
	void *data;
	size_t nbytes;
	const void *reserved[2];
} loom_tensor;

/* Where a metric point belongs. */
typedef enum loom_metric_scope {
	LOOM_METRIC_STEP = 0,  /* one training step */
	LOOM_METRIC_EPOCH = 1, /* the end of an epoch (validation metrics) */
	LOOM_METRIC_FINAL = 2, /* the end of the run (test metrics) */
} loom_metric_scope;

/* One value of a metric ("train_loss" at step 120). */
typedef struct loom_metric_point {
	const char *name;
	int64_t step;
	int32_t epoch;
	uint32_t scope; /* loom_metric_scope */
	int64_t wall_ms; /* UTC milliseconds since the epoch */
	double value;
	const void *reserved[2]; /* zero; room for ABI 1.x (arrays of these cross it) */
} loom_metric_point;

/* Callback receiving named values, one at a time (head metrics, reports).
 * A non-zero return stops the iteration and is passed back. */
typedef int (*loom_value_fn)(void *arg, const char *name, double value);

/* Bytes per element of a dtype, 0 for an unknown one. */
size_t loom_dtype_size(uint32_t dtype);

/* Lower-case name of a dtype ("f32"), or NULL. */
const char *loom_dtype_name(uint32_t dtype);

/* Lower-case name of a job state ("running"), or NULL. */
const char *loom_job_state_name(uint32_t state);

/* Parse a job state name; 0 when it is not one. */
uint32_t loom_job_state_parse(const char *name);

/* Parse a size: a non-negative integer with an optional binary suffix
 * K, M, G, T (KiB…, also written KB/KiB), e.g. "512", "64K", "2G".
 * Returns 0 or LOOM_EINVAL / LOOM_ERANGE. */
int loom_parse_size(const char *text, uint64_t *bytes);

/* Parse a duration: a number with a unit ms, s, m, h or d ("250ms", "1.5s",
 * "5m"); a bare number is seconds.  Returns 0 or LOOM_EINVAL / LOOM_ERANGE. */
int loom_parse_duration(const char *text, int64_t *ms);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_TYPES_H */
