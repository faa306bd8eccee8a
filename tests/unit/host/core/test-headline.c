/* host/core/headline: the headline and detail metrics of a run or a model
 * version, from metrics.json's declaration or by the fallback rule. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "host/core/headline.h"
#include "host/core/util.h"
#include "testutil.h"

static json_t *
parse(const char *text)
{
	json_error_t e;
	json_t *v = json_loads(text, 0, &e);
	ck_assert_msg(v != NULL, "%s: %s", text, e.text);
	return v;
}

/* A JSON array of strings joined by ','. */
static char *
joined(const json_t *a)
{
	loomi_strv v = {0};
	size_t i;
	json_t *x;
	json_array_foreach(a, i, x)
		loomi_strv_pushf(&v, "%s", json_is_string(x) ? json_string_value(x) : "null");
	char *s = loomi_strv_join(&v, ",");
	loomi_strv_free(&v);
	return s;
}

#define ASSERT_JOINED(arr, want)                                                         \
	do {                                                                             \
		char *s_ = joined(arr);                                                  \
		ck_assert_str_eq(s_, want);                                              \
		free(s_);                                                                \
	} while (0)

START_TEST(declared_names_the_test_split)
{
	json_t *doc = parse("{\"test\": {\"loss\": 1, \"mae\": 2}, \"validation\": {\"loss\": 3},"
	                    " \"headline\": [\"mae\", \"loss\"],"
	                    " \"details\": [{\"name\": \"t\", \"rows\": [\"r\"], \"columns\":"
	                    " [\"a\", \"b\"], \"cells\": [[\"a.r\", null]]}]}");
	json_t *d = loomi_display_declared(doc);

	ck_assert_ptr_nonnull(d);
	ASSERT_JOINED(json_object_get(d, "headline"), "test_mae,test_loss");
	json_t *t = json_array_get(json_object_get(d, "details"), 0);
	ASSERT_JOINED(json_array_get(json_object_get(t, "cells"), 0), "test_a.r,null");
	/* a table without a title is titled by its name */
	ck_assert_str_eq(json_string_value(json_object_get(t, "title")), "t");
	json_decref(d);
	json_decref(doc);
}
END_TEST

START_TEST(declared_without_test_split_names_validation)
{
	json_t *doc = parse("{\"test\": {}, \"validation\": {\"loss\": 3}, \"headline\": [\"loss\"]}");
	json_t *d = loomi_display_declared(doc);
	ASSERT_JOINED(json_object_get(d, "headline"), "val_loss");
	json_decref(d);
	json_decref(doc);
	/* no figures, no headline, or a malformed one: nothing declared */
	static const char *const none[] = {
		"{\"headline\": [\"loss\"]}",
		"{\"test\": {\"loss\": 1}}",
		"{\"test\": {\"loss\": 1}, \"headline\": []}",
		"{\"test\": {\"loss\": 1}, \"headline\": \"loss\"}",
		"{\"test\": {\"loss\": 1}, \"headline\": [\"loss\", 3]}",
	};
	for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
		doc = parse(none[i]);
		ck_assert_msg(loomi_display_declared(doc) == NULL, "%s", none[i]);
		json_decref(doc);
	}
}
END_TEST

START_TEST(malformed_tables_are_left_out)
{
	static const char *const bad[] = {
		"{\"rows\": [\"r\"], \"columns\": [\"a\"], \"cells\": [[\"x\"]]}",             /* no name */
		"{\"name\": \"t\", \"rows\": [1], \"columns\": [\"a\"], \"cells\": [[\"x\"]]}",
		"{\"name\": \"t\", \"rows\": [\"r\"], \"columns\": [\"a\"], \"cells\": []}",
		"{\"name\": \"t\", \"rows\": [\"r\"], \"columns\": [\"a\"], \"cells\": [[\"x\", \"y\"]]}",
		"{\"name\": \"t\", \"rows\": [\"r\"], \"columns\": [\"a\"], \"cells\": [\"x\"]}",
		"3",
	};
	/* a table of more than LOOMI_DETAIL_CELLS_MAX cells */
	{
		loomi_strv rows = {0}, line = {0};
		for (int i = 0; i < 65; i++)
			loomi_strv_pushf(&rows, "\"r%d\"", i);
		for (int i = 0; i < 64; i++)
			loomi_strv_pushf(&line, "\"c\"");
		char *r = loomi_strv_join(&rows, ","), *l = loomi_strv_join(&line, ",");
		loomi_strv cells = {0};
		for (int i = 0; i < 65; i++)
			loomi_strv_pushf(&cells, "[%s]", l);
		char *c = loomi_strv_join(&cells, ",");
		char *text = loomi_strfmt("{\"test\": {\"loss\": 1}, \"headline\": [\"loss\"],"
		                          " \"details\": [{\"name\": \"big\", \"rows\": [%s],"
		                          " \"columns\": [%s], \"cells\": [%s]}]}",
		                          r, l, c);
		json_t *doc = parse(text), *d = loomi_display_declared(doc);
		ck_assert_int_eq(json_array_size(json_object_get(d, "details")), 0);
		json_decref(d);
		json_decref(doc);
		free(text);
		free(r);
		free(l);
		free(c);
		loomi_strv_free(&rows);
		loomi_strv_free(&line);
		loomi_strv_free(&cells);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char *text = loomi_strfmt("{\"test\": {\"loss\": 1}, \"headline\": [\"loss\"],"
		                          " \"details\": [%s]}",
		                          bad[i]);
		json_t *doc = parse(text), *d = loomi_display_declared(doc);
		ck_assert_msg(json_array_size(json_object_get(d, "details")) == 0, "%s", bad[i]);
		json_decref(d);
		json_decref(doc);
		free(text);
	}
}
END_TEST

START_TEST(fallback_prefers_test_then_validation_then_all)
{
	static const struct {
		const char *flat, *headline;
	} cases[] = {
		/* an old classifier: per-class figures and cells have a '.' */
		{"{\"test_precision.sun\": 1, \"test_macro_f1\": 1, \"test_accuracy\": 1,"
		 " \"test_confusion.sun.sun\": 3, \"test_loss\": 1, \"val_loss\": 1, \"lr\": 1}",
		 "test_loss,test_accuracy,test_macro_f1"},
		/* a run still training: its validation figures */
		{"{\"train_loss\": 1, \"lr\": 1, \"val_mae\": 1, \"val_loss\": 2, \"val_f1.x\": 1}",
		 "val_loss,val_mae"},
		/* a script's run: its own names, losses first */
		{"{\"acc\": 1, \"loss\": 2, \"b.c\": 3, \"aux_loss\": 4}", "aux_loss,loss,acc"},
		{"{}", ""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		json_t *flat = parse(cases[i].flat), *d = loomi_display_fallback(flat);
		char *s = joined(json_object_get(d, "headline"));
		ck_assert_msg(strcmp(s, cases[i].headline) == 0, "%s: %s", cases[i].flat, s);
		free(s);
		json_decref(d);
		json_decref(flat);
	}
}
END_TEST

START_TEST(fallback_tables_of_a_classifier)
{
	/* class names are found by the per-class figures, so one holding a
	 * '.' keeps its cells apart */
	json_t *flat = parse("{\"val_precision.b.c\": 1, \"val_precision.a\": 1,"
	                     " \"val_recall.a\": 1, \"val_confusion.a.a\": 1, \"val_loss\": 1}");
	json_t *d = loomi_display_fallback(flat), *t;

	ck_assert_int_eq(json_array_size(json_object_get(d, "details")), 2);
	t = json_array_get(json_object_get(d, "details"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(t, "name")), "per_class");
	ASSERT_JOINED(json_object_get(t, "rows"), "a,b.c");
	ASSERT_JOINED(json_object_get(t, "columns"), "precision,recall,f1");
	ASSERT_JOINED(json_array_get(json_object_get(t, "cells"), 1),
	              "val_precision.b.c,val_recall.b.c,val_f1.b.c");
	t = json_array_get(json_object_get(d, "details"), 1);
	ck_assert_str_eq(json_string_value(json_object_get(t, "name")), "confusion");
	ck_assert_str_eq(json_string_value(json_object_get(t, "row_header")), "true");
	ck_assert_str_eq(json_string_value(json_object_get(t, "column_header")), "predicted");
	ASSERT_JOINED(json_array_get(json_object_get(t, "cells"), 0),
	              "val_confusion.a.a,val_confusion.a.b.c");
	json_decref(d);
	json_decref(flat);
	/* no per-class figures: no tables */
	flat = parse("{\"test_mae\": 1}");
	d = loomi_display_fallback(flat);
	ck_assert_int_eq(json_array_size(json_object_get(d, "details")), 0);
	json_decref(d);
	json_decref(flat);
}
END_TEST

START_TEST(attach_takes_the_stored_display_out)
{
	/* the stored display names a metric the run lacks: left out of its
	 * headline; the key never shows among the metrics */
	json_t *o = parse("{\"metrics\": {\"test_loss\": 1, \"test_mae\": 2, \"@display\":"
	                  " {\"headline\": [\"test_mae\", \"test_r2\", \"test_loss\"],"
	                  " \"details\": []}}}");
	loomi_display_attach(o);
	ASSERT_JOINED(json_object_get(o, "headline"), "test_mae,test_loss");
	ck_assert_ptr_null(json_object_get(json_object_get(o, "metrics"), "@display"));
	ck_assert_int_eq(json_array_size(json_object_get(o, "details")), 0);
	json_decref(o);
	/* without one: the fallback; without metrics at all: empty */
	o = parse("{\"metrics\": {\"test_mae\": 2, \"test_loss\": 1}}");
	loomi_display_attach(o);
	ASSERT_JOINED(json_object_get(o, "headline"), "test_loss,test_mae");
	json_decref(o);
	o = parse("{}");
	loomi_display_attach(o);
	ck_assert_int_eq(json_array_size(json_object_get(o, "headline")), 0);
	ck_assert(json_is_array(json_object_get(o, "details")));
	json_decref(o);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("headline");
	TCase *tc = tcase_create("display");
	tcase_add_test(tc, declared_names_the_test_split);
	tcase_add_test(tc, declared_without_test_split_names_validation);
	tcase_add_test(tc, malformed_tables_are_left_out);
	tcase_add_test(tc, fallback_prefers_test_then_validation_then_all);
	tcase_add_test(tc, fallback_tables_of_a_classifier);
	tcase_add_test(tc, attach_takes_the_stored_display_out);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
