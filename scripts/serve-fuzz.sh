#!/usr/bin/env bash
# Fuzzes `tracemark serve` from its own OpenAPI description with schemathesis; called by
# `make test-serve-fuzz` (which builds the CLI first).
#
# Three runs, each against a fresh service on a loopback port with a throwaway key and API token:
#   one key    every operation, every check schemathesis has: no 5xx; status codes, content types,
#              headers and bodies as described; schema-invalid requests rejected, schema-valid ones
#              accepted; auth enforced; stream ids unusable once deleted. Examples, coverage,
#              fuzzing and stateful phases (streams: open -> push/get -> close, through the
#              description's links)
#   two keys   the same through the keyring paths (a request without key_id tests every key), all
#              checks but positive_data_acceptance: with several keys, requests that need one key
#              (window, marks, scans, streams) get 400 without key_id by design, which the
#              description cannot say
#   limited    a token with the ordinary rate limit (60 a minute, 5 at once): the service must
#              answer 429, with Retry-After, as described
# The token of the first two runs has a very high rate, so that the limit does not hide the API.
# Schema-valid requests may get 422 (the checks accept it): an empty text, ids outside the
# vocabulary of the tokenizer the service was started with. POST /v1/scan is exempt from
# negative_data_rejection: any body is a corpus, and lines that are not documents are reported
# per line in a 200.
#
# Environment: TRACEMARK (the CLI; default $CARGO_TARGET_DIR/release/tracemark), TRACEMARK_CACHE
# (default ~/.cache/tracemark; schemathesis's virtual environment lives there, keyed by
# benches/requirements-schemathesis.txt), PYTHON, FUZZ_EXAMPLES (300 per operation and phase),
# FUZZ_SEED.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${TRACEMARK_CACHE:-$HOME/.cache/tracemark}
TRACEMARK=${TRACEMARK:-${CARGO_TARGET_DIR:-$CACHE/target}/release/tracemark}
PYTHON=${PYTHON:-python3}
FUZZ_EXAMPLES=${FUZZ_EXAMPLES:-300}
FUZZ_SEED=${FUZZ_SEED:-20261130}
SCHEME=kgw:gamma=0.25,delta=2,context=lefthash:1
REQS=benches/requirements-schemathesis.txt

say() { printf 'serve-fuzz: %s\n' "$*"; }
die() { say "FAILED: $*" >&2; exit 1; }

[[ -x $TRACEMARK ]] || die "no CLI at $TRACEMARK (make test-serve-fuzz builds it)"
[[ $FUZZ_EXAMPLES =~ ^[1-9][0-9]*$ ]] || die "FUZZ_EXAMPLES must be a whole number >= 1, not '$FUZZ_EXAMPLES'"

# schemathesis in its own environment, never the tests' one.
VENV="$CACHE/venv-schemathesis-$(sha256sum "$REQS" | cut -c1-12)"
if [[ ! -e $VENV/.installed ]]; then
    say "installing $(grep -o '^schemathesis==.*' "$REQS") into $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q -r "$REQS"
    touch "$VENV/.installed"
fi
ST="$VENV/bin/st"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tracemark-serve-fuzz.XXXXXX")
SERVERS=()
cleanup() {
    local pid
    for pid in "${SERVERS[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

TOKENIZER=$("$PYTHON" scripts/fetch.py tokenizer)
"$TRACEMARK" keygen --out "$WORK/alpha.key" >/dev/null
"$TRACEMARK" keygen --out "$WORK/beta.key" >/dev/null
# Throwaway API tokens; the service stores their digests only.
FUZZ_TOKEN=$("$PYTHON" -c 'import secrets; print(secrets.token_hex(16))')
LIMITED_TOKEN=$("$PYTHON" -c 'import secrets; print(secrets.token_hex(16))')
digest() { printf %s "$1" | sha256sum | cut -c1-64; }
{
    echo "sha256:$(digest "$FUZZ_TOKEN") fuzz 1000000 100000"
    echo "sha256:$(digest "$LIMITED_TOKEN") limited 60 5"
} >"$WORK/tokens.txt"

# serve NAME KEY...: starts a service, sets ADDR and LOG.
serve() {
    local name=$1 args=() k
    shift
    for k in "$@"; do args+=(--key "$k"); done
    LOG="$WORK/$name.log"
    # The output file exists before the service starts: under load the background job may not
    # have opened it yet when the loop below first reads it.
    : >"$WORK/$name.out"
    "$TRACEMARK" serve --listen 127.0.0.1:0 "${args[@]}" --scheme "$SCHEME" --tokenizer "$TOKENIZER" \
        --tokens "$WORK/tokens.txt" --threads 2 >"$WORK/$name.out" 2>"$LOG" &
    SERVERS+=($!)
    local i
    for ((i = 0; i < 300; i++)); do
        ADDR=$(sed -n 's|^listening on http://||p' "$WORK/$name.out")
        [[ -n $ADDR ]] && return 0
        kill -0 "${SERVERS[-1]}" 2>/dev/null || { cat "$LOG" >&2; die "the $name service exited at start"; }
        sleep 0.1
    done
    die "the $name service did not start within 30 s"
}

# schemathesis reads the description from the service itself: what the binary serves is what is tested.
# application/x-ndjson (POST /v1/scan) is sent as the text it is; 422 is an acceptable answer to
# schema-valid data (see above); a scan's body is never "invalid" (see below).
cat >"$WORK/hooks.py" <<'EOF'
import schemathesis

schemathesis.serializer.alias("application/x-ndjson", "text/plain")
EOF
# Every check is on (the file's, not the command line's `--checks all`, which would override the
# scan's exception).
cat >"$WORK/schemathesis.toml" <<EOF
hooks = "$WORK/hooks.py"

[checks]
enabled = true

[checks.positive_data_acceptance]
expected-statuses = ["2XX", "401", "404", "422", "429"]

# Every body is a corpus: lines that are not documents are reported per line in a 200, by design.
[[operations]]
include-operation-id = "scan"
checks.negative_data_rejection.enabled = false
EOF

# fuzz NAME TOKEN ARGS...: one schemathesis run from $WORK (hypothesis writes nothing into the clone).
fuzz() {
    local name=$1 token=$2
    shift 2
    say "$name: schemathesis against http://$ADDR (seed $FUZZ_SEED)"
    (cd "$WORK" && "$ST" --config-file "$WORK/schemathesis.toml" --no-color run "http://$ADDR/openapi.json" \
        -H "Authorization: Bearer $token" --seed "$FUZZ_SEED" --workers 2 --generation-database none \
        --request-timeout 60 --output-sanitize false "$@") || die "$name: schemathesis found failures (above)"
}

# no_panic NAME: the service's log shows no panic (a panicking handler would drop the connection).
no_panic() {
    ! grep -q 'panicked' "$LOG" || { grep 'panicked' "$LOG" >&2; die "$1: the service panicked"; }
}

serve one-key "$WORK/alpha.key"
fuzz one-key "$FUZZ_TOKEN" --max-examples "$FUZZ_EXAMPLES"
no_panic one-key

serve two-keys "$WORK/alpha.key" "$WORK/beta.key"
fuzz two-keys "$FUZZ_TOKEN" --exclude-checks positive_data_acceptance \
    --max-examples "$FUZZ_EXAMPLES"
no_panic two-keys

serve limited "$WORK/alpha.key"
fuzz limited "$LIMITED_TOKEN" --exclude-checks positive_data_acceptance \
    --include-path-regex '^/v1/' --phases fuzzing --max-examples 5
no_panic limited
# The access log: one line per 429 (outcome rate_limited) for the first few of an interval, then
# a requests_counted summary line for status 429.
limited=$(grep -c -e '"outcome":"rate_limited"' -e '"status":429' "$LOG" || true)
((limited > 0)) || die "limited: the service never answered 429 (no rate_limited line in its access log)"
say "limited: $limited requests got 429, as described"
say "ok: no server error, every response as described"
