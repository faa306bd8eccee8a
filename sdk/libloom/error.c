/* loom_strerror, loom_errname: texts for LOOM_E* codes. */
#include "config.h"

#include <stddef.h>

#include <loom/error.h>

struct errtext {
	int code;
	const char *name;
	const char *text;
};

static const struct errtext errors[] = {
	{LOOM_OK, "LOOM_OK", "success"},
	{LOOM_EINVAL, "LOOM_EINVAL", "invalid argument"},
	{LOOM_ENOMEM, "LOOM_ENOMEM", "out of memory"},
	{LOOM_ENOENT, "LOOM_ENOENT", "no such object"},
	{LOOM_EEXIST, "LOOM_EEXIST", "already exists"},
	{LOOM_EIO, "LOOM_EIO", "input/output error"},
	{LOOM_EPERM, "LOOM_EPERM", "permission denied"},
	{LOOM_EBUSY, "LOOM_EBUSY", "resource busy"},
	{LOOM_ETIMEDOUT, "LOOM_ETIMEDOUT", "timed out"},
	{LOOM_ECLOSED, "LOOM_ECLOSED", "closed"},
	{LOOM_ENOTSUP, "LOOM_ENOTSUP", "operation not supported"},
	{LOOM_ECONFIG, "LOOM_ECONFIG", "invalid configuration"},
	{LOOM_EPROTO, "LOOM_EPROTO", "malformed message"},
	{LOOM_ESTATE, "LOOM_ESTATE", "illegal in the current state"},
	{LOOM_ECONFLICT, "LOOM_ECONFLICT", "changed concurrently"},
	{LOOM_ERANGE, "LOOM_ERANGE", "out of range"},
	{LOOM_ECORRUPT, "LOOM_ECORRUPT", "data corrupt"},
	{LOOM_ESCHEMA, "LOOM_ESCHEMA", "unknown state database schema"},
	{LOOM_ENOSERVICE, "LOOM_ENOSERVICE", "no such bus service"},
	{LOOM_EUNREACHABLE, "LOOM_EUNREACHABLE", "cannot be reached"},
	{LOOM_ECANCELED, "LOOM_ECANCELED", "cancelled"},
	{LOOM_EPAUSED, "LOOM_EPAUSED", "paused at a checkpoint"},
	{LOOM_EINTERNAL, "LOOM_EINTERNAL", "internal error"},
	{LOOM_EPLUGIN_NOTFOUND, "LOOM_EPLUGIN_NOTFOUND", "plugin not found"},
	{LOOM_EPLUGIN_DLOPEN, "LOOM_EPLUGIN_DLOPEN", "plugin could not be loaded"},
	{LOOM_EPLUGIN_NOSYM, "LOOM_EPLUGIN_NOSYM", "plugin has no entry point"},
	{LOOM_EPLUGIN_ABI_MAJOR, "LOOM_EPLUGIN_ABI_MAJOR", "plugin built for another ABI major"},
	{LOOM_EPLUGIN_ABI_MINOR, "LOOM_EPLUGIN_ABI_MINOR", "plugin built for a newer ABI minor"},
	{LOOM_EPLUGIN_MALFORMED, "LOOM_EPLUGIN_MALFORMED", "plugin descriptor malformed"},
	{LOOM_EPLUGIN_INIT, "LOOM_EPLUGIN_INIT", "plugin initialization failed"},
};

static const struct errtext *
find(int code)
{
	for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++) {
		if (errors[i].code == code)
			return &errors[i];
	}
	return NULL;
}

const char *
loom_strerror(int code)
{
	const struct errtext *e = find(code);
	return e ? e->text : "unknown error";
}

const char *
loom_errname(int code)
{
	const struct errtext *e = find(code);
	return e ? e->name : "LOOM_E?";
}
