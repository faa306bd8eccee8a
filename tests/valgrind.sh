#!/bin/sh
# Run one test program under valgrind memcheck (make check-valgrind).  A
# memory error or a definite/indirect leak makes the test fail.  Check's
# fork mode is turned off so valgrind sees the tests themselves.
CK_FORK=no
CK_DEFAULT_TIMEOUT=600
export CK_FORK CK_DEFAULT_TIMEOUT
exec ${LIBTOOL:-libtool} --mode=execute valgrind --quiet --leak-check=full \
	--errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
	--suppressions="$LOOM_TEST_SRCDIR/tests/valgrind.supp" "$@"
