# test-lib.sh: shell test library in the mould of git's t/test-lib.sh.
#
# A test script sets test_description, sources this file, calls
# test_expect_success for each test and ends with test_done. Each script
# runs in its own trash directory (tests/trash.NAME), removed on success.
# Output is TAP for prove; run a script with -v to see the test bodies' output.
#
#   test_expect_success [PREREQ,...] 'title' 'body'
#   test_expect_failure ...            (known breakage: counts as TODO)
#   test_must_fail CMD...              (fails, but not by signal or 127)
#   test_cmp EXPECT ACTUAL             (diff -u)
#   test_path_is_file F / test_path_is_missing F
#   test_when_finished 'cleanup'       (runs after the current test)
#   test_set_prereq NAME / test_have_prereq NAME
#   test_skip_all 'why'                (the whole script)
#
# Prerequisites set here: GPT2_VOCAB (GPT-2 tokenizer files, path in
# $GPT2_DIR), NUMPY ($PYTHON has numpy), TORCH, PARALLEL, TINY_MODEL
# ($TINY_MODEL_DIR), NODE, EXPENSIVE (SAEPIPE_TEST_EXPENSIVE=1).

LANG=C LC_ALL=C TZ=UTC
export LANG LC_ALL TZ
unset CDPATH
# Under 'make -jN check' the environment names make's jobserver file
# descriptors, and this library reuses fds 3 and 4: a make started by a test
# (the pipelines) would read its job tokens from /dev/null. Tests start clean.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES

TEST_DIRECTORY=$(cd "$(dirname "$0")" && pwd)
SRC_DIR=$(cd "$TEST_DIRECTORY/.." && pwd)
PATH="$SRC_DIR/bin:$TEST_DIRECTORY/helpers:$PATH"
export PATH SRC_DIR TEST_DIRECTORY
# Sanitized builds (make check SANITIZE=1): Open MPI's own allocations kept
# until exit are not leaks of ours (tests/lsan.supp). Its libraries have no
# frame pointers, so the suppressions match only with the slow unwinder.
LSAN_OPTIONS="suppressions=$SRC_DIR/tests/lsan.supp:fast_unwind_on_malloc=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export LSAN_OPTIONS

verbose=
for arg in "$@"; do
	case "$arg" in -v|--verbose) verbose=t ;; esac
done

test_name=$(basename "$0" .sh)
TRASH_DIRECTORY="$TEST_DIRECTORY/trash.$test_name"
rm -rf "$TRASH_DIRECTORY"
mkdir -p "$TRASH_DIRECTORY" || { echo "Bail out! cannot make $TRASH_DIRECTORY"; exit 1; }
cd "$TRASH_DIRECTORY" || exit 1

if test -n "$verbose"; then
	exec 4>&2 3>&1
else
	exec 4>/dev/null 3>/dev/null
fi

test_count=0 test_failure=0 test_fixed=0 test_broken=0 test_skipped=0
test_prereqs=" "
test_cleanup=:

test_set_prereq () { test_prereqs="$test_prereqs$1 "; }
test_have_prereq () {
	# comma-separated list; !NAME negates
	old_IFS=$IFS; IFS=,
	for p in $1; do
		IFS=$old_IFS
		case "$p" in
		!*) case "$test_prereqs" in *" ${p#!} "*) return 1 ;; esac ;;
		*) case "$test_prereqs" in *" $p "*) ;; *) missing_prereq=$p; return 1 ;; esac ;;
		esac
	done
	IFS=$old_IFS
	return 0
}

test_skip_all () {
	echo "1..0 # SKIP $*"
	cd "$TEST_DIRECTORY" && rm -rf "$TRASH_DIRECTORY"
	exit 0
}

say_body () { echo "$1" | sed -e 's/^/#	/'; }

test_run_ () {
	test_cleanup=:
	rm -f "$TRASH_DIRECTORY/.when-finished"
	( eval "$1" ) >&3 2>&4 </dev/null
	eval_ret=$?
	# the body ran in a subshell: what it asked test_when_finished to do
	# comes back through a file
	if test -f "$TRASH_DIRECTORY/.when-finished"; then
		test_cleanup="$(cat "$TRASH_DIRECTORY/.when-finished")"
		rm -f "$TRASH_DIRECTORY/.when-finished"
	fi
	eval "$test_cleanup" >&3 2>&4
	return $eval_ret
}

# Cleanups run after the test, newest first; a failing cleanup fails the
# test. Kept in a file too, since test bodies run in a subshell.
test_when_finished () {
	test_cleanup="{ $*
} && (exit \"\$eval_ret\"); eval_ret=\$?; $test_cleanup"
	printf '%s\n' "$test_cleanup" >"$TRASH_DIRECTORY/.when-finished"
}

test_expect_success () {
	prereq=
	if test $# = 3; then prereq=$1; shift; fi
	test_count=$((test_count + 1))
	if test -n "$prereq" && ! test_have_prereq "$prereq"; then
		test_skipped=$((test_skipped + 1))
		echo "ok $test_count # skip $1 (missing $missing_prereq)"
		return 0
	fi
	if test_run_ "$2"; then
		echo "ok $test_count - $1"
	else
		test_failure=$((test_failure + 1))
		echo "not ok $test_count - $1"
		say_body "$2"
	fi
}

test_expect_failure () {
	prereq=
	if test $# = 3; then prereq=$1; shift; fi
	test_count=$((test_count + 1))
	if test -n "$prereq" && ! test_have_prereq "$prereq"; then
		echo "ok $test_count # skip $1 (missing $missing_prereq)"
		return 0
	fi
	if test_run_ "$2"; then
		test_fixed=$((test_fixed + 1))
		echo "ok $test_count - $1 # TODO known breakage vanished"
	else
		test_broken=$((test_broken + 1))
		echo "not ok $test_count - $1 # TODO known breakage"
	fi
}

# A crash is not a pass: exit 0, death by signal and "not found" all fail.
test_must_fail () {
	"$@"
	exit_code=$?
	if test $exit_code = 0; then
		echo >&4 "test_must_fail: command succeeded: $*"; return 1
	elif test $exit_code -gt 128 && test $exit_code -le 192; then
		echo >&4 "test_must_fail: died by signal $((exit_code - 128)): $*"; return 1
	elif test $exit_code = 127; then
		echo >&4 "test_must_fail: command not found: $*"; return 1
	fi
	return 0
}

test_cmp () { diff -u "$@"; }
test_path_is_file () { test -f "$1" || { echo >&4 "no file $1"; return 1; }; }
test_path_is_missing () { ! test -e "$1" || { echo >&4 "$1 exists"; return 1; }; }

# test_line_count = N FILE
test_line_count () {
	n=$(wc -l <"$3" | tr -d ' ')
	test "$n" "$1" "$2" || { echo >&4 "test_line_count: $3 has $n lines, want $1 $2"; return 1; }
}

test_done () {
	echo "1..$test_count"
	eval "$test_cleanup" 2>/dev/null
	if test $test_failure = 0; then
		echo "# passed all $test_count test(s) ($test_skipped skipped, $test_broken known breakage)"
		cd "$TEST_DIRECTORY" && rm -rf "$TRASH_DIRECTORY"
		exit 0
	fi
	echo "# failed $test_failure among $test_count test(s)"
	exit 1
}

# --- prerequisites ---------------------------------------------------------
# python3 with numpy: Debian's python3-numpy lives under /usr/bin/python3,
# which another python3 earlier on PATH may shadow.
PYTHON=
for py in /usr/bin/python3 python3; do
	if "$py" -c 'import numpy' 2>/dev/null; then PYTHON=$py; break; fi
done
export PYTHON
test -n "$PYTHON" && test_set_prereq NUMPY
# SANITIZED: the programs were built with ASan (make check SANITIZE=1), whose
# shadow memory makes resident-memory figures meaningless.
grep -q fsanitize "$SRC_DIR/build/.flags" 2>/dev/null && test_set_prereq SANITIZED
test -n "$PYTHON" && "$PYTHON" -c 'import torch' 2>/dev/null && test_set_prereq TORCH
command -v parallel >/dev/null 2>&1 && test_set_prereq PARALLEL
command -v node >/dev/null 2>&1 && test_set_prereq NODE
test "${SAEPIPE_TEST_EXPENSIVE:-}" = 1 && test_set_prereq EXPENSIVE

GPT2_DIR=
for d in "${SAEPIPE_GPT2_DIR:-}" "$SRC_DIR/../shared/gpt2" "$SRC_DIR/examples/models/tiny-gpt2-docs"; do
	if test -n "$d" && test -f "$d/vocab.json" && test -f "$d/merges.txt"; then
		GPT2_DIR=$(cd "$d" && pwd); break
	fi
done
export GPT2_DIR
if test -n "$GPT2_DIR"; then
	test_set_prereq GPT2_VOCAB
else
	echo "# GPT-2 tokenizer files not found (\$SAEPIPE_GPT2_DIR, ../shared/gpt2): tests that need them are skipped"
fi

TINY_MODEL_DIR=
for d in "$SRC_DIR/examples/models/tiny-gpt2-docs" "$SRC_DIR/../shared/models/tiny-gpt2-docs"; do
	if test -f "$d/model.safetensors" && test -f "$d/config.json"; then
		TINY_MODEL_DIR=$(cd "$d" && pwd); break
	fi
done
export TINY_MODEL_DIR
test -n "$TINY_MODEL_DIR" && test_set_prereq TINY_MODEL

# Deterministic BLAS for tests; the stage's own thread default otherwise.
OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
export OPENBLAS_NUM_THREADS
