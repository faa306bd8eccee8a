/* loomd — the Loom host daemon.
 *
 *   loomd -c FILE [--state-dir DIR] [--listen HOST:PORT] [--check-config]
 *         [--foreground] [--log-level LEVEL] [--version]
 *
 * Reads loomd.conf, takes the state directory's lock, opens the state
 * database, starts the bus, loads and starts the plugins the config names,
 * serves the API, and waits for SIGTERM/SIGINT (stop) or SIGHUP (reopen the
 * log file, take log.level and log.format from the file again).  Without
 * --foreground it detaches once it is ready; the parent's exit status says
 * whether start-up succeeded.  Under systemd (Type=notify) it tells
 * $NOTIFY_SOCKET when it is ready, reloading and stopping (notify.c). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <nng/nng.h>

#include "host/core/log.h"
#include "api.h"
#include "daemon.h"
#include "events.h"
#include "module.h"
#include "notify.h"

#ifndef LOOM_CONF_FILE
#define LOOM_CONF_FILE "/etc/loom/loomd.conf"
#endif

enum { EXIT_USAGE = 2 };

static void
usage(FILE *fp)
{
	fprintf(fp,
	        "usage: loomd [-c FILE] [--state-dir DIR] [--listen HOST:PORT] [--check-config]\n"
	        "             [--foreground] [--log-level LEVEL] [--version]\n"
	        "\n"
	        "  -c, --config FILE     the configuration file [%s]\n"
	        "  -s, --state-dir DIR   override state_dir (database, lock, sockets)\n"
	        "  -l, --listen H:P      override listen, the API address (port 0: any free)\n"
	        "  -t, --check-config    validate the file and the plugins' settings, then exit\n"
	        "  -f, --foreground      stay attached to the terminal; log to stderr\n"
	        "  -L, --log-level L     error, warn, info, debug or trace\n"
	        "  -V, --version         print the version and exit\n"
	        "  -h, --help            print this help and exit\n",
	        LOOM_CONF_FILE);
}

static void
print_errors(const loomi_strv *errs)
{
	for (size_t i = 0; i < errs->n; i++)
		fprintf(stderr, "%s\n", errs->v[i]);
}

/* Validate everything --check-config can without starting anything. */
static int
check_config(loomi_daemon *d)
{
	loomi_strv errs = {0};
	int rv;

	if (loomi_plugins_init(&d->plugins, (const char *const *)d->conf.plugin_path.v,
	                       d->conf.plugin_path.n, d->conf.state_dir) != 0) {
		fprintf(stderr, "%s: cannot set up the plugin loader (libltdl)\n", d->conf.path);
		return 1;
	}
	for (size_t i = 0; i < d->conf.n_plugins; i++) {
		loom_instance *ins;
		loomi_instance_create(&d->plugins, &d->conf.doc, &d->conf.plugins[i], &ins, &errs);
	}
	if (d->conf.api.tls_certificate) {
		/* the files as the API would load them */
		char *e = NULL;
		if (loomi_http_tls_check(d->conf.api.tls_certificate, d->conf.api.tls_key, &e) != 0)
			loomi_strv_push(&errs, loomi_strfmt("%s: %s", d->conf.path, e));
		free(e);
	}
	if (errs.n > 0) {
		print_errors(&errs);
		fprintf(stderr, "%s: %zu problem%s found\n", d->conf.path, errs.n,
		        errs.n == 1 ? "" : "s");
		rv = 1;
	} else {
		printf("%s: OK (%zu plugin instance%s", d->conf.path, d->conf.n_plugins,
		       d->conf.n_plugins == 1 ? "" : "s");
		for (size_t i = 0; i < d->conf.n_plugins; i++)
			printf("%s%s=%s", i ? ", " : ": ", d->conf.plugins[i].instance,
			       d->conf.plugins[i].module);
		printf(")\n");
		rv = 0;
	}
	loomi_strv_free(&errs);
	loomi_plugins_fini(&d->plugins);
	return rv;
}

/* Detach: the parent waits until the child reports readiness on a pipe,
 * so `loomd -c FILE` returns once the daemon serves, with its status. */
static int
detach(int *notify_fd)
{
	int fds[2];
	pid_t pid;
	char status = 1;

	if (pipe(fds) != 0) {
		fprintf(stderr, "loomd: pipe: %s\n", strerror(errno));
		return -1;
	}
	if ((pid = fork()) < 0) {
		fprintf(stderr, "loomd: fork: %s\n", strerror(errno));
		return -1;
	}
	if (pid > 0) {
		close(fds[1]);
		if (read(fds[0], &status, 1) != 1)
			status = 1;
		_exit(status);
	}
	close(fds[0]);
	setsid();
	*notify_fd = fds[1];
	return 0;
}

static void
notify_ready(int *notify_fd, char status)
{
	int devnull;

	if (*notify_fd < 0)
		return;
	if (status == 0 && (devnull = open("/dev/null", O_RDWR)) >= 0) {
		dup2(devnull, STDIN_FILENO);
		dup2(devnull, STDOUT_FILENO);
		dup2(devnull, STDERR_FILENO);
		if (devnull > STDERR_FILENO)
			close(devnull);
	}
	if (write(*notify_fd, &status, 1) != 1)
		status = 1;
	close(*notify_fd);
	*notify_fd = -1;
}

/* systemd: loomd serves (again) */
static void
notify_serving(const loomi_daemon *d)
{
	loomi_notify("READY=1\nSTATUS=serving the API on %s; log level %s", d->url,
	             loomi_log_level_name(loomi_log_level()));
}

/* SIGHUP: reopen the log file, then read the configuration file again and
 * apply log.level (unless --log-level gave one: the command line wins)
 * and log.format.  Nothing else changes; a file that no longer loads is
 * reported, each problem with its line, and changes nothing. */
static void
reload(loomi_daemon *d, bool level_fixed)
{
	const char *path = d->conf.path;
	loomi_conf c;
	loomi_strv errs = {0};
	int level = loomi_log_level(), format = loomi_log_format();

	loomi_notify("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading the log settings from %s",
	             (unsigned long long)(loomi_mono_ns() / 1000), path);
	LOG_INFO("SIGHUP: reopening the log file, reading the log settings from %s", path);
	loomi_log_reopen();
	if (loomi_conf_load(&c, path, &errs) != 0) {
		for (size_t i = 0; i < errs.n; i++)
			LOG_ERROR("SIGHUP: %s", errs.v[i]);
		LOG_ERROR("SIGHUP: %s: %zu problem%s found; the log settings stay as they were (level "
		          "%s); loomd goes on serving",
		          path, errs.n, errs.n == 1 ? "" : "s", loomi_log_level_name(level));
	} else {
		int want = level_fixed ? level : c.log_level;
		char was[32] = "";
		if (level_fixed && c.log_level != level)
			LOG_INFO("SIGHUP: log.level \"%s\" in %s is not applied: --log-level %s was given "
			         "on the command line",
			         loomi_log_level_name(c.log_level), path, loomi_log_level_name(level));
		if (want != level)
			snprintf(was, sizeof was, " (was %s)", loomi_log_level_name(level));
		/* said at the more verbose of the two levels, so that it is seen */
		if (want > level)
			loomi_log_set(want, c.log_format);
		LOG_INFO("SIGHUP: log level %s%s, format %s%s; other settings take effect when loomd "
		         "restarts",
		         loomi_log_level_name(want), was, c.log_format == LOOMI_LOG_JSON ? "json" : "text",
		         c.log_format != format ? " (changed)" : "");
		loomi_log_set(want, c.log_format);
	}
	loomi_conf_free(&c);
	loomi_strv_free(&errs);
	notify_serving(d);
}

static int
start(loomi_daemon *d, char **err)
{
	loomi_bus_config bc = {0};
	loomi_strv errs = {0};
	char *db, *req = NULL, *ev = NULL, *urlfile;
	int rv;

	if ((rv = loomi_statedir_lock(d->conf.state_dir, &d->lock_fd, err)) != 0)
		return rv;
	db = loomi_path_join(d->conf.state_dir, "loom.db");
	rv = loomi_store_open(&d->store, db, err);
	free(db);
	if (rv != 0)
		return rv;
	/* the modules hear each other from here on */
	loomi_events_attach(d, loomi_modules, loomi_n_modules);
	/* init: the log store starts here, so that plugin loading is recorded */
	for (size_t i = 0; i < loomi_n_modules; i++) {
		const loomi_module *m = loomi_modules[i];
		if (m->init && (rv = m->init(d, err)) != 0)
			return rv;
	}

	req = d->conf.bus_requests ? loomi_strdup(d->conf.bus_requests)
	                           : loomi_strfmt("ipc://%s/bus.req", d->conf.state_dir);
	ev = d->conf.bus_events ? loomi_strdup(d->conf.bus_events)
	                        : loomi_strfmt("ipc://%s/bus.events", d->conf.state_dir);
	{
		/* a Unix socket's path has a hard limit (sun_path) */
		struct sockaddr_un sun;
		const char *addrs[2] = {req, ev};
		for (int k = 0; k < 2; k++) {
			if (strncmp(addrs[k], "ipc://", 6) == 0 && strlen(addrs[k] + 6) >= sizeof sun.sun_path) {
				*err = loomi_strfmt("the bus address %s is %zu bytes long, over the %zu a Unix "
				                    "socket allows; use a shorter state_dir, or set "
				                    "bus.requests and bus.events in the config",
				                    addrs[k], strlen(addrs[k] + 6), sizeof sun.sun_path - 1);
				free(req);
				free(ev);
				return LOOM_ECONFIG;
			}
		}
	}
	bc.requests = req;
	bc.events = ev;
	bc.max_message = d->conf.bus_max_message;
	rv = loomi_bus_open(&bc, &d->bus, err);
	if (rv == 0)
		LOG_INFO("bus: requests on %s, events on %s", req, ev);
	free(req);
	free(ev);
	if (rv != 0)
		return rv;

	if ((rv = loomi_plugins_init(&d->plugins, (const char *const *)d->conf.plugin_path.v,
	                             d->conf.plugin_path.n, d->conf.state_dir)) != 0) {
		*err = loomi_strdup("cannot set up the plugin loader (libltdl)");
		return rv;
	}
	d->plugins.bus = d->bus;
	for (size_t i = 0; i < d->conf.n_plugins; i++) {
		loom_instance *ins;
		loomi_instance_create(&d->plugins, &d->conf.doc, &d->conf.plugins[i], &ins, &errs);
	}
	if (errs.n > 0) {
		*err = loomi_strv_join(&errs, "\n");
		loomi_strv_free(&errs);
		return LOOM_ECONFIG;
	}
	for (size_t i = 0; i < d->plugins.n_instances; i++) {
		if ((rv = loomi_instance_start(d->plugins.instances[i], err)) != 0)
			return rv;
	}

	for (size_t i = 0; i < loomi_n_modules; i++) {
		const loomi_module *m = loomi_modules[i];
		if (m->start && (rv = m->start(d, err)) != 0)
			return rv;
	}
	if ((rv = loomi_api_start(d, d->conf.listen, err)) != 0)
		return rv;
	urlfile = loomi_path_join(d->conf.state_dir, "loomd.url");
	{
		char *line = loomi_strfmt("%s\n", d->url);
		if ((rv = loomi_write_file_atomic(urlfile, line, strlen(line), 0644)) != 0)
			LOG_WARN("cannot write %s: %s", urlfile, strerror(rv));
		free(line);
	}
	free(urlfile);
	return 0;
}

static void
stop(loomi_daemon *d)
{
	char *urlfile = loomi_path_join(d->conf.state_dir, "loomd.url");

	if (d->api) {
		unlink(urlfile);
		loomi_api_stop(d);
	}
	free(urlfile);
	/* backwards: the tasks first (their last transitions reach the others),
	 * the log store last */
	for (size_t i = loomi_n_modules; i-- > 0;) {
		const loomi_module *m = loomi_modules[i];
		if (m->stop)
			m->stop(d);
	}
	loomi_events_detach();
	loomi_plugins_fini(&d->plugins);
	loomi_bus_close(d->bus);
	d->bus = NULL;
	loomi_store_close(&d->store);
	if (d->lock_fd >= 0)
		loomi_statedir_unlock(d->conf.state_dir, d->lock_fd);
	d->lock_fd = -1;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"state-dir", required_argument, NULL, 's'},
		{"listen", required_argument, NULL, 'l'},
		{"check-config", no_argument, NULL, 't'},
		{"foreground", no_argument, NULL, 'f'},
		{"log-level", required_argument, NULL, 'L'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *conf_path = LOOM_CONF_FILE, *state_dir = NULL, *listen = NULL;
	const char *level_name = NULL;
	bool check = false, foreground = false;
	loomi_daemon d;
	loomi_strv errs = {0};
	sigset_t sigs;
	char *err = NULL, *log_err = NULL;
	int c, rv, level, notify_fd = -1;

	memset(&d, 0, sizeof d);
	d.lock_fd = -1;
	/* Metric batches are megabytes each (50,000 points: arrays of 0.4 to 2
	 * MiB).  glibc would map every one afresh and fault its pages in one by
	 * one — most of loomd's time per point in a virtual machine; from the
	 * heap they are reused.  Up to 64 MiB of free heap is kept. */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	while ((c = getopt_long(argc, argv, "c:s:l:tfL:Vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': conf_path = optarg; break;
		case 's': state_dir = optarg; break;
		case 'l': listen = optarg; break;
		case 't': check = true; break;
		case 'f': foreground = true; break;
		case 'L': level_name = optarg; break;
		case 'V': printf("loomd %s (plugin ABI %d.%d)\n", LOOM_VERSION_STRING,
		                 LOOM_ABI_MAJOR, LOOM_ABI_MINOR);
			  return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "loomd: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}
	if (level_name && (level = loomi_log_level_parse(level_name)) < 0) {
		fprintf(stderr, "loomd: --log-level: \"%s\" is not one of error, warn, info, debug, "
		                "trace\n",
		        level_name);
		return EXIT_USAGE;
	}
	if (state_dir && state_dir[0] == '\0') {
		fprintf(stderr, "loomd: --state-dir: give a directory\n");
		return EXIT_USAGE;
	}
	if (listen) {
		const char *why;
		if (loomi_listen_check(listen, &why) != 0) {
			fprintf(stderr, "loomd: --listen \"%s\": %s\n", listen, why);
			return EXIT_USAGE;
		}
	}

	/* systemd's socket is loomd's alone: out of the environment before
	 * any thread starts, so workers (and what they run) never inherit it */
	loomi_notify_init();

	/* Signals are taken synchronously by the main thread: block them
	 * before any thread starts, so every thread inherits the mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (loomi_conf_load(&d.conf, conf_path, &errs) != 0) {
		print_errors(&errs);
		if (check)
			fprintf(stderr, "%s: %zu problem%s found\n", conf_path, errs.n,
			        errs.n == 1 ? "" : "s");
		loomi_strv_free(&errs);
		loomi_conf_free(&d.conf);
		return 1;
	}
	if (state_dir) {
		free(d.conf.state_dir);
		d.conf.state_dir = loomi_strdup(state_dir);
	}
	if (listen) {
		free(d.conf.listen);
		d.conf.listen = loomi_strdup(listen);
	}
	if (level_name)
		d.conf.log_level = loomi_log_level_parse(level_name);
	loomi_log_setup(d.conf.log_level, d.conf.log_format, NULL, NULL);

	if (check) {
		rv = check_config(&d);
		loomi_conf_free(&d.conf);
		return rv;
	}
	{
		/* each running worker and API client holds a descriptor: take
		 * what the hard limit allows (often 1024 soft of 1M hard) */
		struct rlimit rl;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}

	if (!foreground && detach(&notify_fd) != 0) {
		loomi_conf_free(&d.conf);
		return 1;
	}
	/* A detached daemon without a log file logs into its state directory. */
	{
		char *file = d.conf.log_file ? loomi_strdup(d.conf.log_file)
		             : foreground    ? NULL
		                             : loomi_path_join(d.conf.state_dir, "loomd.log");
		if (file)
			(void)loomi_mkdir_p(d.conf.state_dir, 0750); /* failure: the lock reports it */
		if (loomi_log_setup(d.conf.log_level, d.conf.log_format, file, &log_err) != 0) {
			fprintf(stderr, "loomd: %s\n", log_err);
			free(log_err);
			free(file);
			notify_ready(&notify_fd, 1);
			loomi_conf_free(&d.conf);
			return 1;
		}
		free(file);
	}

	d.started_ms = loomi_wall_ms();
	d.started_ns = loomi_mono_ns();
	LOG_INFO("loomd %s starting (config %s, state %s, pid %ld)", LOOM_VERSION_STRING,
	         conf_path, d.conf.state_dir, (long)getpid());
	if ((rv = start(&d, &err)) != 0) {
		LOG_ERROR("cannot start: %s", err ? err : loom_strerror(rv));
		if (!foreground || d.conf.log_file)
			fprintf(stderr, "loomd: cannot start: %s\n", err ? err : loom_strerror(rv));
		{
			/* STATUS= is one line: the problems joined by "; " */
			char *why = loomi_strdup(err ? err : loom_strerror(rv)), *nl;
			while ((nl = strchr(why, '\n')) != NULL) {
				char *joined;
				*nl = '\0';
				joined = loomi_strfmt("%s; %s", why, nl + 1);
				free(why);
				why = joined;
			}
			loomi_notify("STATUS=cannot start: %s", why);
			free(why);
		}
		free(err);
		stop(&d);
		notify_ready(&notify_fd, 1);
		loomi_log_close();
		loomi_conf_free(&d.conf);
		return 1;
	}
	LOG_INFO("loomd ready: API on %s, %zu plugin instance%s", d.url, d.plugins.n_instances,
	         d.plugins.n_instances == 1 ? "" : "s");
	notify_ready(&notify_fd, 0);
	notify_serving(&d);

	for (;;) {
		int sig;
		if (sigwait(&sigs, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			reload(&d, level_name != NULL);
			continue;
		}
		LOG_INFO("%s: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
		break;
	}
	loomi_notify("STOPPING=1\nSTATUS=stopping: pausing running tasks, then the API and the "
	             "plugins");
	stop(&d);
	LOG_INFO("loomd stopped");
	loomi_log_close();
	loomi_conf_free(&d.conf);
	loomi_notify_fini();
	return 0;
}
