# report-test-lib.sh: what the sae-report tests (t7000, t7010) share; sourced
# after test-lib.sh. Sets the CHROMIUM prerequisite and defines:
#   chrome URL DOMFILE    load a page headless, dump its DOM; console
#                         messages go to DOMFILE.log
#   page_state DOMFILE    the page's own marker: set by its script on
#                         success ("ok"), and by window.onerror ("error")
#   console_errors DOMFILE  the console's errors, if any
#   blob PAGE             the one-page report's JSON blob, as Python sees it
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
test -n "$CHROMIUM" && test_set_prereq CHROMIUM
test -n "$CHROMIUM" || echo "# chromium not found (apt-get install chromium): browser tests are skipped"

chrome () {
	timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
		--disable-background-networking --disable-component-update --disable-sync \
		--user-data-dir="$PWD/chrome-profile" --enable-logging=stderr --v=0 \
		--dump-dom "$1" >"$2" 2>"$2.log"
}
page_state () { sed -n 's/.*id="status" data-state="\([a-z]*\)".*/\1/p' "$1"; }
console_errors () { grep -E "Uncaught|CONSOLE\(.*(Error|error)" "$1.log"; }
blob () {
	"$PYTHON" -c '
import json, re, sys
html = open(sys.argv[1], encoding="utf-8").read()
m = re.search(r"<script type=\"application/json\" id=\"saepipe-data\">(.*?)</script>", html, re.S)
print(json.dumps(json.loads(m.group(1)), sort_keys=True))' "$1"
}
