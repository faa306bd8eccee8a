/* <loom/error.h> — error codes shared by the host, libloom and plugins.
 *
 * Every Loom function that can fail returns 0 or one of these positive codes;
 * loom_strerror() gives a short English text for a code.  A plugin returns
 * them from its ops; the host turns them into log lines, HTTP statuses and
 * bus error replies.  Codes never change meaning; new ones are only added. */
#ifndef LOOM_ERROR_H
#define LOOM_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

enum loom_error {
	LOOM_OK = 0,
	LOOM_EINVAL = 1,        /* an argument or input is invalid */
	LOOM_ENOMEM = 2,        /* out of memory */
	LOOM_ENOENT = 3,        /* no such object (key, job, instance, file) */
	LOOM_EEXIST = 4,        /* the object already exists */
	LOOM_EIO = 5,           /* an input/output error (the log says which) */
	LOOM_EPERM = 6,         /* permission denied */
	LOOM_EBUSY = 7,         /* the resource is busy or locked by another */
	LOOM_ETIMEDOUT = 8,     /* the operation timed out */
	LOOM_ECLOSED = 9,       /* the object was closed or is shutting down */
	LOOM_ENOTSUP = 10,      /* this plugin does not support the operation */
	LOOM_ECONFIG = 11,      /* the configuration is invalid */
	LOOM_EPROTO = 12,       /* a malformed message or protocol error */
	LOOM_ESTATE = 13,       /* the operation is illegal in the current state */
	LOOM_ECONFLICT = 14,    /* a conditional update lost a race (etag changed) */
	LOOM_ERANGE = 15,       /* a value or size is out of range */
	LOOM_ECORRUPT = 16,     /* stored data failed its integrity check */
	LOOM_ESCHEMA = 17,      /* the state database has an unknown schema */
	LOOM_ENOSERVICE = 18,   /* no one serves that bus service */
	LOOM_EUNREACHABLE = 19, /* the peer or daemon cannot be reached */
	LOOM_ECANCELED = 20,    /* the operation or job was cancelled */
	LOOM_EPAUSED = 21,      /* the job stopped at a checkpoint to be resumed */
	LOOM_EINTERNAL = 22,    /* a bug: an invariant did not hold */

	/* Plugin loading: one code for each way it can fail. */
	LOOM_EPLUGIN_NOTFOUND = 100,  /* no such module in the plugin path */
	LOOM_EPLUGIN_DLOPEN = 101,    /* the dynamic loader refused the file */
	LOOM_EPLUGIN_NOSYM = 102,     /* no loom_plugin_get entry point */
	LOOM_EPLUGIN_ABI_MAJOR = 103, /* built for another ABI major */
	LOOM_EPLUGIN_ABI_MINOR = 104, /* built for a newer ABI minor */
	LOOM_EPLUGIN_MALFORMED = 105, /* the descriptor or ops table is invalid */
	LOOM_EPLUGIN_INIT = 106,      /* the plugin's init failed */
};

/* A short text for a code ("no such object"); never NULL.  Unknown codes
 * give "unknown error". */
const char *loom_strerror(int code);

/* The symbolic name of a code ("LOOM_ENOENT"); never NULL. */
const char *loom_errname(int code);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_ERROR_H */
