#!/usr/bin/env bash
# Runs every fuzz target for a bounded time; exits non-zero on a finding.
#
#   fuzz/smoke.sh [SECONDS_PER_TARGET]      (default 20)
#
# With a nightly toolchain: cargo-fuzz (installed if missing) runs each
# libFuzzer target, seeded from the smoke driver's seed inputs. Without one
# (or with OUTPOST_FUZZ_STABLE=1): the stable smoke driver runs the same
# target bodies over a deterministic mutation loop. Findings land in
# fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-20}"
targets=(parse_request scanned_is_sent sse_parser socket_messages stream_state)

have_nightly() {
  command -v rustup >/dev/null && rustup toolchain list 2>/dev/null | grep -q '^nightly'
}

if [ -z "${OUTPOST_FUZZ_STABLE:-}" ] && have_nightly; then
  if ! command -v cargo-fuzz >/dev/null; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
  fi
  # Seed the corpora (stable build of the driver; no libFuzzer needed).
  cargo run --quiet --release --no-default-features --bin smoke -- --write-corpus corpus
  for target in "${targets[@]}"; do
    echo "== cargo fuzz: $target (${seconds}s)"
    cargo +nightly fuzz run --fuzz-dir . "$target" "corpus/$target" -- \
      -max_total_time="$seconds" -print_final_stats=1
  done
else
  echo "== no nightly toolchain: stable smoke driver (${seconds}s per target)"
  cargo run --release --no-default-features --bin smoke -- --seconds "$seconds"
fi
