#!/usr/bin/env bash
# Flamegraphs of the hot paths (issue 27, deliverable 1), committed as SVG
# under benches/flame/: perf's cpu-clock samples with DWARF call graphs
# (hardware counters are not available on every machine; the software clock
# is), folded and drawn by inferno (crates.io, installed once into the cache).
#
#   benches/flamegraphs.sh            # every profile (a few minutes, idle machine)
#   benches/flamegraphs.sh step-gumbel scan-text   # some of them
#
# Profiles: the decode step at V = 128,256, batch 1, for each scheme (the
# criterion bench run under `--profile-time`), detection on ids (kgw h=1,
# 1,000-token documents) and `tracemark scan` of human text with the DeepSeek
# tokenizer (one job). Needs perf (Debian's linux-perf) and
# kernel.perf_event_paranoid <= 2.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cache="${TRACEMARK_CACHE:-$HOME/.cache/tracemark}"
target="${CARGO_TARGET_DIR:-$root/target}"
out="$root/benches/flame"
inferno_version=0.12.8
tools="$cache/tools/inferno-$inferno_version"
seconds="${PROFILE_SECONDS:-5}"

command -v perf >/dev/null || { echo "perf is missing (apt install linux-perf)" >&2; exit 1; }
if [ ! -x "$tools/bin/inferno-flamegraph" ]; then
    cargo install -q --locked --root "$tools" inferno --version "$inferno_version" \
        --no-default-features --features cli
fi
export PATH="$tools/bin:$PATH"
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# The bench executables (built with line tables: [profile.bench] in Cargo.toml).
bench_exe() {
    cargo bench -q --locked -p tracemark-benches --bench "$1" --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$1"
}

# profile NAME TITLE COMMAND...: samples COMMAND and writes $out/NAME.svg.
profile() {
    local name="$1" title="$2"
    shift 2
    echo "profiling $name ..." >&2
    perf record -q -F 1999 -e cpu-clock --call-graph dwarf,16384 -o "$tmp/$name.data" -- "$@" >/dev/null 2>"$tmp/$name.err" ||
        { cat "$tmp/$name.err" >&2; return 1; }
    perf script -i "$tmp/$name.data" 2>/dev/null | inferno-collapse-perf --all >"$tmp/$name.folded"
    inferno-flamegraph --title "$title" --subtitle "$(date -u +%F), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" \
        --width 1400 --minwidth 0.2 <"$tmp/$name.folded" >"$out/$name.svg"
    rm -f "$tmp/$name.data"
}

wanted() { [ $# -eq 0 ] || [[ " $* " == *" $name "* ]]; }
selected=("$@")

step_exe="$(bench_exe decode_step)"
detect_exe="$(bench_exe detect)"
for scheme in kgw-lefthash1 kgw-selfhash4 tournament-m30-k40 gumbel; do
    name="step-$scheme"
    if wanted "${selected[@]}"; then
        profile "$name" "Decode step, $scheme, V = 128,256, batch 1" \
            "$step_exe" --bench --profile-time "$seconds" "^step/v128256/b1/$scheme\$"
    fi
done
name=detect-kgw
if wanted "${selected[@]}"; then
    profile "$name" "Detection on ids, kgw h=1, 1,000-token documents" \
        "$detect_exe" --bench --profile-time "$seconds" '^detect/1000-token-doc/kgw-lefthash1$'
fi
name=scan-text
if wanted "${selected[@]}"; then
    cargo build -q --locked --release -p tracemark-cli --bin tracemark
    head -n 3000 "$(python3 scripts/fetch.py human-text)" >"$tmp/corpus.jsonl"
    "$target/release/tracemark" keygen --out "$tmp/bench.key" >/dev/null
    profile "$name" "tracemark scan of human text, DeepSeek tokenizer, one job" \
        "$target/release/tracemark" --quiet scan --key "$tmp/bench.key" \
        --scheme kgw:gamma=0.25,delta=2,context=lefthash:1 --tokenizer "$(python3 scripts/fetch.py tokenizer)" \
        --jobs 1 --json --out /dev/null "$tmp/corpus.jsonl"
fi
ls -1 "$out"
