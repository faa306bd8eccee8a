/* loom-worker --serve DIR --listen URL: an inference worker.  It opens
 * DIR's model once, listens on URL (a rep socket), and answers the
 * requests of docs/inference.md's wire format (host/core/serve.h) one at a
 * time until SIGTERM or SIGINT.  Also the model opening --predict shares. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "host/core/log.h"
#include "host/core/serve.h"
#include "host/core/util.h"
#include "worker.h"

/* ------------------------------------------------------------------ the model */

int
worker_model_open(worker_model *wm, const char *dir, const char *conf_path)
{
	char *job_path = loomi_path_join(dir, "job.json");
	json_t *job = json_load_file(job_path, 0, NULL);
	const char *compute = json_string_value(json_object_get(job, "compute"));
	const void *o;
	int rv = EXIT_FAILED;

	memset(wm, 0, sizeof *wm);
	wm->conf_path = conf_path;
	wm->host = loomi_host_services();
	if (worker_load_plugins(&wm->reg, conf_path, &wm->conf, &wm->doc) != 0)
		goto out;
	if (compute == NULL)
		compute = "transformer";
	if (wm->reg.n_instances == 0 ||
	    wm->host->instance_ops(wm->reg.instances[0], compute, LOOM_KIND_COMPUTE, &o, &wm->ctx) !=
	            0) {
		fprintf(stderr, "loom-worker: no compute plugin instance \"%s\"; check -c FILE\n",
		        compute);
		goto out;
	}
	wm->ops = o;
	if (!(wm->ops->caps & LOOM_COMPUTE_PREDICT) || !LOOM_OPS_HAS(wm->ops, model_close)) {
		fprintf(stderr, "loom-worker: the compute plugin \"%s\" does not predict\n", compute);
		goto out;
	}
	if (wm->ops->model_open(wm->ctx, dir, &wm->model, &wm->info_text) != 0) {
		wm->model = NULL;
		fprintf(stderr, "loom-worker: cannot open the model in %s (see above)\n", dir);
		goto out;
	}
	if ((wm->info = json_loads(wm->info_text, 0, NULL)) == NULL) {
		fprintf(stderr, "loom-worker: the model in %s describes itself in invalid JSON\n", dir);
		goto out;
	}
	rv = 0;
out:
	json_decref(job);
	free(job_path);
	return rv;
}

void
worker_model_close(worker_model *wm)
{
	if (wm->model)
		wm->ops->model_close(wm->ctx, wm->model);
	if (wm->info_text)
		wm->host->free(wm->info_text);
	json_decref(wm->info);
	loomi_plugins_fini(&wm->reg);
	if (wm->conf_path)
		loomi_conf_free(&wm->conf);
	else
		loomi_doc_free(&wm->doc);
	memset(wm, 0, sizeof *wm);
}

/* ------------------------------------------------------------------ requests */

/* The last error line a plugin logged during a request: its reply's text. */
static char last_error[1024];

static void
error_sink(int level, const char *who, const char *msg)
{
	(void)who;
	if (level == LOOM_LOG_ERROR)
		snprintf(last_error, sizeof last_error, "%s", msg);
}

typedef struct server {
	worker_model *wm;
	int64_t context, channels;  /* the model's windows */
	unsigned passes;            /* MC-dropout passes by default */
	bool mc;                    /* the uncertainty is MC dropout's (it has passes) */
	uint64_t served, refused;
} server;

static int
answer_error(const loomi_serve_msg *m, int status, const char *why, void **rep, size_t *rlen)
{
	fprintf(stderr, "loom-worker: request %llu: %s\n", (unsigned long long)m->id, why);
	return loomi_serve_encode_text(m->op, m->id, (uint32_t)status, why, rep, rlen);
}

static int
answer_predict(server *s, const loomi_serve_msg *m, void **rep, size_t *rlen)
{
	const loom_compute_ops *ops = s->wm->ops;
	bool want_spread = m->flags & LOOMI_SERVE_UNCERTAINTY;
	loom_tensor in = {0}, out = {0}, spread = {0};
	uint32_t dims[3] = {0};
	char why[1200];
	int rv;

	if ((int64_t)m->dims[1] != s->context || (int64_t)m->dims[2] != s->channels) {
		snprintf(why, sizeof why,
		         "predict: the model takes windows of %lld steps of %lld channels (see info); "
		         "got %u × %u",
		         (long long)s->context, (long long)s->channels, m->dims[1], m->dims[2]);
		return answer_error(m, LOOM_EINVAL, why, rep, rlen);
	}
	if (want_spread && !LOOM_OPS_HAS(ops, predict_spread))
		return answer_error(m, LOOM_ENOTSUP,
		                    "predict: this model's compute plugin tells no uncertainty; ask "
		                    "without the UNCERTAINTY flag",
		                    rep, rlen);
	in.dtype = LOOM_DTYPE_F32;
	in.ndim = 3;
	for (int i = 0; i < 3; i++)
		in.dims[i] = m->dims[i];
	in.nbytes = m->length;
	in.data = loomi_xcalloc(1, m->length);
	memcpy(in.data, m->payload, m->length); /* little-endian f32, as this host's */
	last_error[0] = '\0';
	if (want_spread) {
		char opts[64];
		snprintf(opts, sizeof opts, "{\"passes\": %u}", m->passes ? m->passes : s->passes);
		rv = ops->predict_spread(s->wm->ctx, s->wm->model, &in, &out, &spread, opts);
	} else {
		rv = ops->predict(s->wm->ctx, s->wm->model, &in, &out);
	}
	free(in.data);
	if (rv != 0) {
		snprintf(why, sizeof why, "%s", last_error[0] ? last_error : loom_strerror(rv));
		return answer_error(m, rv, why, rep, rlen);
	}
	for (uint32_t i = 0; i < out.ndim && i < 3; i++)
		dims[i] = (uint32_t)out.dims[i];
	rv = loomi_serve_encode_prediction(m->id, out.ndim, dims, out.data, spread.data,
	                                   spread.data && s->mc ? (m->passes ? m->passes : s->passes)
	                                                        : 0,
	                                   rep, rlen);
	if (rv != 0)
		rv = answer_error(m, rv, "predict: the answer is over the wire format's limits; send "
		                         "fewer windows",
		                  rep, rlen);
	s->wm->host->tensor_free(out.data);
	if (spread.data)
		s->wm->host->tensor_free(spread.data);
	return rv;
}

/* The windows of a file, as the model reads it: at most as many as one
 * predict request takes (by count and by bytes), so that the caller can
 * predict them in one request. */
static int
answer_windows(server *s, const loomi_serve_msg *m, void **rep, size_t *rlen)
{
	const loom_compute_ops *ops = s->wm->ops;
	loom_tensor win = {0};
	char *path = NULL, *meta = NULL, why[1200];
	int64_t from, to, stride, max = LOOMI_SERVE_MAX_WINDOWS;
	int rv;

	if (!LOOM_OPS_HAS(ops, model_windows))
		return answer_error(m, LOOM_ENOTSUP, "this model's compute plugin cannot read files; "
		                    "send the windows as inputs", rep, rlen);
	if (s->context * s->channels * 4 > 0 &&
	    (int64_t)LOOMI_SERVE_MAX_PAYLOAD / (s->context * s->channels * 4) < max)
		max = (int64_t)LOOMI_SERVE_MAX_PAYLOAD / (s->context * s->channels * 4);
	loomi_serve_windows_args(m, &path, &from, &to, &stride);
	last_error[0] = '\0';
	rv = ops->model_windows(s->wm->ctx, s->wm->model, path, from, to, stride, max, &win, &meta);
	free(path);
	if (rv != 0) {
		snprintf(why, sizeof why, "%s", last_error[0] ? last_error : loom_strerror(rv));
		return answer_error(m, rv, why, rep, rlen);
	}
	if (win.dtype != LOOM_DTYPE_F32 || win.ndim != 3 || win.dims[0] < 1 ||
	    win.dims[1] != s->context || win.dims[2] != s->channels || meta == NULL ||
	    win.nbytes != (size_t)(win.dims[0] * win.dims[1] * win.dims[2]) * 4) {
		rv = answer_error(m, LOOM_EINTERNAL, "windows: the compute plugin's windows are not "
		                  "the model's input shape", rep, rlen);
	} else if ((rv = loomi_serve_encode_windows(m->id, (uint32_t)win.dims[0],
	                                            (uint32_t)win.dims[1], (uint32_t)win.dims[2],
	                                            win.data, meta, rep, rlen)) != 0) {
		rv = answer_error(m, rv, "windows: the answer is over the wire format's limits; "
		                  "narrow from_line and to_line", rep, rlen);
	}
	if (win.data)
		s->wm->host->tensor_free(win.data);
	if (meta)
		s->wm->host->free(meta);
	return rv;
}

/* The reply to one request, never NULL. */
static void
answer(server *s, const void *buf, size_t len, void **rep, size_t *rlen)
{
	loomi_serve_msg m;
	char why[256];
	int rv;

	if ((rv = loomi_serve_decode_request(buf, len, &m, why, sizeof why)) != 0) {
		s->refused++;
		answer_error(&m, rv, why, rep, rlen);
		return;
	}
	switch (m.op) {
	case LOOMI_SERVE_PING: loomi_serve_encode_text(m.op, m.id, 0, "", rep, rlen); break;
	case LOOMI_SERVE_INFO:
		loomi_serve_encode_text(m.op, m.id, 0, s->wm->info_text, rep, rlen);
		break;
	case LOOMI_SERVE_WINDOWS:
		if (answer_windows(s, &m, rep, rlen) != 0 && *rep == NULL)
			loomi_serve_encode_text(m.op, m.id, LOOM_EINTERNAL, "windows: cannot encode the "
			                        "answer", rep, rlen);
		break;
	default:
		if (answer_predict(s, &m, rep, rlen) != 0 && *rep == NULL)
			loomi_serve_encode_text(m.op, m.id, LOOM_EINTERNAL, "predict: cannot encode the "
			                        "answer", rep, rlen);
		break;
	}
	s->served++;
}

/* ------------------------------------------------------------------ the loop */

typedef struct stopper {
	sigset_t set;
	nng_socket sock;
	int sig;
	pid_t parent;            /* who started it (loomd) */
} stopper;

/* Waits for SIGTERM or SIGINT (blocked in every thread), or for the
 * process that started the worker to be gone (loomd killed with -9: the
 * worker is reparented), and closes the socket, which ends the loop's
 * receive.  A worker never outlives its loomd; the next loomd starts its
 * own. */
static void *
wait_stop(void *arg)
{
	stopper *st = arg;
	struct timespec second = {1, 0};
	int sig;

	for (;;) {
		if ((sig = sigtimedwait(&st->set, NULL, &second)) > 0)
			break;
		if (getppid() != st->parent) {
			sig = 0;
			break;
		}
	}
	st->sig = sig;
	nng_close(st->sock);
	return NULL;
}

/* An ipc path is held by a lock on PATH.lock (flock, released by the
 * kernel when its worker dies, however it dies): a second worker on the
 * same path is refused before NNG touches the socket file.  (Probing the
 * socket with a connection instead left the first worker, NNG 1.5.2, no
 * longer accepting connections, seen here.)  Returns the lock's fd, or -1
 * with the reason printed. */
static int
ipc_lock(const char *url, char **lock_path)
{
	int fd;

	*lock_path = loomi_strfmt("%s.lock", url + 6);
	if ((fd = open(*lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		fprintf(stderr, "loom-worker: --listen %s: cannot create %s: %s\n", url, *lock_path,
		        strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		fprintf(stderr, "loom-worker: --listen %s: address in use: another process is "
		                "listening there (it holds %s); stop it or choose another path\n",
		        url, *lock_path);
		close(fd);
		return -1;
	}
	/* ours now: a socket file left there is a dead worker's */
	{
		struct stat sb;
		if (lstat(url + 6, &sb) == 0 && S_ISSOCK(sb.st_mode))
			unlink(url + 6);
	}
	return fd;
}

static int
listen_on(nng_socket sock, const char *url, char **bound)
{
	nng_listener l;
	int rv, port = 0;


	if ((rv = nng_listener_create(&l, sock, url)) != 0) {
		fprintf(stderr, "loom-worker: --listen %s: %s; give ipc:///PATH or "
		                "tcp://127.0.0.1:PORT\n",
		        url, nng_strerror(rv));
		return EXIT_USAGE;
	}
	nng_listener_set_size(l, NNG_OPT_RECVMAXSZ,
	                      LOOMI_SERVE_HEADER + (size_t)LOOMI_SERVE_MAX_PAYLOAD);
	if (strncmp(url, "ipc://", 6) == 0)
		nng_listener_set_int(l, NNG_OPT_IPC_PERMISSIONS, 0600);
	if ((rv = nng_listener_start(l, 0)) != 0) {
		fprintf(stderr, "loom-worker: --listen %s: %s%s\n", url, nng_strerror(rv),
		        rv == NNG_EADDRINUSE ? ": another process is listening there; stop it or "
		                               "choose another path"
		                             : "");
		return EXIT_FAILED;
	}
	*bound = loomi_strdup(url);
	if (strncmp(url, "tcp://", 6) == 0 &&
	    nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port) == 0) {
		/* tcp://HOST:0 → the port the system gave */
		const char *colon = strrchr(url, ':');
		if (colon && strcmp(colon, ":0") == 0) {
			free(*bound);
			*bound = loomi_strfmt("%.*s:%d", (int)(colon - url), url, port);
		}
	}
	return 0;
}

int
worker_serve(const char *dir, const char *url, const char *conf_path, unsigned passes)
{
	worker_model wm;
	server s = {.wm = &wm, .passes = passes};
	stopper st = {0};
	pthread_t waiter;
	char *bound = NULL, *lock_path = NULL;
	const json_t *shape;
	int rv, lock_fd = -1;

	/* SIGTERM and SIGINT reach only the waiter: blocked before any thread
	 * (the engine's pool, NNG's) starts */
	st.parent = getppid();
	sigemptyset(&st.set);
	sigaddset(&st.set, SIGTERM);
	sigaddset(&st.set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &st.set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if ((rv = worker_model_open(&wm, dir, conf_path)) != 0) {
		worker_model_close(&wm);
		return rv;
	}
	shape = json_object_get(json_object_get(wm.info, "input"), "shape");
	s.context = json_integer_value(json_array_get(shape, 1));
	s.channels = json_integer_value(json_array_get(shape, 2));
	{
		const char *method = json_string_value(
			json_object_get(json_object_get(wm.info, "uncertainty"), "method"));
		s.mc = method && strcmp(method, "mc_dropout") == 0;
	}
	if (strncmp(url, "ipc://", 6) == 0 && (lock_fd = ipc_lock(url, &lock_path)) < 0) {
		free(lock_path);
		worker_model_close(&wm);
		return EXIT_FAILED;
	}
	if ((rv = nng_rep0_open(&st.sock)) != 0) {
		fprintf(stderr, "loom-worker: cannot open a socket: %s\n", nng_strerror(rv));
		rv = EXIT_FAILED;
		goto out;
	}
	if ((rv = listen_on(st.sock, url, &bound)) != 0) {
		nng_close(st.sock);
		goto out;
	}
	if (pthread_create(&waiter, NULL, wait_stop, &st) != 0) {
		fprintf(stderr, "loom-worker: cannot start a thread\n");
		nng_close(st.sock);
		rv = EXIT_FAILED;
		goto out;
	}
	loomi_log_set_sink(error_sink);
	printf("ready %s\n", bound);
	fflush(stdout);

	for (;;) {
		void *buf = NULL, *rep = NULL;
		size_t len = 0, rlen = 0;

		rv = nng_recv(st.sock, &buf, &len, NNG_FLAG_ALLOC);
		if (rv == NNG_ECLOSED)
			break;
		if (rv != 0) {
			fprintf(stderr, "loom-worker: receive: %s\n", nng_strerror(rv));
			continue;
		}
		answer(&s, buf, len, &rep, &rlen);
		nng_free(buf, len);
		if ((rv = nng_send(st.sock, rep, rlen, 0)) != 0 && rv != NNG_ECLOSED)
			fprintf(stderr, "loom-worker: send: %s\n", nng_strerror(rv));
		free(rep);
		if (rv == NNG_ECLOSED)
			break;
	}
	pthread_join(waiter, NULL);
	loomi_log_set_sink(NULL);
	if (st.sig)
		fprintf(stderr, "loom-worker: %s: stopping (%llu requests answered, %llu malformed)\n",
		        strsignal(st.sig), (unsigned long long)s.served, (unsigned long long)s.refused);
	else
		fprintf(stderr, "loom-worker: the process that started it (pid %lld) is gone: "
		                "stopping (%llu requests answered, %llu malformed)\n",
		        (long long)st.parent, (unsigned long long)s.served,
		        (unsigned long long)s.refused);
	rv = 0;
out:
	worker_model_close(&wm);
	free(bound);
	if (lock_fd >= 0) {
		unlink(lock_path);
		close(lock_fd);
	}
	free(lock_path);
	return rv;
}
