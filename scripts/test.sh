#!/usr/bin/env bash
# Install what the tests need (only what is missing), then run every test:
#   1. cargo test --release --workspace --no-fail-fast  (release: the same build profile as
#      the binary, so faer is compiled once for the tests, the CLI tests and the examples
#      check; --no-fail-fast: every test binary runs, then the summary lists them all)
#   2. python3 ../shared/tools/examples_check.py, when ../shared exists beside the clone
# Exits non-zero if anything fails. Safe to run again: installed tools are skipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# --- dependencies ---------------------------------------------------------------------

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}

install_numpy() {
  echo "== installing numpy (needed by the examples check)"
  if python3 -m pip --version >/dev/null 2>&1; then
    # A virtualenv takes a plain install; Debian's system Python refuses it (PEP 668), so
    # fall back to a user install, which there needs --break-system-packages.
    python3 -m pip install numpy ||
      python3 -m pip install --user numpy ||
      python3 -m pip install --user --break-system-packages numpy
  elif command -v apt-get >/dev/null; then
    as_root apt-get update -q && as_root apt-get install -y -q python3-numpy
  else
    echo "error: numpy is missing and neither pip nor apt-get is available" >&2
    return 1
  fi
}

command -v cargo >/dev/null || { echo "error: cargo not found: install the Rust toolchain (rustup)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "error: python3 not found" >&2; exit 1; }
if ! python3 -c 'import numpy' 2>/dev/null; then
  install_numpy
  python3 -c 'import numpy' || { echo "error: numpy was installed but cannot be imported" >&2; exit 1; }
fi
# JAX (CPU) runs the generated JAX code in the code-generation tests.
if ! python3 -c 'import jax' 2>/dev/null; then
  echo "== installing jax[cpu] (needed by the code-generation tests)"
  python3 -m pip install "jax[cpu]" || python3 -m pip install --user --break-system-packages "jax[cpu]" ||
    echo "warning: jax could not be installed; the JAX code-generation test will be skipped" >&2
fi

# KaTeX renders every explanation's LaTeX in the explanation tests (node + npm ci).
katex_dir=crates/matcalc/tests/katex
if command -v node >/dev/null && command -v npm >/dev/null; then
  if [ ! -d "$katex_dir/node_modules/katex" ] || [ "$katex_dir/package-lock.json" -nt "$katex_dir/node_modules/.package-lock.json" ]; then
    echo "== installing KaTeX (npm ci in $katex_dir)"
    (cd "$katex_dir" && npm ci --no-audit --no-fund)
  fi
  export MATCALC_REQUIRE_KATEX=1
else
  echo "warning: node/npm not found; the KaTeX rendering check of explanations will be skipped" >&2
fi

# --- tests ----------------------------------------------------------------------------

failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "== cargo test --release --workspace"
cargo test --release --workspace --no-fail-fast 2>&1 | tee "$log" || failed=1

echo
echo "== cargo test summary"
grep -E '^ +(Running|Doc-tests) |^test result:' "$log" | sed -E 's/ \(target[^)]*\)//' || true

if [ -d ../shared/tools ]; then
  echo
  echo "== public worked examples (../shared/tools/examples_check.py)"
  if [ -x target/release/matcalc ]; then
    python3 ../shared/tools/examples_check.py --bin target/release/matcalc || failed=1
  else
    echo "target/release/matcalc was not built"
    failed=1
  fi
fi

echo
if [ "$failed" = 0 ]; then echo "all tests passed"; else echo "FAILED (see above)"; fi
exit "$failed"
