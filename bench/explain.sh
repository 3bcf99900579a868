#!/bin/sh
# bench/explain.sh: explain-gpt4 request throughput against a loopback
# chat-completions server (tests/helpers/fake-openai.py) that holds every
# reply DELAY seconds (a stand-in for API latency), and, measured in the same
# run, the same server sent the very same request bodies by a plain Python
# client with as many threads as explain-gpt4 has --jobs: the ratio says how
# close the libcurl multi client, with its parsing, alignment and cache
# writes, comes to a bare concurrent client. Then a rerun served wholly from
# the cache (features/s, no API call).
# Run from the repo root (make bench): bins on ./bin, helpers in tests/helpers.
set -e
PY=/usr/bin/python3
N=${BENCH_EXPLAIN_FEATURES:-200}
J=${BENCH_EXPLAIN_JOBS:-16}
DELAY=${BENCH_EXPLAIN_DELAY:-0.05}
if ! "$PY" -c 'import http.server' 2>/dev/null; then echo "explain: skipped ($PY missing)"; exit 0; fi
root=$(pwd)
tmp=$(mktemp -d)
trap 'test -f "$tmp/pid" && kill "$(cat "$tmp/pid")" 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM
cd "$tmp"
mkdir bodies
"$root/tests/helpers/mk-topk" --features "$N" -K 20 -R 10 -W 32 >topk.tsz
"$PY" "$root/tests/helpers/fake-openai.py" --port-file port --log log --delay "$DELAY" --dump bodies </dev/null >/dev/null 2>&1 &
echo $! >pid
i=0; while ! test -s port; do i=$((i + 1)); test $i -le 100 || { echo "explain: server did not start"; exit 1; }; sleep 0.1; done
API=http://127.0.0.1:$(cat port)/v1
now () { date +%s.%N; }

t0=$(now)
"$root/bin/explain-gpt4" --api-base "$API" --cache cache -j "$J" topk.tsz >out.tsz 2>err
t1=$(now)
reqs=$(wc -l <log)
"$root/bin/explain-gpt4" --api-base "$API" --cache cache -j "$J" topk.tsz >out2.tsz 2>err2
t2=$(now)

# the reference: the same request bodies, J threads, replies read and dropped
"$PY" - "$API" "$J" bodies >ref <<'PY'
import os, sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
api, j, d = sys.argv[1], int(sys.argv[2]), sys.argv[3]
bodies = [open(os.path.join(d, f), "rb").read() for f in sorted(os.listdir(d))]
def post(body):
    req = urllib.request.Request(api + "/chat/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        r.read()
t = time.time()
with ThreadPoolExecutor(j) as ex:
    list(ex.map(post, bodies))
print(len(bodies) / (time.time() - t))
PY
awk -v n="$N" -v r="$reqs" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v ref="$(cat ref)" -v j="$J" -v d="$DELAY" 'BEGIN {
	rate = r / (t1 - t0)
	printf "explain: %d features, %d requests, %d jobs, %.0f ms server latency\n", n, r, j, d * 1000
	printf "explain: %.1f requests/s, %.1f features/s; python %d-thread client, same bodies: %.1f requests/s; ratio %.2f\n", rate, n / (t1 - t0), j, ref, rate / ref
	printf "explain: first run at %.0f%% of the jobs/latency bound (the Python server is the limit); rerun from cache %.0f features/s, %.1fx the first run, no API call\n", 100 * rate / (j / d), n / (t2 - t1), (t1 - t0) / (t2 - t1)
}'
grep -q "0 API calls" err2 || { echo "explain: the rerun made API calls"; exit 1; }
