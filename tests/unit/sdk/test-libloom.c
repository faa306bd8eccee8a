/* libloom: error texts, names, parsers and storage keys. */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include <loom/loom.h>

#include "testutil.h"

START_TEST(strerror_every_code)
{
	static const int codes[] = {
		LOOM_EINVAL, LOOM_ENOMEM, LOOM_ENOENT, LOOM_EEXIST, LOOM_EIO, LOOM_EPERM,
		LOOM_EBUSY, LOOM_ETIMEDOUT, LOOM_ECLOSED, LOOM_ENOTSUP, LOOM_ECONFIG,
		LOOM_EPROTO, LOOM_ESTATE, LOOM_ECONFLICT, LOOM_ERANGE, LOOM_ECORRUPT,
		LOOM_ESCHEMA, LOOM_ENOSERVICE, LOOM_EUNREACHABLE, LOOM_ECANCELED, LOOM_EPAUSED,
		LOOM_EINTERNAL, LOOM_EPLUGIN_NOTFOUND, LOOM_EPLUGIN_DLOPEN, LOOM_EPLUGIN_NOSYM,
		LOOM_EPLUGIN_ABI_MAJOR, LOOM_EPLUGIN_ABI_MINOR, LOOM_EPLUGIN_MALFORMED,
		LOOM_EPLUGIN_INIT,
	};
	for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
		const char *t = loom_strerror(codes[i]);
		ck_assert_str_ne(t, "unknown error");
		ck_assert_str_ne(loom_errname(codes[i]), "LOOM_E?");
		/* every text is distinct */
		for (size_t j = 0; j < i; j++)
			ck_assert_str_ne(t, loom_strerror(codes[j]));
	}
	ck_assert_str_eq(loom_strerror(0), "success");
	ck_assert_str_eq(loom_strerror(9999), "unknown error");
	ck_assert_str_eq(loom_errname(LOOM_ENOENT), "LOOM_ENOENT");
}
END_TEST

START_TEST(kinds_and_states)
{
	for (uint32_t k = 1; k <= LOOM_KIND_MAX; k++)
		ck_assert_uint_eq(loom_kind_parse(loom_kind_name(k)), k);
	ck_assert_ptr_null(loom_kind_name(0));
	ck_assert_ptr_null(loom_kind_name(LOOM_KIND_MAX + 1));
	ck_assert_uint_eq(loom_kind_parse("storage"), LOOM_KIND_STORAGE);
	ck_assert_uint_eq(loom_kind_parse("storagee"), 0);
	ck_assert_uint_eq(loom_kind_parse(NULL), 0);
	for (uint32_t s = LOOM_JOB_PENDING; s <= LOOM_JOB_CANCELLED; s++)
		ck_assert_uint_eq(loom_job_state_parse(loom_job_state_name(s)), s);
	ck_assert_str_eq(loom_job_state_name(LOOM_JOB_PAUSED), "paused");
	ck_assert_uint_eq(loom_job_state_parse("done"), 0);
	ck_assert_uint_eq(loom_dtype_size(LOOM_DTYPE_BF16), 2);
	ck_assert_uint_eq(loom_dtype_size(LOOM_DTYPE_F64), 8);
	ck_assert_uint_eq(loom_dtype_size(99), 0);
	ck_assert_str_eq(loom_dtype_name(LOOM_DTYPE_F32), "f32");
	ck_assert_str_eq(loom_version(), LOOM_VERSION_STRING);
}
END_TEST

START_TEST(sizes)
{
	uint64_t b;
	ck_assert_int_eq(loom_parse_size("0", &b), 0);
	ck_assert_uint_eq(b, 0);
	ck_assert_int_eq(loom_parse_size("512", &b), 0);
	ck_assert_uint_eq(b, 512);
	ck_assert_int_eq(loom_parse_size("64K", &b), 0);
	ck_assert_uint_eq(b, 65536);
	ck_assert_int_eq(loom_parse_size("2G", &b), 0);
	ck_assert_uint_eq(b, 2ull << 30);
	ck_assert_int_eq(loom_parse_size("2GiB", &b), 0);
	ck_assert_uint_eq(b, 2ull << 30);
	ck_assert_int_eq(loom_parse_size("3 mb", &b), 0);
	ck_assert_uint_eq(b, 3ull << 20);
	ck_assert_int_eq(loom_parse_size("1T", &b), 0);
	ck_assert_uint_eq(b, 1ull << 40);
	ck_assert_int_eq(loom_parse_size("", &b), LOOM_EINVAL);
	ck_assert_int_eq(loom_parse_size("-1", &b), LOOM_EINVAL);
	ck_assert_int_eq(loom_parse_size("12Q", &b), LOOM_EINVAL);
	ck_assert_int_eq(loom_parse_size("1.5G", &b), LOOM_EINVAL);
	ck_assert_int_eq(loom_parse_size("99999999999999999999", &b), LOOM_ERANGE);
	ck_assert_int_eq(loom_parse_size("20000000T", &b), LOOM_ERANGE);
	ck_assert_int_eq(loom_parse_size(NULL, &b), LOOM_EINVAL);
}
END_TEST

START_TEST(durations)
{
	int64_t ms;
	ck_assert_int_eq(loom_parse_duration("250ms", &ms), 0);
	ck_assert_int_eq(ms, 250);
	ck_assert_int_eq(loom_parse_duration("1.5s", &ms), 0);
	ck_assert_int_eq(ms, 1500);
	ck_assert_int_eq(loom_parse_duration("30", &ms), 0);
	ck_assert_int_eq(ms, 30000);
	ck_assert_int_eq(loom_parse_duration("5m", &ms), 0);
	ck_assert_int_eq(ms, 300000);
	ck_assert_int_eq(loom_parse_duration("2h", &ms), 0);
	ck_assert_int_eq(ms, 7200000);
	ck_assert_int_eq(loom_parse_duration("1d", &ms), 0);
	ck_assert_int_eq(ms, 86400000);
	ck_assert_int_eq(loom_parse_duration("5 parsecs", &ms), LOOM_EINVAL);
	ck_assert_int_eq(loom_parse_duration("-1s", &ms), LOOM_EINVAL);
	ck_assert_int_eq(loom_parse_duration("nan", &ms), LOOM_EINVAL);
	ck_assert_int_eq(loom_parse_duration("1e300d", &ms), LOOM_ERANGE);
	ck_assert_int_eq(loom_parse_duration("", &ms), LOOM_EINVAL);
}
END_TEST

START_TEST(keys)
{
	static const char *const good[] = {"a", "a/b", "runs/42/best.safetensors", "A-Z_0.9",
	                                   "..a", "a..", ".hidden"};
	static const char *const bad[] = {"", "/a", "a/", "a//b", ".", "..", "a/../b", "a/./b",
	                                  "../a", "a/..", "a b", "a\\b", "é", "a\nb", "a:b"};
	char big[LOOM_KEY_MAX + 2];

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		ck_assert_msg(loom_key_check(good[i]) == 0, "\"%s\" should be a valid key", good[i]);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(loom_key_check(bad[i]) == LOOM_EINVAL, "\"%s\" should be refused",
		              bad[i]);
	ck_assert_int_eq(loom_key_check(NULL), LOOM_EINVAL);
	memset(big, 'k', sizeof big - 1);
	big[LOOM_KEY_MAX] = '\0';
	ck_assert_int_eq(loom_key_check(big), 0);
	big[LOOM_KEY_MAX] = 'k';
	big[LOOM_KEY_MAX + 1] = '\0';
	ck_assert_int_eq(loom_key_check(big), LOOM_EINVAL);

	ck_assert_int_eq(loom_key_prefix_check(""), 0);
	ck_assert_int_eq(loom_key_prefix_check("runs/"), 0);
	ck_assert_int_eq(loom_key_prefix_check("runs/4"), 0);
	ck_assert_int_eq(loom_key_prefix_check("/"), LOOM_EINVAL);
	ck_assert_int_eq(loom_key_prefix_check("../"), LOOM_EINVAL);
	ck_assert_int_eq(loom_key_prefix_check("a//"), LOOM_EINVAL);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("libloom");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, strerror_every_code);
	tcase_add_test(tc, kinds_and_states);
	tcase_add_test(tc, sizes);
	tcase_add_test(tc, durations);
	tcase_add_test(tc, keys);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
