/* The observer list (host/server/events.h): listeners hear the kinds they
 * declared, in module-table order, with the event as emitted; nothing is
 * heard before attach or after detach; and loomd's own table wires job
 * transitions, worker reports and log entries to the modules that need
 * them (alerts, tracking, the registry, the log store). */
#include "config.h"

#include <string.h>

#include "host/server/events.h"
#include "host/server/module.h"
#include "testutil.h"

static char heard[512];
static loomi_daemon the_daemon;

static void
note(const char *who, loomi_daemon *d, const loomi_event *ev)
{
	char line[128];
	ck_assert_ptr_eq(d, &the_daemon);
	snprintf(line, sizeof line, "%s:%s:%lld;", who, loomi_event_kind_name(ev->kind),
	         (long long)ev->job);
	strncat(heard, line, sizeof heard - strlen(heard) - 1);
}

static void
a_state(loomi_daemon *d, const loomi_event *ev)
{
	note("a", d, ev);
	ck_assert_str_eq(ev->u.state.from, "running");
	ck_assert_str_eq(ev->u.state.to, "completed");
	ck_assert_str_eq(ev->u.state.reason, "");
}

static void
a_log(loomi_daemon *d, const loomi_event *ev)
{
	note("a", d, ev);
	ck_assert_str_eq(ev->u.log.message, "hello");
	ck_assert_int_eq(ev->u.log.level, LOOM_LOG_WARN);
}

static void
b_state(loomi_daemon *d, const loomi_event *ev)
{
	note("b", d, ev);
}

static const loomi_listener a_listens[] = {
	{LOOMI_EV_JOB_STATE, a_state},
	{LOOMI_EV_JOB_LOG, a_log},
};
static const loomi_listener b_listens[] = {
	{LOOMI_EV_JOB_STATE, b_state},
};
static const loomi_module mod_a = {.name = "a", .listeners = a_listens, .n_listeners = 2};
static const loomi_module mod_b = {.name = "b", .listeners = b_listens, .n_listeners = 1};
static const loomi_module mod_deaf = {.name = "deaf"};

static void
emit_state(int64_t job)
{
	loomi_event ev = {.kind = LOOMI_EV_JOB_STATE, .job = job};
	ev.u.state.from = "running";
	ev.u.state.to = "completed";
	ev.u.state.reason = "";
	loomi_events_emit(&ev);
}

START_TEST(listeners_in_table_order)
{
	const loomi_module *table[] = {&mod_b, &mod_deaf, &mod_a};
	loomi_event log = {.kind = LOOMI_EV_JOB_LOG, .job = 9};

	heard[0] = '\0';
	emit_state(1); /* before attach: nobody */
	ck_assert_str_eq(heard, "");

	loomi_events_attach(&the_daemon, table, 3);
	emit_state(2);
	ck_assert_str_eq(heard, "b:job.state:2;a:job.state:2;");

	heard[0] = '\0';
	log.u.log.message = "hello";
	log.u.log.level = LOOM_LOG_WARN;
	loomi_events_emit(&log);
	ck_assert_str_eq(heard, "a:job.log:9;");

	/* a kind nobody hears, and one that does not exist */
	heard[0] = '\0';
	log.kind = LOOMI_EV_RUN_POINTS;
	loomi_events_emit(&log);
	log.kind = LOOMI_EV_KINDS;
	loomi_events_emit(&log);
	log.kind = 0;
	loomi_events_emit(&log);
	ck_assert_str_eq(heard, "");

	/* a second attach replaces the first */
	table[0] = &mod_a;
	table[2] = &mod_b;
	loomi_events_attach(&the_daemon, table, 3);
	emit_state(3);
	ck_assert_str_eq(heard, "a:job.state:3;b:job.state:3;");

	heard[0] = '\0';
	loomi_events_detach();
	emit_state(4);
	ck_assert_str_eq(heard, "");
}
END_TEST

/* Which modules of loomd's table hear kind, in order: "alerts,tracking". */
static void
hearers(int kind, char *out, size_t size)
{
	out[0] = '\0';
	for (size_t m = 0; m < loomi_n_modules; m++) {
		for (size_t i = 0; i < loomi_modules[m]->n_listeners; i++) {
			if (loomi_modules[m]->listeners[i].kind != kind)
				continue;
			if (out[0])
				strncat(out, ",", size - strlen(out) - 1);
			strncat(out, loomi_modules[m]->name, size - strlen(out) - 1);
		}
	}
}

START_TEST(loomd_wiring)
{
	char who[256];

	hearers(LOOMI_EV_JOB_STATE, who, sizeof who);
	ck_assert_str_eq(who, "alerts,tracking,registry");
	hearers(LOOMI_EV_JOB_ATTACH, who, sizeof who);
	ck_assert_str_eq(who, "tracking");
	hearers(LOOMI_EV_JOB_POINTS, who, sizeof who);
	ck_assert_str_eq(who, "tracking");
	hearers(LOOMI_EV_JOB_LOG, who, sizeof who);
	ck_assert_str_eq(who, "logs");
	hearers(LOOMI_EV_LOG_ENTRY, who, sizeof who);
	ck_assert_str_eq(who, "alerts");
	hearers(LOOMI_EV_RUN_POINTS, who, sizeof who);
	ck_assert_str_eq(who, "alerts");
	for (int k = 1; k < LOOMI_EV_KINDS; k++)
		ck_assert_str_ne(loomi_event_kind_name(k), "?");
	ck_assert_str_eq(loomi_event_kind_name(LOOMI_EV_KINDS), "?");
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("events");
	TCase *tc = tcase_create("events");
	tcase_add_test(tc, listeners_in_table_order);
	tcase_add_test(tc, loomd_wiring);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
