/* A finished run's results gathered for an exporter plugin: the
 * loom_export_source of <loom/exporter.h>.
 *
 * From a task's output directory: the weights and the model description
 * from best.safetensors (else last.safetensors; the file's "__metadata__"
 * holds the spec, the data description and the head), the final metrics
 * from metrics.json.  loomd adds the run's identity, its record and the
 * metric histories it keeps; without a history set, the histories are the
 * per-epoch figures of metrics.json.  Used by loomd to serve exports and by
 * the exporters' tests, which load real training output the same way. */
#ifndef LOOM_HOST_EXPORT_H
#define LOOM_HOST_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include <loom/exporter.h>

typedef struct loomi_export_run loomi_export_run;

/* Load out_dir.  A directory with weights but no metrics.json, or metrics
 * but no weights (a run of compute-exec), is loaded with what it has.
 * 0; LOOM_ENOENT when it has neither (the task never completed: *err says
 * so); LOOM_ECORRUPT for a weights file or metrics.json that cannot be
 * read, naming the file and what is wrong.  *err is malloc'd. */
int loomi_export_load(const char *out_dir, loomi_export_run **out, char **err);

/* A source with no files: metrics and histories only (a run an external
 * script made), filled in with the setters below. */
loomi_export_run *loomi_export_new(void);

/* What exporters are handed; valid until loomi_export_free.  Its spec_json
 * comes from the weights, or "{}" until loomi_export_set_run gives one. */
const loom_export_source *loomi_export_source(const loomi_export_run *r);

/* The run's identity and record (copied).  run_json: a JSON object with
 * times, resources and versions, or NULL; spec_json replaces the spec when
 * not NULL. */
void loomi_export_set_run(loomi_export_run *r, const char *run_id, int64_t job_id,
                          const char *name, const char *state, const char *spec_json,
                          const char *run_json);

/* Metric histories from another keeper (loomd's tracker): the names are
 * copied; fn and arg must stay valid while the source is used. */
void loomi_export_set_history(loomi_export_run *r, const char *const *names, size_t n,
                              loom_history_fn fn, void *arg);

void loomi_export_free(loomi_export_run *r);

#endif /* LOOM_HOST_EXPORT_H */
