/* Storage keys: relative paths that can never escape a storage root. */
#include "config.h"

#include <string.h>

#include <loom/storage.h>

static int
segment_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

int
loom_key_check(const char *key)
{
	size_t len, seg = 0;
	const char *start;

	if (key == NULL || (len = strlen(key)) == 0 || len > LOOM_KEY_MAX)
		return LOOM_EINVAL;
	start = key;
	for (const char *p = key;; p++) {
		if (*p == '/' || *p == '\0') {
			seg = (size_t)(p - start);
			if (seg == 0)
				return LOOM_EINVAL; /* leading, trailing or double '/' */
			if ((seg == 1 && start[0] == '.') ||
			    (seg == 2 && start[0] == '.' && start[1] == '.'))
				return LOOM_EINVAL;
			if (*p == '\0')
				break;
			start = p + 1;
		} else if (!segment_char(*p)) {
			return LOOM_EINVAL;
		}
	}
	return 0;
}

int
loom_key_prefix_check(const char *prefix)
{
	char buf[LOOM_KEY_MAX + 1];
	size_t len;

	if (prefix == NULL)
		return LOOM_EINVAL;
	len = strlen(prefix);
	if (len == 0)
		return 0;
	if (len > LOOM_KEY_MAX)
		return LOOM_EINVAL;
	memcpy(buf, prefix, len + 1);
	if (buf[len - 1] == '/')
		buf[len - 1] = '\0';
	return loom_key_check(buf);
}
