/* The job lifecycle table: every pair of the seed's six states, legal or
 * not, against the table written out here by hand; and task ids. */
#include "config.h"

#include <loom/loom.h>

#include "host/tasks/tasks.h"
#include "testutil.h"

/* expected[from][to]: 1 legal.  pending → running (started), cancelled,
 * failed (a dependency failed, or the worker could not start); running →
 * paused, completed, failed, cancelled, pending (retry, or loomd restarted);
 * paused → running (resumed), cancelled, failed; the final states go
 * nowhere.  Nothing goes to itself. */
static const int expected[7][7] = {
	/*            -  pend run paus comp fail canc */
	[LOOM_JOB_PENDING] = {0, 0, 1, 0, 0, 1, 1},
	[LOOM_JOB_RUNNING] = {0, 1, 0, 1, 1, 1, 1},
	[LOOM_JOB_PAUSED] = {0, 0, 1, 0, 0, 1, 1},
	[LOOM_JOB_COMPLETED] = {0, 0, 0, 0, 0, 0, 0},
	[LOOM_JOB_FAILED] = {0, 0, 0, 0, 0, 0, 0},
	[LOOM_JOB_CANCELLED] = {0, 0, 0, 0, 0, 0, 0},
};

START_TEST(transition_table)
{
	for (uint32_t from = 0; from <= 7; from++) {
		for (uint32_t to = 0; to <= 7; to++) {
			int want = from >= 1 && from <= 6 && to >= 1 && to <= 6 ? expected[from][to] : 0;
			ck_assert_msg(loomi_job_transition_ok(from, to) == (want == 1),
			              "%s → %s should be %s", loom_job_state_name(from) ?: "?",
			              loom_job_state_name(to) ?: "?", want ? "legal" : "refused");
		}
	}
}
END_TEST

START_TEST(task_ids)
{
	ck_assert_int_eq(loomi_job_id_parse("task-12"), 12);
	ck_assert_int_eq(loomi_job_id_parse("12"), 12);
	ck_assert_int_eq(loomi_job_id_parse("task-0"), 0);
	ck_assert_int_eq(loomi_job_id_parse("task-012"), 0);
	ck_assert_int_eq(loomi_job_id_parse("task-"), 0);
	ck_assert_int_eq(loomi_job_id_parse("task-1x"), 0);
	ck_assert_int_eq(loomi_job_id_parse("-3"), 0);
	ck_assert_int_eq(loomi_job_id_parse("99999999999999999999"), 0);
	ck_assert_int_eq(loomi_job_id_parse(""), 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("jobs");
	TCase *tc = tcase_create("lifecycle");
	tcase_add_test(tc, transition_table);
	tcase_add_test(tc, task_ids);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
