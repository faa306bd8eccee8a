/* loomctl's shared pieces: the HTTP exchange with loomd, printing, argument
 * checks, and the commands that live in their own files. */
#ifndef LOOM_HOST_LOOMCTL_H
#define LOOM_HOST_LOOMCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

enum {
	EXIT_REFUSED = 1,
	EXIT_USAGE = 2,
	EXIT_UNREACHABLE = 3,
};

#define DEFAULT_URL "http://127.0.0.1:7420"
/* loomd's socket where its state directory is the installed default */
#define DEFAULT_SOCKET LOOM_STATE_DIR "/loomd.sock"

/* Where loomd is, and how loomctl speaks to it (loomctl-conn.c). */
typedef struct ctl {
	const char *url;        /* http:// or https://; NULL over the socket */
	const char *socket;     /* the Unix socket's path, or NULL */
	const char *where;      /* the URL or the socket, for messages */
	const char *cacert;     /* --cacert / LOOM_CACERT, for https:// */
	char *token;            /* sent as Authorization: Bearer; NULL: none */
	const char *token_from; /* "--token", "LOOM_TOKEN", "the token file" */
	bool json;
	int timeout_ms;
	bool timeout_given; /* --timeout: else a long transfer may take longer */
} ctl;

typedef struct reply {
	int status;
	json_t *body;
	char *text; /* a text answer as sent (configs show --format); free it */
	size_t len;
	char *header; /* the answer header outgoing.header asked for, or NULL; free it */
} reply;

/* An outgoing request beyond a JSON body (exchange_req): any body, and an answer
 * header to keep. */
typedef struct outgoing {
	const char *method, *path;
	const char *ctype; /* the body's Content-Type; NULL: no body */
	const void *body;
	size_t len;
	bool text;          /* keep a 200 answer as sent in reply.text */
	const char *header; /* the name of an answer header: its value in reply.header */
	/* with sink, a 200 answer's body is not kept: it is handed to sink
	 * in pieces as it arrives (reply.len: the bytes), so a large answer
	 * is never held whole nor copied; sink returns 0 or an errno, which
	 * ends the exchange (said as a write failure) */
	int (*sink)(void *arg, const void *data, size_t len);
	/* with sink: called once a 200 answer's head is in, before its body,
	 * with the value of outgoing.header (or NULL) and the body's length */
	void (*on_head)(void *arg, const char *header, size_t body_len);
	void *sink_arg;
} outgoing;

/* The token to send, from given (--token), else LOOM_TOKEN, else (not
 * over the socket, where loomd knows the user) the token file; 0, or
 * EXIT_USAGE after saying why a token given or the file is unusable. */
int token_setup(ctl *c, const char *given);
/* ${XDG_CONFIG_HOME:-$HOME/.config}/loom/token (free it); NULL without
 * either variable. */
char *token_file_path(void);

/* One HTTP exchange, over the URL or the socket.  Returns 0 with *out
 * filled, or EXIT_UNREACHABLE (EXIT_USAGE for a bad URL or CA file)
 * after printing why.  With text, a 200 answer is kept as sent in
 * out->text instead of being read as JSON. */
int exchange(const ctl *c, const char *method, const char *path, const char *body, bool text,
             reply *out);
/* The same for any request: a body of q->len bytes (an upload's part as
 * application/octet-stream), an answer header kept. */
int exchange_req(const ctl *c, const outgoing *q, reply *out);
/* The same, reading the answer as JSON. */
int http(const ctl *c, const char *method, const char *path, const char *body, reply *out);

/* A string field for printing: "-" when absent; a number field. */
const char *S(const json_t *obj, const char *key);
double N(const json_t *obj, const char *key);

/* Print an API error and return EXIT_REFUSED. */
/* A path or query segment: every byte but the unreserved ones
 * percent-escaped, so a name (a model's, a dataset's, a user's) never
 * reaches another route (malloc'd). */
char *path_segment(const char *s);
int refused(const ctl *c, const reply *r);
int print_json(const reply *r);
/* The usual ending of a request: refused unless the status is ok, else
 * the JSON with --json, else print(body). */
int answer(const ctl *c, reply *r, int ok, void (*print)(const json_t *body));

/* "KIND-12" or "12": the number, checked so it needs no escaping in a
 * path; NULL after saying what an id of kind looks like. */
const char *id_arg(const char *s, const char *kind, const char *example, const char *lister);
const char *task_arg(const char *s);
/* The value of option opt is a whole number (the daemon checks its range). */
bool number_arg(const char *opt, const char *s);
/* A task state from which it will not move by itself. */
bool final_state(const char *s);

/* The JSON or libconfig document in file ("-": standard input); 0 with
 * *spec set, else EXIT_USAGE (unreadable) or bad_syntax after printing why. */
int read_spec(const char *file, int bad_syntax, json_t **spec);

/* loomctl-term.c: human output made harmless to the terminal.  term_setup
 * sends stderr, and stdout when filter_stdout, through term_escape:
 * control characters (but newline and tab), DEL, bidi controls and bytes
 * that are not UTF-8 come out visibly escaped (\x1b, \u202e, \xff).
 * term_raw() is stdout unfiltered, flushed up to now, for bytes that must
 * pass as they are (loomctl's own terminal codes, files and exports the
 * user asked for); flush it after use. */
void term_setup(bool filter_stdout);
FILE *term_raw(void);
/* Escape n bytes of s into out (room for 4 * n + 8 bytes); *used is how
 * many were consumed: all but an incomplete UTF-8 sequence at the end,
 * unless final.  Returns the length written to out. */
size_t term_escape(const char *s, size_t n, char *out, size_t *used, bool final);

/* Commands in loomctl-conn.c: keep a token for later, forget it. */
int cmd_login(ctl *c, int argc, char **argv);
int cmd_logout(ctl *c, int argc, char **argv);
/* Commands in loomctl-alerts.c. */
/* Metrics as people read them (loomctl-metrics.c), of a run or a version
 * as JSON ("metrics", "headline", "details").  metric_names: the headline
 * names in order, with all then the rest by name (a malloc'd array of
 * borrowed names; *more: those left out).  print_metrics: one "name value"
 * line each, the first without indent; returns the metrics left out.
 * print_details: each detail table as a table. */
const char **metric_names(const json_t *o, bool all, size_t *n, size_t *more);
size_t print_metrics(const json_t *o, const char *indent, bool all);
void print_details(const json_t *o, const char *indent);
/* Higher is better for accuracy, F1, R², precision, recall, AUC. */
bool higher_better(const char *name);

int cmd_alerts(const ctl *c, int argc, char **argv);
/* loomctl-users.c */
int cmd_users(const ctl *c, int argc, char **argv);
int cmd_tokens(const ctl *c, int argc, char **argv);
int cmd_share(const ctl *c, int argc, char **argv);
int cmd_whoami(const ctl *c, int argc, char **argv);
/* loomctl-label.c: labeling projects, rounds, review and export. */
int cmd_label(const ctl *c, int argc, char **argv);
/* loomctl-data.c: versioned datasets (import, log, diff, checkout, …). */
int cmd_data(const ctl *c, int argc, char **argv);
/* Commands in loomctl-logs.c. */
int cmd_logs(const ctl *c, int argc, char **argv);
/* Commands in loomctl-models.c. */
int cmd_models(const ctl *c, int argc, char **argv);
int cmd_predict(const ctl *c, int argc, char **argv);
/* Commands in loomctl-results.c. */
int cmd_runs(const ctl *c, int argc, char **argv);
int cmd_compare(const ctl *c, int argc, char **argv);
int cmd_report(const ctl *c, int argc, char **argv);
int cmd_export(const ctl *c, int argc, char **argv);

#endif /* LOOM_HOST_LOOMCTL_H */
