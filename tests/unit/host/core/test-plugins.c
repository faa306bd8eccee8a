/* host/plugins: the loader's failure modes (one error code and message for
 * each, using deliberately broken plugins), instances, their config maps,
 * the host services they see, and the bus services they register. */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/core/bus.h"
#include "host/core/log.h"
#include "host/core/plugins.h"
#include "testutil.h"

#define ASSERT_HAS(text, needle)                                                          \
	ck_assert_msg(strstr((text), (needle)) != NULL, "expected \"%s\" in:\n%s", (needle),   \
	              (text))

static loomi_plugins reg;
static char *tmp;

static void
setup(void)
{
	const char *dirs[] = {tu_env("LOOM_TEST_FIXTURES"), tu_env("LOOM_TEST_PLUGINS")};
	tmp = tu_tmpdir();
	ck_assert_int_eq(loomi_plugins_init(&reg, dirs, 2, tmp), 0);
	tu_log_capture();
}

static void
teardown(void)
{
	loomi_plugins_fini(&reg);
	loomi_log_set_hook(NULL, NULL);
	tu_rmrf(tmp);
	free(tmp);
}

/* Load a module; return the code and leave the message in *err. */
static int
load(const char *name, char **err)
{
	loomi_plugin_module *m;
	*err = NULL;
	return loomi_module_load(&reg, name, &m, err);
}

START_TEST(loads_good_modules)
{
	loomi_plugin_module *m, *again;
	char *err = NULL;

	ck_assert_int_eq(loomi_module_load(&reg, "storage-memory", &m, &err), 0);
	ck_assert_ptr_null(err);
	ck_assert_str_eq(m->desc->name, "storage-memory");
	ck_assert_uint_eq(m->desc->kind, LOOM_KIND_STORAGE);
	ASSERT_HAS(m->path, "storage-memory.la");
	/* a second load returns the same module */
	ck_assert_int_eq(loomi_module_load(&reg, "storage-memory", &again, &err), 0);
	ck_assert_ptr_eq(m, again);
}
END_TEST

START_TEST(not_found)
{
	char *err;
	ck_assert_int_eq(load("no-such-plugin", &err), LOOM_EPLUGIN_NOTFOUND);
	ASSERT_HAS(err, "plugin module \"no-such-plugin\" not found in ");
	ASSERT_HAS(err, tu_env("LOOM_TEST_FIXTURES"));
	ASSERT_HAS(err, "add its directory to plugin_path");
	free(err);
	ck_assert_int_eq(load("fix-echp", &err), LOOM_EPLUGIN_NOTFOUND);
	ASSERT_HAS(err, "(did you mean \"fix-echo\"?)");
	free(err);
	ck_assert_int_eq(load("../fix-echo", &err), LOOM_EPLUGIN_NOTFOUND);
	ASSERT_HAS(err, "is not a plugin module name");
	free(err);
}
END_TEST

START_TEST(dlopen_failed)
{
	char *dir = tu_tmpdir(), *junk, *err;
	const char *dirs[] = {dir};
	loomi_plugins r2;

	junk = tu_write(dir, "junk.so", "this is not an ELF file\n");
	ck_assert_int_eq(loomi_plugins_init(&r2, dirs, 1, NULL), 0);
	{
		loomi_plugin_module *m;
		ck_assert_int_eq(loomi_module_load(&r2, "junk", &m, &err), LOOM_EPLUGIN_DLOPEN);
	}
	ASSERT_HAS(err, "cannot load plugin ");
	ASSERT_HAS(err, "junk.so: ");
	ASSERT_HAS(err, "(ldd ");
	free(err);
	loomi_plugins_fini(&r2);
	free(junk);
	tu_rmrf(dir);
	free(dir);
}
END_TEST

START_TEST(no_entry_point)
{
	char *err;
	ck_assert_int_eq(load("fix-nosym", &err), LOOM_EPLUGIN_NOSYM);
	ASSERT_HAS(err, "is not a Loom plugin: it exports neither fix_nosym_LTX_loom_plugin_get "
	                "nor loom_plugin_get");
	ASSERT_HAS(err, "LOOM_PLUGIN_DEFINE(fix_nosym, ...)");
	free(err);
}
END_TEST

START_TEST(abi_major_mismatch)
{
	char *err, *want = loomi_strfmt("built for plugin ABI %d.0, but this Loom speaks ABI %d.%d",
	                                LOOM_ABI_MAJOR + 1, LOOM_ABI_MAJOR, LOOM_ABI_MINOR);
	ck_assert_int_eq(load("fix-abi-major", &err), LOOM_EPLUGIN_ABI_MAJOR);
	ASSERT_HAS(err, want);
	ASSERT_HAS(err, "rebuild the plugin");
	free(err);
	free(want);
}
END_TEST

START_TEST(abi_minor_too_new)
{
	char *err, *want = loomi_strfmt("needs plugin ABI %d.%d, newer than this Loom's %d.%d",
	                                LOOM_ABI_MAJOR, LOOM_ABI_MINOR + 1, LOOM_ABI_MAJOR,
	                                LOOM_ABI_MINOR);
	ck_assert_int_eq(load("fix-abi-minor", &err), LOOM_EPLUGIN_ABI_MINOR);
	ASSERT_HAS(err, want);
	free(err);
	free(want);
}
END_TEST

START_TEST(malformed_descriptors)
{
	char *err;
	ck_assert_int_eq(load("fix-malformed", &err), LOOM_EPLUGIN_MALFORMED);
	ASSERT_HAS(err, "its kind 42 is not one of storage");
	free(err);
	ck_assert_int_eq(load("fix-no-op", &err), LOOM_EPLUGIN_MALFORMED);
	ASSERT_HAS(err, "its storage ops table lacks the required operation \"get\"");
	free(err);
}
END_TEST

static int dummy_init(loom_instance *i, const loom_host *h, void *c) { return 0; }
static int dummy_run(void *c, const loom_job *j) { return 0; }
static int dummy_validate(void *c, const char *s, char **e) { return 0; }

START_TEST(descriptor_checks)
{
	static const loom_compute_ops ops = {.size = sizeof ops, .validate = dummy_validate,
	                                     .run = dummy_run};
	static const loom_compute_ops short_ops = {.size = 8, .validate = dummy_validate,
	                                           .run = dummy_run};
	static const loom_config_entry bad_type[] = {{99, 0, "x", NULL, 0, NULL, 0, 0, NULL, {0}},
	                                             LOOM_CONFIG_END};
	static const loom_config_entry bad_key[] = {
		{LOOM_CONFIG_INT, 0, "Bad-Key", NULL, 0, NULL, 0, 0, NULL, {0}}, LOOM_CONFIG_END};
	static const loom_config_entry past_end[] = {
		{LOOM_CONFIG_INT, 0, "x", NULL, 8, NULL, 0, 0, NULL, {0}}, LOOM_CONFIG_END};
	loom_plugin_desc d = {.abi_major = LOOM_ABI_MAJOR, .abi_minor = LOOM_ABI_MINOR,
	                      .size = sizeof d, .kind = LOOM_KIND_COMPUTE, .name = "c",
	                      .version = "1", .init = dummy_init, .ops = &ops, .ctx_size = 8};
	char *why = NULL;

	ck_assert_int_eq(loomi_desc_check(&d, &why), 0);
	ck_assert_int_eq(loomi_desc_check(NULL, &why), LOOM_EPLUGIN_MALFORMED);
	ASSERT_HAS(why, "returned NULL");
	free(why);

	d.size = 16;
	ck_assert_int_eq(loomi_desc_check(&d, &why), LOOM_EPLUGIN_MALFORMED);
	ASSERT_HAS(why, "smaller than ABI");
	free(why);
	d.size = sizeof d;

	d.name = NULL;
	ck_assert_int_eq(loomi_desc_check(&d, &why), LOOM_EPLUGIN_MALFORMED);
	ASSERT_HAS(why, "no name");
	free(why);
	d.name = "c";

	d.ops = NULL;
	ck_assert_int_eq(loomi_desc_check(&d, &why), LOOM_EPLUGIN_MALFORMED);
	ASSERT_HAS(why, "no compute ops table");
	free(why);
	d.ops = &short_ops;
	ck_assert_int_eq(loomi_desc_check(&d, &why), LOOM_EPLUGIN_MALFORMED);
	ASSERT_HAS(why, "too small to hold the required operations");
	free(why);
	d.ops = &ops;

	d.config = bad_type;
	ck_assert_int_eq(loomi_desc_check(&d, &why), LOOM_EPLUGIN_MALFORMED);
	ASSERT_HAS(why, "config map entry \"x\" has an invalid type");
	free(why);
	d.config = bad_key;
	ck_assert_int_eq(loomi_desc_check(&d, &why), LOOM_EPLUGIN_MALFORMED);
	ASSERT_HAS(why, "invalid key");
	free(why);
	d.config = past_end;
	ck_assert_int_eq(loomi_desc_check(&d, &why), LOOM_EPLUGIN_MALFORMED);
	ASSERT_HAS(why, "writes past the end of its 8-byte context");
	free(why);
}
END_TEST

/* Copy the built .so of a fixture into dir, without its .la. */
static void
copy_so(const char *name, const char *dir)
{
	char *src = loomi_strfmt("%s/.libs/%s.so", tu_env("LOOM_TEST_FIXTURES"), name);
	char *dst = loomi_strfmt("%s/%s.so", dir, name);
	char *data;
	size_t len;

	ck_assert_int_eq(loomi_read_file(src, &data, &len), 0);
	ck_assert_int_eq(loomi_write_file_atomic(dst, data, len, 0755), 0);
	free(data);
	free(src);
	free(dst);
}

START_TEST(works_without_la_files)
{
	char *dir = tu_tmpdir(), *err = NULL;
	const char *dirs[] = {dir};
	loomi_plugins r2;
	loomi_plugin_module *m;

	copy_so("fix-echo", dir);
	ck_assert_int_eq(loomi_plugins_init(&r2, dirs, 1, NULL), 0);
	ck_assert_int_eq(loomi_module_load(&r2, "fix-echo", &m, &err), 0);
	ck_assert_str_eq(m->desc->name, "fix-echo");
	ck_assert_ptr_nonnull(strstr(m->path, ".so"));
	loomi_plugins_fini(&r2);
	tu_rmrf(dir);
	free(dir);
}
END_TEST

START_TEST(plugin_path_from_environment)
{
	char *dir = tu_tmpdir(), *err = NULL;
	loomi_plugins r2;
	loomi_plugin_module *m;

	copy_so("fix-echo", dir);
	setenv("LOOM_PLUGIN_PATH", dir, 1);
	ck_assert_int_eq(loomi_plugins_init(&r2, NULL, 0, NULL), 0);
	unsetenv("LOOM_PLUGIN_PATH");
	ck_assert_int_eq(loomi_module_load(&r2, "fix-echo", &m, &err), 0);
	ASSERT_HAS(m->path, dir);
	loomi_plugins_fini(&r2);
	tu_rmrf(dir);
	free(dir);
}
END_TEST

/* ------------------------------------------------------------------ instances */

static loomi_doc doc;

/* Create every plugin of a libconfig text; returns the number of errors. */
static size_t
create_all(const char *text, loomi_strv *errs)
{
	json_t *list, *p;
	size_t i;

	ck_assert_int_eq(loomi_doc_load_string(&doc, text, "t.conf", errs), 0);
	list = json_object_get(doc.root, "plugins");
	json_array_foreach(list, i, p) {
		loomi_plugin_conf pc = {
			.instance = (char *)json_string_value(json_object_get(p, "instance")),
			.module = (char *)json_string_value(json_object_get(p, "module")),
			.config = json_object_get(p, "config"),
			.node = p,
		};
		loom_instance *ins;
		loomi_instance_create(&reg, &doc, &pc, &ins, errs);
	}
	return errs->n;
}

START_TEST(instances_and_services)
{
	loomi_strv errs = {0};
	loomi_bus_config bc = {0};
	loomi_bus *bus;
	char *err = NULL, *reply = NULL, *path;

	ck_assert_int_eq(loomi_bus_open(&bc, &bus, &err), 0);
	reg.bus = bus;
	ck_assert_uint_eq(create_all("plugins = (\n"
	                             " { instance = \"one\"; module = \"fix-echo\";\n"
	                             "   config = { greeting = \"hello\"; count = 5; }; },\n"
	                             " { instance = \"two\"; module = \"fix-echo\";\n"
	                             "   config = { greeting = \"bonjour\"; }; }\n"
	                             ");\n",
	                             &errs),
	                  0);
	ck_assert_uint_eq(reg.n_instances, 2);
	/* one module, two instances with their own contexts and settings */
	ck_assert_ptr_eq(reg.instances[0]->module, reg.instances[1]->module);
	ck_assert_ptr_ne(reg.instances[0]->ctx, reg.instances[1]->ctx);
	ck_assert_str_eq(reg.instances[0]->prefix, "exporter:one");
	for (size_t i = 0; i < reg.n_instances; i++)
		ck_assert_int_eq(loomi_instance_start(reg.instances[i], &err), 0);

	ck_assert_int_eq(loomi_bus_request(bus, "echo.one", "test", "{\"n\":1}", 5000, &reply), 0);
	ASSERT_HAS(reply, "\"greeting\":\"hello\"");
	ASSERT_HAS(reply, "\"count\":5");
	ASSERT_HAS(reply, "\"request\":{\"n\":1}");
	free(reply);
	ck_assert_int_eq(loomi_bus_request(bus, "echo.two", "test", "{}", 5000, &reply), 0);
	ASSERT_HAS(reply, "\"greeting\":\"bonjour\"");
	ASSERT_HAS(reply, "\"count\":3");
	free(reply);
	/* a plugin's error code and message reach the requester */
	ck_assert_int_eq(loomi_bus_request(bus, "echo.one", "test", "{\"fail\":1}", 5000, &reply),
	                 LOOM_ECONFLICT);
	ck_assert_str_eq(reply, "asked to fail");
	free(reply);

	/* PATH settings resolve under the instance's state directory */
	path = loomi_strfmt("%s/plugins/one/data.txt", tmp);
	ck_assert_str_eq(json_string_value(json_object_get(reg.instances[0]->conf.values, "file")),
	                 path);
	free(path);
	ck_assert_ptr_eq(loomi_instance_find(&reg, "two"), reg.instances[1]);
	ck_assert_ptr_null(loomi_instance_find(&reg, "three"));

	/* fini removes the plugins' services from the bus */
	loomi_plugins_fini(&reg);
	ck_assert_int_eq(loomi_bus_request(bus, "echo.one", "test", "{}", 5000, &reply),
	                 LOOM_ENOSERVICE);
	free(reply);
	loomi_bus_close(bus);
	loomi_doc_free(&doc);
	loomi_strv_free(&errs);
	/* teardown's fini must see an empty registry */
	{
		const char *dirs[] = {tu_env("LOOM_TEST_FIXTURES")};
		loomi_plugins_init(&reg, dirs, 1, NULL);
	}
}
END_TEST

START_TEST(instance_config_errors)
{
	loomi_strv errs = {0};
	char *text;

	ck_assert_uint_eq(create_all("plugins = (\n"
	                             " { instance = \"a\"; module = \"fix-echo\"; },\n"
	                             " { instance = \"b\"; module = \"fix-echo\";\n"
	                             "   config = { greting = \"x\"; greeting = \"y\";\n"
	                             "     count = 1000; color = \"purple\"; limit = \"huge\"; }; },\n"
	                             " { instance = \"c\"; module = \"nope\"; }\n"
	                             ");\n",
	                             &errs),
	                  6);
	text = loomi_strv_join(&errs, "\n");
	ASSERT_HAS(text, "t.conf:2: plugin \"a\" (fix-echo): config.greeting: missing setting (what to say)");
	ASSERT_HAS(text, "t.conf:4: plugin \"b\" (fix-echo): config.greting: unknown setting (did you mean greeting?)");
	ASSERT_HAS(text, "t.conf:5: plugin \"b\" (fix-echo): config.count: 1000 is out of range; use a value from 1 to 100");
	ASSERT_HAS(text, "config.color: \"purple\" is not one of red, green, blue");
	ASSERT_HAS(text, "config.limit: \"huge\" is not a size");
	ASSERT_HAS(text, "t.conf:6: plugin \"c\": plugin module \"nope\" not found");
	free(text);
	ck_assert_uint_eq(reg.n_instances, 0);
	loomi_doc_free(&doc);
	loomi_strv_free(&errs);
}
END_TEST

START_TEST(init_failure)
{
	loomi_strv errs = {0};
	char *err = NULL;

	ck_assert_uint_eq(create_all("plugins = ( { instance = \"bad\"; module = \"fix-init-fails\"; } );",
	                             &errs),
	                  0);
	ck_assert_int_eq(loomi_instance_start(reg.instances[0], &err), LOOM_EPLUGIN_INIT);
	ASSERT_HAS(err, "plugin \"bad\" (fix-init-fails) failed to initialize: input/output error "
	                "(LOOM_EIO)");
	ASSERT_HAS(err, "[storage:bad]");
	ASSERT_HAS(tu_log_text(), "storage:bad: the fixture refuses to start");
	ck_assert(!reg.instances[0]->inited);
	free(err);
	loomi_doc_free(&doc);
}
END_TEST

START_TEST(host_services)
{
	const loom_host *h = loomi_host_services();
	loomi_strv errs = {0};
	loom_instance *st;
	const char *key, *dir;
	char *err = NULL, *path;
	void *data;
	size_t len;

	ck_assert_uint_eq(h->abi_major, LOOM_ABI_MAJOR);
	ck_assert_uint_eq(h->size, sizeof(loom_host));
	ck_assert(LOOM_HOST_HAS(h, tensor_free));
	ck_assert_str_eq(h->version, LOOM_VERSION_STRING);
	ck_assert_uint_eq(create_all("plugins = (\n"
	                             " { instance = \"mem\"; module = \"storage-memory\"; },\n"
	                             " { instance = \"e\"; module = \"fix-echo\"; config = { greeting = \"g\"; }; }\n"
	                             ");",
	                             &errs),
	                  0);
	for (size_t i = 0; i < reg.n_instances; i++)
		ck_assert_int_eq(loomi_instance_start(reg.instances[i], &err), 0);

	/* storage by reference */
	ck_assert_int_eq(h->storage_put(reg.instances[1], "mem:a/b", "xyz", 3), 0);
	ck_assert_int_eq(h->storage_get(reg.instances[1], "mem:a/b", &data, &len), 0);
	ck_assert_uint_eq(len, 3);
	ck_assert_int_eq(memcmp(data, "xyz", 3), 0);
	h->free(data);
	ck_assert_int_eq(h->storage_get(reg.instances[1], "mem:a/zz", &data, &len), LOOM_ENOENT);
	ck_assert_int_eq(h->storage_get(reg.instances[1], "e:a/b", &data, &len), LOOM_ENOENT);
	ck_assert_int_eq(h->storage_get(reg.instances[1], "nope:a", &data, &len), LOOM_ENOENT);
	ck_assert_int_eq(h->storage_get(reg.instances[1], "mem:../a", &data, &len), LOOM_EINVAL);
	ck_assert_int_eq(h->storage_get(reg.instances[1], "no-colon", &data, &len), LOOM_EINVAL);
	ck_assert_int_eq(h->storage_path(reg.instances[1], "mem:a/b", &path), LOOM_ENOTSUP);
	ck_assert_int_eq(loomi_storage_ref(&reg, "mem:x", &st, &key), 0);
	ck_assert_str_eq(key, "x");

	/* another instance's ops, by name and kind */
	{
		const void *ops;
		void *ctx;
		ck_assert_int_eq(h->instance_ops(reg.instances[1], "mem", LOOM_KIND_STORAGE, &ops,
		                                 &ctx),
		                 0);
		ck_assert_ptr_eq(ops, reg.instances[0]->desc->ops);
		ck_assert_ptr_eq(ctx, reg.instances[0]->ctx);
		ck_assert_int_eq(h->instance_ops(reg.instances[1], "mem", LOOM_KIND_HEAD, &ops, &ctx),
		                 LOOM_EINVAL);
		ck_assert_int_eq(h->instance_ops(reg.instances[1], "nope", LOOM_KIND_HEAD, &ops,
		                                 &ctx),
		                 LOOM_ENOENT);
	}

	/* the instance's own directory is created on demand */
	dir = h->state_dir(reg.instances[1]);
	ck_assert_ptr_nonnull(dir);
	path = loomi_strfmt("%s/plugins/e", tmp);
	ck_assert_str_eq(dir, path);
	free(path);
	{
		struct stat sb;
		ck_assert_int_eq(stat(dir, &sb), 0);
		ck_assert(S_ISDIR(sb.st_mode));
	}

	/* logging carries the instance prefix; clocks move forward */
	h->log(reg.instances[1], LOOM_LOG_WARN, "careful: %d", 42);
	ASSERT_HAS(tu_log_text(), "exporter:e: careful: 42");
	ck_assert_int_gt(h->clock_wall_ms(), 1700000000000LL);
	ck_assert_uint_gt(h->clock_mono_ns(), 0);
	data = h->tensor_alloc(100);
	ck_assert_ptr_nonnull(data);
	ck_assert_uint_eq((uintptr_t)data % 64, 0);
	ck_assert_uint_eq(((unsigned char *)data)[99], 0);
	h->tensor_free(data);
	/* without a bus, bus services say so */
	ck_assert_int_eq(h->publish(reg.instances[1], "x.y", "{}"), LOOM_ENOTSUP);
	loomi_doc_free(&doc);
}
END_TEST

START_TEST(state_dir_inside_a_serialized_op)
{
	loomi_strv errs = {0};
	char *err = NULL, *path, *text = NULL;

	ck_assert_uint_eq(create_all("plugins = ( { instance = \"sd\"; module = \"fix-statedir\"; } );",
	                             &errs),
	                  0);
	ck_assert_int_eq(loomi_instance_start(reg.instances[0], &err), 0);
	/* would deadlock if state_dir took the op lock (Check's timeout fails it) */
	ck_assert_int_eq(loomi_storage_put(reg.instances[0], "k", "v", 1), 0);
	path = loomi_strfmt("%s/plugins/sd/k", tmp);
	ck_assert_int_eq(loomi_read_file(path, &text, NULL), 0);
	ck_assert_str_eq(text, "v");
	free(text);
	free(path);
	loomi_doc_free(&doc);
}
END_TEST

START_TEST(config_map_checks)
{
	static const loom_compute_ops ops = {.size = sizeof ops, .validate = dummy_validate,
	                                     .run = dummy_run};
	static const loom_config_entry dup[] = {
		{LOOM_CONFIG_INT, 0, "x", NULL, 0, NULL, 0, 0, NULL, {0}},
		{LOOM_CONFIG_INT, 0, "x", NULL, 8, NULL, 0, 0, NULL, {0}}, LOOM_CONFIG_END};
	static const loom_config_entry minmax[] = {
		{LOOM_CONFIG_INT, LOOM_CONFIG_RANGE, "x", NULL, 0, NULL, 5, 1, NULL, {0}},
		LOOM_CONFIG_END};
	static const loom_config_entry baddef[] = {
		{LOOM_CONFIG_INT, LOOM_CONFIG_RANGE, "x", "50", 0, NULL, 1, 10, NULL, {0}},
		LOOM_CONFIG_END};
	loom_plugin_desc d = {.abi_major = LOOM_ABI_MAJOR, .abi_minor = LOOM_ABI_MINOR,
	                      .size = sizeof d, .kind = LOOM_KIND_COMPUTE, .name = "c",
	                      .version = "1", .init = dummy_init, .ops = &ops, .ctx_size = 16};
	char *why = NULL;

	d.config = dup;
	ck_assert_int_eq(loomi_desc_check(&d, &why), LOOM_EPLUGIN_MALFORMED);
	ASSERT_HAS(why, "declares \"x\" twice");
	free(why);
	d.config = minmax;
	ck_assert_int_eq(loomi_desc_check(&d, &why), LOOM_EPLUGIN_MALFORMED);
	ASSERT_HAS(why, "min above max");
	free(why);
	d.config = baddef;
	ck_assert_int_eq(loomi_desc_check(&d, &why), LOOM_EPLUGIN_MALFORMED);
	ASSERT_HAS(why, "invalid default \"50\"");
	ASSERT_HAS(why, "out of range");
	free(why);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("plugins");
	TCase *tc = tcase_create("loader");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, loads_good_modules);
	tcase_add_test(tc, not_found);
	tcase_add_test(tc, dlopen_failed);
	tcase_add_test(tc, no_entry_point);
	tcase_add_test(tc, abi_major_mismatch);
	tcase_add_test(tc, abi_minor_too_new);
	tcase_add_test(tc, malformed_descriptors);
	tcase_add_test(tc, descriptor_checks);
	tcase_add_test(tc, works_without_la_files);
	tcase_add_test(tc, config_map_checks);
	tcase_add_test(tc, plugin_path_from_environment);
	suite_add_tcase(s, tc);

	tc = tcase_create("instances");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, instances_and_services);
	tcase_add_test(tc, instance_config_errors);
	tcase_add_test(tc, init_failure);
	tcase_add_test(tc, host_services);
	tcase_add_test(tc, state_dir_inside_a_serialized_op);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
