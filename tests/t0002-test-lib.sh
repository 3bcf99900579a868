#!/bin/sh
test_description='test-lib: cleanups asked for inside a test body run after it'
. "$(dirname "$0")/test-lib.sh"

test_expect_success 'a body asks for two cleanups' '
	echo x >left-behind &&
	test_when_finished "rm -f left-behind" &&
	test_when_finished "echo second >>order" &&
	test_when_finished "echo first >>order"
'

test_expect_success 'they ran after it, newest first' '
	test_path_is_missing left-behind &&
	printf "first\nsecond\n" >expect &&
	test_cmp expect order
'

test_expect_success 'a test started by make -jN gets no jobserver descriptors' '
	test -z "$MAKEFLAGS" && test -z "$MAKELEVEL"
'

test_done
