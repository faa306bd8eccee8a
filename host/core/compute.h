/* Host-side wrappers of the compute plugins' operations (as Slurm's
 * <kind>_g_* wrap <kind>_p_*): they find the instance a job spec names,
 * check its kind, and word the errors for the user. */
#ifndef LOOM_HOST_COMPUTE_H
#define LOOM_HOST_COMPUTE_H

#include <jansson.h>

#include "plugins.h"

/* Check a job spec with the compute plugin instance it names ("compute",
 * default "transformer").  0, or LOOM_EINVAL with *msg (free it) naming
 * the key: "spec.model.d_modle: unknown setting (did you mean d_model?)". */
int loomi_compute_validate(loomi_plugins *plugins, const json_t *spec, char **msg);

#endif /* LOOM_HOST_COMPUTE_H */
