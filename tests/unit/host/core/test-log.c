/* host/core/log: repeated failures are written once, counted, and the
 * count written later ("… (repeated N times in the last S s)"). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/core/log.h"
#include "testutil.h"

/* The limiter's clock, moved by the tests. */
static int64_t now_ms;

static int64_t
clock_ms(void)
{
	return now_ms;
}

/* Lines of the captured log containing text. */
static int
count(const char *text)
{
	const char *p = tu_log_text();
	int n = 0;
	while ((p = strstr(p, text)) != NULL) {
		n++;
		p += strlen(text);
	}
	return n;
}

static void
setup(void)
{
	now_ms = 1000000;
	loomi_log_limit_setup(60000, clock_ms);
	tu_log_capture();
}

static void
teardown(void)
{
	tu_log_stop();
	loomi_log_limit_setup(0, NULL);
}

static void
fail_write(const char *path)
{
	loomi_log_limited(LOOM_LOG_ERROR, "tracker:tb", "cannot write %s: %s", path,
	                  "No space left on device");
}

START_TEST(first_written_then_counted)
{
	/* two a second for a minute, as the tensorboard tracker did */
	for (int i = 0; i < 120; i++) {
		char path[32];
		snprintf(path, sizeof path, "events.%d", i);
		fail_write(path);
		now_ms += 499;
	}
	ck_assert_int_eq(count("cannot write"), 1);
	ck_assert(tu_log_has("cannot write events.0: No space left on device"));
	ck_assert_int_eq(count("repeated"), 0);
	/* the window has passed: the next line reports the count, with the
	 * newest suppressed line, then is written itself */
	now_ms += 2000;
	fail_write("events.late");
	ck_assert_msg(tu_log_has("cannot write events.119: No space left on device (repeated 119 "
	                         "times in the last 62 s)"),
	              "%s", tu_log_text());
	ck_assert(tu_log_has("cannot write events.late"));
	ck_assert_int_eq(count("cannot write"), 3);
}
END_TEST

START_TEST(flush_reports_when_failures_stop)
{
	fail_write("a");
	now_ms += 10;
	fail_write("b");
	fail_write("c");
	loomi_log_limited_flush(); /* within the window: nothing yet */
	ck_assert_int_eq(count("repeated"), 0);
	now_ms += 60000;
	loomi_log_limited_flush();
	ck_assert_msg(tu_log_has("cannot write c: No space left on device (repeated 2 times in "
	                         "the last 61 s)"),
	              "%s", tu_log_text());
	loomi_log_limited_flush(); /* reported once */
	ck_assert_int_eq(count("repeated"), 1);
	/* the kind was forgotten: its next line is written at once */
	fail_write("d");
	ck_assert(tu_log_has("cannot write d"));
}
END_TEST

START_TEST(kinds_are_apart)
{
	/* another writer, another template, another level: each its own kind */
	fail_write("a");
	loomi_log_limited(LOOM_LOG_ERROR, "tracker:jsonl", "cannot write %s: %s", "a", "full");
	loomi_log_limited(LOOM_LOG_WARN, NULL, "store: %s", "database or disk is full");
	loomi_log_limited(LOOM_LOG_WARN, NULL, "store: %s", "database or disk is full");
	ck_assert_int_eq(count("cannot write a"), 2);
	ck_assert_int_eq(count("database or disk is full"), 1);
	/* plain lines are never limited */
	for (int i = 0; i < 5; i++)
		loomi_log(LOOM_LOG_INFO, NULL, "epoch %d", i);
	ck_assert_int_eq(count("epoch"), 5);
}
END_TEST

START_TEST(table_full_reports_the_oldest)
{
	/* more kinds than the table holds: the oldest's count is reported
	 * when it is pushed out, never lost */
	static char fmts[80][32];
	loomi_log_limited(LOOM_LOG_ERROR, NULL, "first kind %d", 1);
	loomi_log_limited(LOOM_LOG_ERROR, NULL, "first kind %d", 2);
	for (int i = 0; i < 80; i++) {
		now_ms++;
		snprintf(fmts[i], sizeof fmts[i], "kind %d %%s", i);
		loomi_log_limited(LOOM_LOG_ERROR, NULL, fmts[i], "x");
	}
	ck_assert_msg(tu_log_has("first kind 2 (repeated 1 time in the last 1 s)"), "%s",
	              tu_log_text());
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("repeated lines");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, first_written_then_counted);
	tcase_add_test(tc, flush_reports_when_failures_stop);
	tcase_add_test(tc, kinds_are_apart);
	tcase_add_test(tc, table_full_reports_the_oldest);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
