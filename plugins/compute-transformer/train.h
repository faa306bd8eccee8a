/* train.h — a training run of the Transformer engine (seed 003): epochs of
 * shuffled mini-batches, AdamW with warm-up and a step / cosine / plateau
 * schedule, gradient clipping, validation every epoch, early stopping on a
 * chosen validation metric, the best model kept, checkpoints every N steps
 * and at pauses, and test metrics beside the naive baselines at the end.
 *
 * Everything a run does depends only on the spec, the data and the thread
 * count: the shuffle of epoch e and the dropout masks of step s are
 * functions of (seed, e) and (seed, s), so a run paused at any step and
 * resumed from its checkpoint ends with the same bytes as one that never
 * stopped. */
#ifndef LOOM_TF_TRAIN_H
#define LOOM_TF_TRAIN_H

#include <stdbool.h>

#include <loom/compute.h>

/* Run job (see <loom/compute.h>): 0 when the run completed, LOOM_EPAUSED
 * after a pause or job->max_steps (a checkpoint was written), LOOM_ECANCELED,
 * or an error (LOOM_EINVAL for a bad spec or data, after job->log). */
int tf_train(const loom_host *host, loom_instance *ins, const loom_job *job);

/* Check a spec without running it; *error (host->alloc'd) lists the
 * problems. */
/* The task of the head plugin instance named name (a tf_head_task_fn for
 * tf_spec_parse, arg a tf_head_lookup); 0 when there is no such head. */
typedef struct tf_head_lookup {
	const loom_host *host;
	loom_instance *ins;
} tf_head_lookup;

int tf_head_task(void *arg, const char *name);

/* While a data file is read (a tf_stop's requested, arg a
 * tf_load_control): the job's control, asked every few MB, so a cancel, a
 * pause or a SIGTERM is heard during a long load.  The answer that stopped
 * the read is kept to tell a pause from a cancel. */
typedef struct tf_load_control {
	const loom_job *job;
	int answer;
} tf_load_control;

bool tf_load_stop_requested(void *arg);

int tf_validate(const loom_host *host, loom_instance *ins, const char *spec_json, char **error);

#endif /* LOOM_TF_TRAIN_H */
