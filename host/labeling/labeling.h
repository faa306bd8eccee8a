/* Labeling: the human half of the incremental-learning loop (issue 14,
 * docs/labeling.md).
 *
 * A project ties a registered model (through an alias, "production" by
 * default) to a sampler instance.  A round runs a batch prediction task
 * (docs/inference.md) of the alias's version over a data file; when the
 * task has completed, the sampler chooses k of its windows and they are
 * queued most informative first, each with the prediction of the version
 * that scored it.  Reviewers — the owner, admins, and users the project is
 * shared with for writing — lease distinct items (a lease expires and the
 * item returns to the queue), and confirm, correct, skip or flag them.
 * Every decision is a row of its own: who, when, the model's prediction
 * and the final label, committed before it is answered.  The confirmed and
 * corrected labels are exported as an increment with their provenance.
 *
 * A round's items are made when someone next looks (a project, a round,
 * the next item): nothing waits on the task, so a loomd killed while a
 * round scores makes them after its restart just the same.
 *
 *   GET  /api/v1/labeling/projects                      list
 *   POST /api/v1/labeling/projects                      create
 *   GET  /api/v1/labeling/projects/{name}               with its rounds
 *   POST /api/v1/labeling/projects/{name}/rounds        {"data", "k", "seed"}
 *   GET  /api/v1/labeling/projects/{name}/rounds/{n}
 *   POST /api/v1/labeling/projects/{name}/next          lease the next item
 *   GET  /api/v1/labeling/projects/{name}/export        ?format=json|csv&round=
 *   GET  /api/v1/labeling/items/{id}
 *   POST /api/v1/labeling/items/{id}/decision           {"action", "label", "note"}
 *   POST /api/v1/labeling/items/{id}/release */
#ifndef LOOM_HOST_LABELING_H
#define LOOM_HOST_LABELING_H

#include "host/server/module.h"

extern const loomi_module loomi_labeling_module;

#endif /* LOOM_HOST_LABELING_H */
