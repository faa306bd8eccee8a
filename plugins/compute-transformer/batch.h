/* batch.h — batch prediction as a compute job: a job spec with a top-level
 * predict group runs a trained model over every window of a CSV file
 * instead of training one (docs/inference.md, "Batch prediction").
 *
 *   name = "weather-2015"; compute = "transformer";
 *   predict = {
 *     model_dir = "/abs/dir";           # required: a training run's output
 *     data = { path = "/x/2015.csv"; }; # required; the model's spec decides
 *                                       # time_column, channels and fill
 *     stride = 1; batch = 256;          # window starts, windows per step
 *     uncertainty = false; passes = 16; # tf_predict_spread per window
 *     model = "weather"; version = 3;   # informational
 *   };
 *
 * run writes into job->out_dir, each atomically at the end:
 * predictions.csv, predictions.json (the labeling rounds' contract: its
 * names are fixed) and inputs.f32 (the series, f32le [rows, channels]).
 * A step is a chunk of predict.batch windows: after each, progress
 * (windows done of all) and control; a pause keeps what was predicted in
 * predict.part with a cursor (predict.cursor) and returns LOOM_EPAUSED, and
 * LOOM_JOB_RESUME continues from the cursor to the same bytes as a run
 * that never stopped. */
#ifndef LOOM_TF_BATCH_H
#define LOOM_TF_BATCH_H

#include <stdbool.h>

#include <loom/compute.h>

/* Is the spec (JSON or libconfig text) a batch prediction: does it have a
 * top-level predict group?  False for text that does not parse (the
 * training spec's parser then reports why). */
bool tf_batch_is(const char *spec_text);

/* Check a batch prediction's spec without opening any file: every key of
 * predict known, model_dir and data.path given, no data, model or train
 * group beside it.  0, or LOOM_EINVAL with *error (host->alloc'd) listing
 * every problem, one per line, each naming its key. */
int tf_batch_validate(const loom_host *host, const char *spec_text, char **error);

/* Run it (see above).  threads: the model's CPU threads, as tf_model_open
 * takes them (the instance's predict_threads; 0: the model's spec's).
 * 0 when every window was predicted and the files written, LOOM_EPAUSED,
 * LOOM_ECANCELED, or an error after job->log. */
int tf_batch_run(const loom_host *host, loom_instance *ins, int threads, const loom_job *job);

/* The windows a model reads from a file, for the predict endpoint's file
 * form (compute.h's model_windows): the file read as a batch prediction
 * reads it, windows starting every stride rows from the first, those whose
 * rows all lie on lines from_line to to_line kept (0: no bound).  A
 * reader holds a model's description (its info_json, as tf_model_open
 * wrote it) between calls; one call at a time per reader. */
typedef struct tf_reader tf_reader;

int tf_reader_open(const loom_host *host, loom_instance *ins, const char *info_json,
                   tf_reader **r, char **err);
/* windows: f32 [B, context, channels] (host->tensor_alloc); meta_json
 * (host->alloc'd): {"windows": [{"first_line", "last_line", "time"}…]}.
 * LOOM_ERANGE for no window or more than max_windows (> 0), LOOM_EINVAL and
 * the data.h reader's codes for a file the model cannot read; *err says
 * why (free it), naming the file and line. */
int tf_reader_windows(tf_reader *r, const char *path, int64_t from_line, int64_t to_line,
                      int64_t stride, int64_t max_windows, loom_tensor *windows,
                      char **meta_json, char **err);
void tf_reader_close(tf_reader *r);

#endif /* LOOM_TF_BATCH_H */
