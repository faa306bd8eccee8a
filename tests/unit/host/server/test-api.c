/* The API's route table against the OpenAPI document loomd serves: every
 * route is documented with its method, every documented operation is
 * routed (the WebSocket monitor, served by the upgrade handler, aside),
 * and the document is valid JSON. */
#include "config.h"

#include <string.h>

#include <jansson.h>

#include "host/server/api.h"
#include "testutil.h"

/* "/api/v1/plugins/{instance}" → "/api/v1/plugins/{}": parameter names may differ */
static char *
shape(const char *p)
{
	char *out = strdup(p), *o = out;
	for (; *p; p++) {
		*o++ = *p;
		if (*p == '{') {
			while (*p && *p != '}')
				p++;
			*o++ = '}';
			if (!*p)
				break;
		}
	}
	*o = '\0';
	return out;
}

static bool
documented(const json_t *paths, const char *method, const char *pattern)
{
	const char *key;
	json_t *item;
	char *want = shape(pattern);
	bool found = false;

	json_object_foreach((json_t *)paths, key, item) {
		char *have = shape(key), lower[16];
		size_t i;
		for (i = 0; method[i] && i < sizeof lower - 1; i++)
			lower[i] = (char)(method[i] | 0x20);
		lower[i] = '\0';
		if (strcmp(have, want) == 0 && json_object_get(item, lower))
			found = true;
		free(have);
	}
	free(want);
	return found;
}

START_TEST(every_route_documented)
{
	json_error_t je;
	json_t *doc = json_loads(loomi_openapi_json, 0, &je), *paths;
	const char *method, *pattern;
	size_t n = 0;

	ck_assert_msg(doc != NULL, "docs/openapi.json: %s (line %d)", je.text, je.line);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "openapi")), "3.0.3");
	paths = json_object_get(doc, "paths");
	for (size_t i = 0; loomi_api_route(i, &method, &pattern); i++, n++)
		ck_assert_msg(documented(paths, method, pattern), "%s %s is not in docs/openapi.json",
		              method, pattern);
	ck_assert_int_ge(n, 10);
	json_decref(doc);
}
END_TEST

START_TEST(every_operation_routed)
{
	json_t *doc = json_loads(loomi_openapi_json, 0, NULL), *item, *op;
	const char *key, *verb;

	json_object_foreach(json_object_get(doc, "paths"), key, item) {
		json_object_foreach(item, verb, op) {
			const char *method, *pattern;
			char *want = shape(key), upper[16];
			bool routed = false;
			size_t i;
			if (strstr(key, "/monitor"))
				goto next; /* the WebSocket upgrade, not a route */
			for (i = 0; verb[i] && i < sizeof upper - 1; i++)
				upper[i] = (char)(verb[i] & ~0x20);
			upper[i] = '\0';
			for (size_t r = 0; loomi_api_route(r, &method, &pattern); r++) {
				char *have = shape(pattern);
				routed |= strcmp(have, want) == 0 && strcmp(method, upper) == 0;
				free(have);
			}
			ck_assert_msg(routed, "docs/openapi.json documents %s %s, which is not routed", upper,
			              key);
		next:
			free(want);
		}
	}
	json_decref(doc);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("api");
	TCase *tc = tcase_create("openapi");
	tcase_add_test(tc, every_route_documented);
	tcase_add_test(tc, every_operation_routed);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
