/* Host-side wrappers of the compute plugins' operations (compute.h). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <loom/compute.h>
#include <loom/error.h>

#include "compute.h"
#include "util.h"

int
loomi_compute_validate(loomi_plugins *plugins, const json_t *spec, char **msg)
{
	const char *compute = json_string_value(json_object_get(spec, "compute"));
	loom_instance *ins;
	char *text, *verr = NULL;
	int rv;

	if (!json_is_object(spec)) {
		*msg = loomi_strdup("spec: expected a job spec object {\"compute\": …, \"data\": …, "
		                    "\"model\": …, \"train\": …}");
		return LOOM_EINVAL;
	}
	if (json_object_get(spec, "compute") && compute == NULL) {
		*msg = loomi_strdup("spec.compute: expected the name of a compute plugin instance");
		return LOOM_EINVAL;
	}
	if (compute == NULL)
		compute = "transformer";
	ins = loomi_instance_find(plugins, compute);
	if (ins == NULL || !ins->inited || ins->kind != LOOM_KIND_COMPUTE) {
		*msg = loomi_strfmt("spec.compute: no compute plugin instance \"%s\" in this loomd; "
		                    "add one to plugins in loomd.conf (module compute-transformer)",
		                    compute);
		return LOOM_EINVAL;
	}
	text = json_dumps(spec, JSON_COMPACT | JSON_PRESERVE_ORDER);
	rv = ((const loom_compute_ops *)ins->desc->ops)->validate(ins->ctx, text, &verr);
	free(text);
	if (rv != 0) {
		const char *why = verr ? verr : loom_strerror(rv);
		/* the plugin may have named the spec already */
		*msg = strncmp(why, "spec", 4) == 0 ? loomi_strdup(why) : loomi_strfmt("spec: %s", why);
		free(verr);
		return LOOM_EINVAL;
	}
	return 0;
}
