#!/usr/bin/env bash
# From `git clone` to the first streamed token of `make run`, with empty pip caches:
# each step timed. Usage: bench/first_answer.sh [REPO]  (default: this checkout).
# It serves on 127.0.0.1:8787, so nothing else may be listening there.
set -euo pipefail
repo=${1:-$(cd "$(dirname "$0")/.." && pwd)}
work=$(mktemp -d)
export PIP_CACHE_DIR="$work/pip-cache" XDG_CACHE_HOME="$work/cache"
now() { date +%s.%N; }
t0=$(now)
git clone -q "$repo" "$work/chatgate"
t1=$(now)
cd "$work/chatgate"
make .venv/bin/python >"$work/venv.log" 2>&1
t2=$(now)
make .venv/.run-installed >"$work/install.log" 2>&1
t3=$(now)
if curl -s -o /dev/null http://127.0.0.1:8787/healthz; then
    echo "something already answers on 127.0.0.1:8787; stop it first" >&2
    exit 1
fi
setsid make run >"$work/run.log" 2>&1 &
server=$!
trap 'kill -- -$server 2>/dev/null || true; sleep 0.5; rm -rf "$work"' EXIT
until curl -s -o /dev/null http://127.0.0.1:8787/healthz; do sleep 0.05; done
t4=$(now)
t5=$(python3 - <<'PY'
import http.client, json, time
c = http.client.HTTPConnection("127.0.0.1", 8787, timeout=120)
body = {"model": "local/smollm2-135m-instruct", "max_tokens": 8, "stream": True,
        "messages": [{"role": "user", "content": "Say hi"}]}
c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
r = c.getresponse()
while True:
    line = r.fp.readline().decode()
    if not line:
        raise SystemExit("the stream ended without a token")
    if '"content":"' in line and '"content":""' not in line:
        print(time.time())
        break
PY
)
span() { python3 -c "print(f'{$2 - $1:.1f}')"; }
echo "clone:                 $(span "$t0" "$t1") s"
echo "venv and pip:          $(span "$t1" "$t2") s"
echo "install (empty cache): $(span "$t2" "$t3") s"
echo "serve until healthy:   $(span "$t3" "$t4") s"
echo "first streamed token:  $(span "$t4" "$t5") s after healthy"
echo "clone to first token:  $(span "$t0" "$t5") s"
