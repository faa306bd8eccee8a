/* The host-services table (loom_host) handed to every plugin's init. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "log.h"
#include "plugins.h"

static void svc_vlog(loom_instance *ins, int level, const char *fmt, va_list ap)
	LOOM_PRINTF(3, 0);

static void
svc_vlog(loom_instance *ins, int level, const char *fmt, va_list ap)
{
	loomi_vlog(level, ins ? ins->prefix : NULL, fmt, ap);
}

static void svc_log(loom_instance *ins, int level, const char *fmt, ...) LOOM_PRINTF(3, 4);

static void
svc_log(loom_instance *ins, int level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	svc_vlog(ins, level, fmt, ap);
	va_end(ap);
}

static void svc_log_limited(loom_instance *ins, int level, const char *fmt, ...)
	LOOM_PRINTF(3, 4);

static void
svc_log_limited(loom_instance *ins, int level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	loomi_vlog_limited(level, ins ? ins->prefix : NULL, fmt, ap);
	va_end(ap);
}

static bool
svc_log_enabled(loom_instance *ins, int level)
{
	return loomi_log_enabled(level);
}

static const char *
svc_instance_name(const loom_instance *ins)
{
	return ins->name;
}

static const char *
svc_state_dir(loom_instance *ins)
{
	const char *dir = NULL;
	int rv;

	/* Its own lock: ops of a plugin without LOOM_PLUGIN_THREAD_SAFE run under
	 * ins->lock, and may call this. */
	pthread_mutex_lock(&ins->dir_lock);
	if (ins->state_dir == NULL && ins->reg->state_dir != NULL) {
		char *d = loomi_strfmt("%s/plugins/%s", ins->reg->state_dir, ins->name);
		if ((rv = loomi_mkdir_p(d, 0750)) != 0) {
			loomi_log(LOOM_LOG_ERROR, ins->prefix, "cannot create %s: %s", d,
			          strerror(rv));
			free(d);
		} else {
			ins->state_dir = d;
		}
	}
	dir = ins->state_dir;
	pthread_mutex_unlock(&ins->dir_lock);
	return dir;
}

static int
lookup(loom_instance *ins, const char *key, json_t **v)
{
	*v = key ? json_object_get(ins->conf.values, key) : NULL;
	return *v ? 0 : LOOM_ENOENT;
}

static int
svc_config_bool(loom_instance *ins, const char *key, bool *out)
{
	json_t *v;
	int rv = lookup(ins, key, &v);
	if (rv)
		return rv;
	if (!json_is_boolean(v))
		return LOOM_EINVAL;
	*out = json_is_true(v);
	return 0;
}

static int
svc_config_int(loom_instance *ins, const char *key, int64_t *out)
{
	json_t *v;
	int rv = lookup(ins, key, &v);
	if (rv)
		return rv;
	if (!json_is_integer(v))
		return LOOM_EINVAL;
	*out = json_integer_value(v);
	return 0;
}

static int
svc_config_double(loom_instance *ins, const char *key, double *out)
{
	json_t *v;
	int rv = lookup(ins, key, &v);
	if (rv)
		return rv;
	if (!json_is_number(v))
		return LOOM_EINVAL;
	*out = json_number_value(v);
	return 0;
}

static int
svc_config_string(loom_instance *ins, const char *key, const char **out)
{
	json_t *v;
	int rv = lookup(ins, key, &v);
	if (rv)
		return rv;
	if (!json_is_string(v))
		return LOOM_EINVAL;
	*out = json_string_value(v);
	return 0;
}

static int
svc_config_strlist(loom_instance *ins, const char *key, const char *const **out, size_t *n)
{
	json_t *v;
	char **items;
	int rv = lookup(ins, key, &v);

	if (rv)
		return rv;
	if (!json_is_array(v) || (items = loomi_pconf_strlist(&ins->conf, key)) == NULL)
		return LOOM_EINVAL;
	*out = (const char *const *)items;
	if (n)
		*n = json_array_size(v);
	return 0;
}

static int
svc_publish(loom_instance *ins, const char *topic, const char *body)
{
	if (ins->reg->bus == NULL)
		return LOOM_ENOTSUP;
	return loomi_bus_publish(ins->reg->bus, topic, ins->prefix, body);
}

static int
svc_request(loom_instance *ins, const char *service, const char *body, int64_t timeout_ms,
            char **reply)
{
	if (ins->reg->bus == NULL)
		return LOOM_ENOTSUP;
	return loomi_bus_request(ins->reg->bus, service, ins->prefix, body, timeout_ms, reply);
}

static int
svc_serve(loom_instance *ins, const char *service, loom_service_fn fn, void *arg)
{
	if (ins->reg->bus == NULL)
		return LOOM_ENOTSUP;
	if (service && strncmp(service, "job.", 4) == 0) {
		loomi_log(LOOM_LOG_ERROR, ins->prefix,
		          "serve: \"%s\": names starting job. belong to loomd's jobs service", service);
		return LOOM_EINVAL;
	}
	return loomi_bus_serve(ins->reg->bus, service, fn, arg, ins);
}

static int
svc_subscribe(loom_instance *ins, const char *prefix, loom_event_fn fn, void *arg)
{
	if (ins->reg->bus == NULL)
		return LOOM_ENOTSUP;
	return loomi_bus_subscribe(ins->reg->bus, prefix, fn, arg, ins);
}

static int
svc_storage_get(loom_instance *ins, const char *ref, void **data, size_t *len)
{
	loom_instance *st;
	const char *key;
	int rv = loomi_storage_ref(ins->reg, ref, &st, &key);
	return rv ? rv : loomi_storage_get(st, key, data, len);
}

static int
svc_storage_put(loom_instance *ins, const char *ref, const void *data, size_t len)
{
	loom_instance *st;
	const char *key;
	int rv = loomi_storage_ref(ins->reg, ref, &st, &key);
	return rv ? rv : loomi_storage_put(st, key, data, len);
}

static int
svc_storage_path(loom_instance *ins, const char *ref, char **path)
{
	loom_instance *st;
	const char *key;
	int rv = loomi_storage_ref(ins->reg, ref, &st, &key);
	return rv ? rv : loomi_storage_local_path(st, key, path);
}

static int
svc_instance_ops(loom_instance *ins, const char *name, uint32_t kind, const void **ops,
                 void **ctx)
{
	loom_instance *other = name ? loomi_instance_find(ins->reg, name) : NULL;

	if (other == NULL || !other->inited)
		return LOOM_ENOENT;
	if (other->kind != kind)
		return LOOM_EINVAL;
	*ops = other->desc->ops;
	*ctx = other->ctx;
	return 0;
}

static int64_t
svc_wall_ms(void)
{
	return loomi_wall_ms();
}

static uint64_t
svc_mono_ns(void)
{
	return loomi_mono_ns();
}

static void *
svc_alloc(size_t n)
{
	return malloc(n ? n : 1);
}

static void *
svc_calloc(size_t n, size_t size)
{
	return calloc(n ? n : 1, size ? size : 1);
}

static void *
svc_realloc(void *p, size_t n)
{
	return realloc(p, n ? n : 1);
}

static void
svc_free(void *p)
{
	free(p);
}

static void *
svc_tensor_alloc(size_t bytes)
{
	return loomi_aligned_zalloc(bytes);
}

static const loom_host services = {
	.abi_major = LOOM_ABI_MAJOR,
	.abi_minor = LOOM_ABI_MINOR,
	.size = sizeof(loom_host),
	.version = LOOM_VERSION_STRING,
	.log = svc_log,
	.vlog = svc_vlog,
	.log_enabled = svc_log_enabled,
	.instance_name = svc_instance_name,
	.state_dir = svc_state_dir,
	.config_bool = svc_config_bool,
	.config_int = svc_config_int,
	.config_double = svc_config_double,
	.config_string = svc_config_string,
	.config_strlist = svc_config_strlist,
	.publish = svc_publish,
	.request = svc_request,
	.serve = svc_serve,
	.subscribe = svc_subscribe,
	.storage_get = svc_storage_get,
	.storage_put = svc_storage_put,
	.storage_path = svc_storage_path,
	.instance_ops = svc_instance_ops,
	.clock_wall_ms = svc_wall_ms,
	.clock_mono_ns = svc_mono_ns,
	.alloc = svc_alloc,
	.calloc = svc_calloc,
	.realloc = svc_realloc,
	.free = svc_free,
	.tensor_alloc = svc_tensor_alloc,
	.tensor_free = svc_free,
	.log_limited = svc_log_limited,
};

const loom_host *
loomi_host_services(void)
{
	return &services;
}
