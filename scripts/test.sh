#!/usr/bin/env bash
# Install what the tests need (only what is missing), then run every test:
#   1. cargo test --release --workspace --no-fail-fast  (release: the same build profile as
#      the binary, so faer is compiled once for the tests, the CLI tests and the examples
#      check; --no-fail-fast: every test binary runs, then the summary lists them all)
#   2. the browser tests (web-tests/: the page of `matcalc serve` in Debian's Chromium,
#      headless, driven by playwright-core with node's own test runner)
#   3. python3 ../shared/tools/examples_check.py, when ../shared exists beside the clone
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

# The browser tests need Debian's Chromium (never a downloaded browser) and playwright-core
# from web-tests/package-lock.json. If either cannot be had, say why and skip only them.
browser_skip=""
if [ ! -x /usr/bin/chromium ]; then
  echo "== installing chromium (needed by the browser tests)"
  { as_root apt-get update -q && as_root apt-get install -y -q chromium; } ||
    browser_skip="Chromium could not be installed (apt-get install -y chromium failed)"
  [ -z "$browser_skip" ] && [ ! -x /usr/bin/chromium ] && browser_skip="apt-get installed chromium but /usr/bin/chromium is missing"
fi
if [ -z "$browser_skip" ] && ! command -v npm >/dev/null; then
  echo "== installing node and npm (needed by the browser tests)"
  { as_root apt-get update -q && as_root apt-get install -y -q nodejs npm; } || browser_skip="node/npm could not be installed"
fi
if [ -z "$browser_skip" ]; then
  # npm ci only when node_modules is missing or the lock file changed since the last install.
  stamp=web-tests/node_modules/.lock-sha256
  want=$(sha256sum web-tests/package-lock.json | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "== npm ci (web-tests: playwright-core)"
    if (cd web-tests && npm ci --no-audit --no-fund); then echo "$want" >"$stamp"; else browser_skip="npm ci failed in web-tests/"; fi
  fi
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

echo
echo "== browser tests (web-tests/, headless Chromium)"
if [ -n "$browser_skip" ]; then
  echo "SKIPPED the browser tests: $browser_skip"
elif [ ! -x target/release/matcalc ]; then
  echo "target/release/matcalc was not built"
  failed=1
else
  (cd web-tests && MATCALC_BIN=../target/release/matcalc node --test --test-concurrency=1 page.test.js) || failed=1
fi

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
