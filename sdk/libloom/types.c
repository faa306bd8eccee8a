/* Names and parsers for the values of <loom/types.h> and <loom/plugin.h>. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <loom/plugin.h>
#include <loom/types.h>
#include <loom/version.h>

static const char *const kind_names[] = {
	[LOOM_KIND_STORAGE] = "storage",     [LOOM_KIND_SCHEDULER] = "scheduler",
	[LOOM_KIND_SAMPLER] = "sampler",     [LOOM_KIND_HEAD] = "head",
	[LOOM_KIND_TRACKER] = "tracker",     [LOOM_KIND_EXPORTER] = "exporter",
	[LOOM_KIND_COMPUTE] = "compute",
};

static const char *const state_names[] = {
	[LOOM_JOB_PENDING] = "pending",     [LOOM_JOB_RUNNING] = "running",
	[LOOM_JOB_PAUSED] = "paused",       [LOOM_JOB_COMPLETED] = "completed",
	[LOOM_JOB_FAILED] = "failed",       [LOOM_JOB_CANCELLED] = "cancelled",
};

static const struct {
	const char *name;
	size_t size;
} dtypes[] = {
	[LOOM_DTYPE_F32] = {"f32", 4}, [LOOM_DTYPE_F64] = {"f64", 8},
	[LOOM_DTYPE_F16] = {"f16", 2}, [LOOM_DTYPE_BF16] = {"bf16", 2},
	[LOOM_DTYPE_I32] = {"i32", 4}, [LOOM_DTYPE_I64] = {"i64", 8},
	[LOOM_DTYPE_U8] = {"u8", 1},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

const char *
loom_version(void)
{
	return LOOM_VERSION_STRING;
}

const char *
loom_kind_name(uint32_t kind)
{
	return kind < COUNT(kind_names) ? kind_names[kind] : NULL;
}

uint32_t
loom_kind_parse(const char *name)
{
	for (uint32_t k = 1; name && k < COUNT(kind_names); k++) {
		if (strcmp(name, kind_names[k]) == 0)
			return k;
	}
	return 0;
}

const char *
loom_job_state_name(uint32_t state)
{
	return state < COUNT(state_names) ? state_names[state] : NULL;
}

uint32_t
loom_job_state_parse(const char *name)
{
	for (uint32_t s = 1; name && s < COUNT(state_names); s++) {
		if (strcmp(name, state_names[s]) == 0)
			return s;
	}
	return 0;
}

size_t
loom_dtype_size(uint32_t dtype)
{
	return dtype < COUNT(dtypes) ? dtypes[dtype].size : 0;
}

const char *
loom_dtype_name(uint32_t dtype)
{
	return dtype < COUNT(dtypes) ? dtypes[dtype].name : NULL;
}

int
loom_parse_size(const char *text, uint64_t *bytes)
{
	const char *p = text;
	uint64_t v = 0, mult = 1;

	if (text == NULL || !isdigit((unsigned char)*p))
		return LOOM_EINVAL;
	while (isdigit((unsigned char)*p)) {
		unsigned d = (unsigned)(*p++ - '0');
		if (v > (UINT64_MAX - d) / 10)
			return LOOM_ERANGE;
		v = v * 10 + d;
	}
	while (*p == ' ')
		p++;
	switch (toupper((unsigned char)*p)) {
	case '\0': break;
	case 'K': mult = 1ull << 10; p++; break;
	case 'M': mult = 1ull << 20; p++; break;
	case 'G': mult = 1ull << 30; p++; break;
	case 'T': mult = 1ull << 40; p++; break;
	case 'B': p++; break;
	default: return LOOM_EINVAL;
	}
	if (mult != 1) {
		if (*p == 'i')
			p++;
		if (toupper((unsigned char)*p) == 'B')
			p++;
	}
	if (*p != '\0')
		return LOOM_EINVAL;
	if (v > UINT64_MAX / mult)
		return LOOM_ERANGE;
	*bytes = v * mult;
	return 0;
}

int
loom_parse_duration(const char *text, int64_t *ms)
{
	char *end;
	double v, unit;

	if (text == NULL || !(isdigit((unsigned char)*text) || *text == '.'))
		return LOOM_EINVAL;
	errno = 0;
	v = strtod(text, &end);
	if (errno != 0 || end == text || !isfinite(v))
		return LOOM_EINVAL;
	while (*end == ' ')
		end++;
	if (*end == '\0' || strcmp(end, "s") == 0)
		unit = 1e3;
	else if (strcmp(end, "ms") == 0)
		unit = 1;
	else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
		unit = 60e3;
	else if (strcmp(end, "h") == 0)
		unit = 3600e3;
	else if (strcmp(end, "d") == 0)
		unit = 86400e3;
	else
		return LOOM_EINVAL;
	v *= unit;
	if (v > 9.2e18)
		return LOOM_ERANGE;
	*ms = (int64_t)llround(v);
	return 0;
}
