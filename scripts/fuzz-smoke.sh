#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for FUZZ_SECONDS seconds each; called by `make fuzz-smoke`.
#
# Modes, best first (FUZZ_MODE=auto picks the first that works here; set it to force one):
#   nightly    cargo-fuzz on the nightly toolchain: coverage-guided libFuzzer with AddressSanitizer
#   bootstrap  the same on stable, with RUSTC_BOOTSTRAP=1 so it accepts cargo-fuzz's -Z flags
#   plain      stable without -Z flags: the same fuzz binaries and entry points, libFuzzer's
#              mutator and our seeds and dictionaries, but no coverage feedback and no ASan
# The run says which mode it used, and fails if any target crashes, leaks, times out or
# cannot be built. Build output, corpora, logs and crash inputs live under $CACHE/fuzz.
#
# Environment: CARGO_FUZZ (the cargo-fuzz binary), CACHE, FUZZ_SECONDS, FUZZ_MODE, PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${CARGO_FUZZ:?the cargo-fuzz binary (make fuzz-smoke installs it)}"
: "${CACHE:?the cache folder}"
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
FUZZ_MODE=${FUZZ_MODE:-auto}
PYTHON=${PYTHON:-python3}
WORK="$CACHE/fuzz"
# The fuzz workspace has its own target folders (one per mode: different flags), never the
# main workspace's, and never inside the clone.
unset CARGO_TARGET_DIR

say() { printf 'fuzz-smoke: %s\n' "$*"; }
die() { say "FAILED: $*" >&2; exit 1; }

[[ $FUZZ_SECONDS =~ ^[1-9][0-9]*$ ]] || die "FUZZ_SECONDS must be a whole number of seconds >= 1, not '$FUZZ_SECONDS'"
# The pinned cargo-fuzz, whatever else is on PATH; it runs cargo through rustup (RUSTUP_TOOLCHAIN).
cargo_fuzz() { "$CARGO_FUZZ" fuzz "$@"; }

# Every fuzz_targets/*.rs must be a [[bin]] of fuzz/Cargo.toml: a file that is not would never run.
mapfile -t targets < <(cargo_fuzz list)
((${#targets[@]})) || die "cargo fuzz list found no fuzz targets"
for file in fuzz/fuzz_targets/*.rs; do
    name=$(basename "$file" .rs)
    printf '%s\n' "${targets[@]}" | grep -qx "$name" || die "$file is not a [[bin]] of fuzz/Cargo.toml"
done

has_nightly() { command -v rustup >/dev/null && rustup run nightly rustc --version >/dev/null 2>&1; }
# Stable accepts cargo-fuzz's flags with RUSTC_BOOTSTRAP=1 if its ASan runtime is there too.
has_bootstrap() {
    local dir
    dir=$(mktemp -d)
    echo 'fn main() {}' >"$dir/probe.rs"
    RUSTC_BOOTSTRAP=1 rustc --edition 2021 -Zsanitizer=address -Cpasses=sancov-module \
        -Cllvm-args=-sanitizer-coverage-level=4 -o "$dir/probe" "$dir/probe.rs" >"$dir/log" 2>&1
    local rc=$?
    ((rc == 0)) || sed 's/^/    /' "$dir/log" >&2
    rm -rf "$dir"
    return $rc
}
if [[ $FUZZ_MODE == auto ]]; then
    if has_nightly; then
        FUZZ_MODE=nightly
    elif has_bootstrap; then
        FUZZ_MODE=bootstrap
    else
        FUZZ_MODE=plain
        say "no nightly toolchain, and stable rejects -Zsanitizer even with RUSTC_BOOTSTRAP=1 (above)"
    fi
fi

target_dir="$WORK/target-$FUZZ_MODE"
fuzzer="cargo-fuzz $("$CARGO_FUZZ" --version | awk '{print $2}')"
case $FUZZ_MODE in
    nightly)
        export RUSTUP_TOOLCHAIN=nightly
        what="$fuzzer on $(rustc --version): coverage-guided libFuzzer, AddressSanitizer" ;;
    bootstrap)
        export RUSTC_BOOTSTRAP=1
        what="$fuzzer on $(rustc --version) with RUSTC_BOOTSTRAP=1: coverage-guided libFuzzer, AddressSanitizer" ;;
    plain)
        what="$(rustc --version), no -Z flags: libFuzzer's mutator with seeds and dictionary, NO coverage feedback, no sanitizer" ;;
    *) die "FUZZ_MODE must be auto, nightly, bootstrap or plain, not '$FUZZ_MODE'" ;;
esac
say "mode: $FUZZ_MODE ($what)"
say "targets: ${targets[*]}; ${FUZZ_SECONDS} s each"

# The fuzz workspace's Cargo.lock is committed: fail rather than resolve new versions.
cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null \
    || die "fuzz/Cargo.lock is not up to date with fuzz/Cargo.toml"

# Build every target once, so the time below is all fuzzing.
if [[ $FUZZ_MODE == plain ]]; then
    RUSTFLAGS="--cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
        cargo build --release --locked --bins --manifest-path fuzz/Cargo.toml --target-dir "$target_dir" \
        || die "building the fuzz targets"
else
    cargo_fuzz build --target-dir "$target_dir" || die "building the fuzz targets"
fi

summary=()
for target in "${targets[@]}"; do
    corpus="$WORK/corpus/$target" dict="$WORK/dict/$target.dict" log="$WORK/logs/$target.log"
    artifacts="$WORK/artifacts/$target/"
    rm -rf "$artifacts"  # only this run's crash inputs
    mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
    seeded=$("$PYTHON" fuzz/seeds.py "$target" "$corpus" "$dict" 2>&1) || die "writing the seeds of $target: $seeded"
    args=(-max_total_time="$FUZZ_SECONDS" -timeout=20 -print_final_stats=1 -artifact_prefix="$artifacts")
    [[ -s $dict ]] && args+=(-dict="$dict")
    say "$target: ${seeded//$'\n'/; }; fuzzing for $FUZZ_SECONDS s (log: $log)"
    start=$SECONDS
    set +e
    if [[ $FUZZ_MODE == plain ]]; then
        "$target_dir/release/$target" "$corpus" "${args[@]}" </dev/null >"$log" 2>&1
    else
        cargo_fuzz run --target-dir "$target_dir" "$target" "$corpus" -- "${args[@]}" </dev/null >"$log" 2>&1
    fi
    rc=$?
    set -e
    if ((rc != 0)); then
        tail -n 60 "$log" >&2
        die "$target exited with status $rc after $((SECONDS - start)) s; crash inputs, if any: $artifacts"
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -Eo 'DONE +cov: [0-9]+' "$log" | grep -Eo '[0-9]+$' || true)
    [[ -n $execs ]] || { tail -n 30 "$log" >&2; die "$target printed no final stats"; }
    line="$target: $execs execs in $((SECONDS - start)) s, corpus $(find "$corpus" -type f | wc -l) inputs${cov:+, coverage $cov edges}, no crash"
    say "$line"
    summary+=("$line")
done
say "passed ($FUZZ_MODE mode):"
printf '    %s\n' "${summary[@]}"
