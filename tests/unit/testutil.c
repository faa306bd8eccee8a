#include "config.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host/core/log.h"
#include "host/core/util.h"
#include "testutil.h"

char *
tu_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *path;

	if (base == NULL || *base == '\0')
		base = "/tmp";
	if (asprintf(&path, "%s/loom-test.XXXXXX", base) < 0)
		abort();
	if (mkdtemp(path) == NULL) {
		fprintf(stderr, "mkdtemp %s: %s\n", path, strerror(errno));
		abort();
	}
	return path;
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void
tu_rmrf(const char *path)
{
	if (path)
		nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *
tu_write(const char *dir, const char *name, const char *text)
{
	char *path;
	FILE *fp;

	if (asprintf(&path, "%s/%s", dir, name) < 0)
		abort();
	fp = fopen(path, "w");
	ck_assert_msg(fp != NULL, "cannot write %s", path);
	fputs(text, fp);
	fclose(fp);
	return path;
}

const char *
tu_env(const char *name)
{
	const char *v = getenv(name);
	ck_assert_msg(v != NULL && *v != '\0', "%s is not set; run the tests with make check",
	              name);
	return v;
}

int
tu_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}

static pthread_mutex_t cap_mtx = PTHREAD_MUTEX_INITIALIZER;
static char cap_buf[65536], cap_snapshot[65536];
static size_t cap_len;

static void
cap_hook(void *arg, int level, const char *who, const char *msg)
{
	int n;

	(void)arg;
	pthread_mutex_lock(&cap_mtx);
	n = snprintf(cap_buf + cap_len, sizeof cap_buf - cap_len, "%s %s%s%s\n",
	             loomi_log_level_name(level), who ? who : "", who ? ": " : "", msg);
	cap_len += n > 0 ? (size_t)n : 0;
	if (cap_len >= sizeof cap_buf)
		cap_len = sizeof cap_buf - 1;
	pthread_mutex_unlock(&cap_mtx);
}

void
tu_log_capture(void)
{
	pthread_mutex_lock(&cap_mtx);
	cap_len = 0;
	cap_buf[0] = '\0';
	pthread_mutex_unlock(&cap_mtx);
	loomi_log_set_hook(cap_hook, NULL);
}

void
tu_log_stop(void)
{
	loomi_log_set_hook(NULL, NULL);
}

bool
tu_log_has(const char *text)
{
	bool found;
	pthread_mutex_lock(&cap_mtx);
	found = strstr(cap_buf, text) != NULL;
	pthread_mutex_unlock(&cap_mtx);
	return found;
}

const char *
tu_log_text(void)
{
	pthread_mutex_lock(&cap_mtx);
	memcpy(cap_snapshot, cap_buf, cap_len + 1);
	pthread_mutex_unlock(&cap_mtx);
	return cap_snapshot;
}

/* ------------------------------------------------------------------ plugins */

int
tu_plugin_open(tu_plugin *p, const char *module, const char *instance, const char *config,
               const char *file, char **err)
{
	const char *dirs[1] = {tu_env("LOOM_TEST_PLUGINS")};
	loomi_strv errs = {0};
	loomi_plugin_conf pc;
	const json_t *group;
	char *text;
	int rv;

	*err = NULL;
	memset(p, 0, sizeof *p);
	p->tmp = tu_tmpdir();
	ck_assert_int_eq(loomi_plugins_init(&p->reg, dirs, 1, p->tmp), 0);
	p->reg_up = true;
	text = loomi_strfmt("plugins = ( { instance = \"%s\"; module = \"%s\";\n"
	                    "              config = { %s }; } );\n",
	                    instance, module, config ? config : "");
	rv = loomi_doc_load_string(&p->doc, text, file, &errs);
	free(text);
	p->doc_up = true;
	ck_assert_msg(rv == 0, "config text does not parse: %s",
	              errs.n ? loomi_strv_join(&errs, "; ") : "?");
	group = json_array_get(json_object_get(p->doc.root, "plugins"), 0);
	pc.instance = (char *)instance;
	pc.module = (char *)module;
	pc.config = json_object_get(group, "config");
	pc.node = group;
	rv = loomi_instance_create(&p->reg, &p->doc, &pc, &p->ins, &errs);
	if (rv != 0) {
		*err = loomi_strv_join(&errs, "\n");
		loomi_strv_free(&errs);
		p->ins = NULL;
		return rv;
	}
	loomi_strv_free(&errs);
	return loomi_instance_start(p->ins, err);
}

void
tu_plugin_close(tu_plugin *p)
{
	if (p->reg_up)
		loomi_plugins_fini(&p->reg);
	if (p->doc_up)
		loomi_doc_free(&p->doc);
	if (p->tmp) {
		tu_rmrf(p->tmp);
		free(p->tmp);
	}
	memset(p, 0, sizeof *p);
}
