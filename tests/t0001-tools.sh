#!/bin/sh
test_description='every stage has --help, --version, a man page that names its options, and installs'
. "$(dirname "$0")/test-lib.sh"

stages=$(cd "$SRC_DIR/bin" && ls *.c | sed 's/\.c$//')

test_expect_success 'every stage answers --help on stdout and --version' '
	for s in $stages; do
		"$SRC_DIR/bin/$s" --help >out 2>err || { echo "$s --help failed"; return 1; }
		grep -q "^Usage: $s" out || { echo "$s --help has no Usage line"; return 1; }
		test ! -s err || { echo "$s --help wrote to stderr"; return 1; }
		"$SRC_DIR/bin/$s" --version >out && grep -q "^$s (saepipe)" out || return 1
	done
'

test_expect_success 'a bad flag is a usage error (exit 2) naming the program' '
	for s in $stages; do
		"$SRC_DIR/bin/$s" --no-such-flag </dev/null >out 2>err
		test $? = 2 || { echo "$s: bad flag did not exit 2"; return 1; }
		# getopt names the program as invoked; then one line points at --help
		grep -q "^\(.*/\)\?$s: " err || { echo "$s: no message naming it"; cat err; return 1; }
		tail -n 1 err | grep -q "^Try .$s --help. for more information\.$" || { echo "$s: no pointer to --help"; cat err; return 1; }
		test $(wc -l <err) -le 2 || { echo "$s: more than two lines"; cat err; return 1; }
	done
'

test_expect_success 'every stage has a man page naming each of its long options' '
	for s in $stages; do
		page="$SRC_DIR/man/man1/$s.1"
		test -f "$page" || { echo "no man page for $s"; return 1; }
		"$SRC_DIR/bin/$s" --help | grep -o -- "--[a-z][a-z0-9-]*" | sort -u >opts
		while read -r o; do
			sed "s/\\\\-/-/g; s/\\\\f[BIRP]//g" "$page" | grep -q -- "$o" ||
				{ echo "$s: $o is in --help but not in $page"; return 1; }
		done <opts
	done
'

test_expect_success 'make install puts programs, library and man pages under PREFIX' '
	make -C "$SRC_DIR" -s install PREFIX="$PWD/inst" >/dev/null &&
	for s in $stages; do test -x inst/bin/$s || return 1; done &&
	test -f inst/lib/libsaepipe.a && test -f inst/include/saepipe/stream.h &&
	test -f inst/share/man/man5/tsz.5 && test -f inst/share/man/man1/tsz.1 &&
	test -f inst/share/man/man7/saepipe.7
'

command -v man >/dev/null && test_set_prereq MAN

test_expect_success 'man saepipe names every stage' '
	for s in $stages; do
		grep -q "^\.BR $s (1)" "$SRC_DIR/man/man7/saepipe.7" || { echo "saepipe.7 does not name $s"; return 1; }
	done
'

test_expect_success MAN 'every man page renders without warnings' '
	for p in "$SRC_DIR"/man/man*/*.[157]; do
		MANWIDTH=80 man --warnings -l "$p" >/dev/null 2>warn || return 1
		test ! -s warn || { echo "$p:"; cat warn; return 1; }
	done
'

test_done
