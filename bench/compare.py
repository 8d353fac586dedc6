#!/usr/bin/env python3
"""Time matcalc's compiled plan against hand-written NumPy, JAX (and PyTorch).

    python3 bench/compare.py [--quick] [--with-torch] [--no-build] [--markdown FILE]

Everything runs single-threaded on this machine in one run: BLAS and XLA are
pinned to one thread (environment set below, before NumPy and JAX load), faer
uses `Par::Seq`. matcalc is timed in-process by `plan_bench` (an example of the
`matcalc` crate, built here) so process start-up and I/O are not timed. Every
timing is the median over several runs of the per-call time of a loop of calls;
matcalc and its peers take turns, run by run, so a slow spell of the shared
machine hits them alike; JAX results are blocked on (`block_until_ready`) and its CPU dispatch is
synchronous. The multiply-add floor of the headline Hessian is its cheapest
evaluation's multiply-adds divided by faer's single-thread GEMM rate measured
in the same run.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.update(
    OPENBLAS_NUM_THREADS="1",
    OMP_NUM_THREADS="1",
    MKL_NUM_THREADS="1",
    VECLIB_MAXIMUM_THREADS="1",
    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
)

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_BIN = os.path.join(ROOT, "target", "release", "examples", "plan_bench")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer and shorter runs (noisier)")
    ap.add_argument("--with-torch", action="store_true", help="also time torch.func (installs the CPU wheel if missing)")
    ap.add_argument("--no-build", action="store_true", help="do not (re)build plan_bench")
    ap.add_argument("--markdown", metavar="FILE", help="also write the table to FILE")
    return ap.parse_args()


ARGS = parse_args()
SECONDS = 0.05 if ARGS.quick else 0.25
RUNS = 3 if ARGS.quick else 7


def calibrated(fn, *args):
    """After warm-up, the number of calls of fn(*args) that take about SECONDS."""
    fn(*args)
    fn(*args)
    t0 = time.perf_counter()
    fn(*args)
    once = max(time.perf_counter() - t0, 1e-9)
    return max(1, min(1_000_000, int(SECONDS / once)))


def one_run(fn, args, n):
    """Seconds per call over a loop of n calls."""
    t0 = time.perf_counter()
    for _ in range(n):
        fn(*args)
    return (time.perf_counter() - t0) / n


def build():
    if ARGS.no_build:
        return
    subprocess.run(
        ["cargo", "build", "--release", "-q", "-p", "matcalc", "--example", "plan_bench"],
        cwd=ROOT,
        check=True,
    )


def plan_bench(*args, runs=RUNS):
    out = subprocess.run(
        [BENCH_BIN, *args, "--seconds", str(SECONDS), "--runs", str(runs)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


class Values:
    """Arrays saved as .npy for plan_bench."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.n = 0

    def at(self, **arrays):
        out = []
        for name, a in arrays.items():
            self.n += 1
            p = os.path.join(self.tmp, f"{name}_{self.n}.npy")
            np.save(p, np.ascontiguousarray(a, dtype=np.float64))
            out += ["--at", f"{name}={p}"]
        return out


def matcalc_args(expr, decl, at, wrt=(), order=1, batch=None):
    args = ["eval", "--expr", expr, "--decl", decl, "--order", str(order), *at]
    for w in wrt:
        args += ["--wrt", w]
    if batch:
        args += ["--batch", batch]
    return args


def interleaved(mc, peers):
    """Median seconds per call of matcalc and of each peer (fn, args), the
    tools taking turns run by run so that a slow spell of the machine (other
    tenants, frequency changes) hits them alike."""
    cal = [calibrated(fn, *args) for fn, args in peers]
    times = [[] for _ in range(1 + len(peers))]
    for _ in range(RUNS):
        times[0].append(plan_bench(*mc, runs=1)["median"])
        for i, ((fn, args), n) in enumerate(zip(peers, cal)):
            times[i + 1].append(one_run(fn, args, n))
    return [float(np.median(t)) for t in times]


# ---------------------------------------------------------------------------
# The problems, hand-written in NumPy and in JAX
# ---------------------------------------------------------------------------

HEADLINE = "norm2(sin(W2*cos(W1*x)))^2"
HEADLINE_DECL = "W1: matrix(r, 100); W2: matrix(100, r); x: vector(100)"


def np_head_f(W1, W2, x):
    return np.sum(np.sin(W2 @ np.cos(W1 @ x)) ** 2)


def np_head_grad(W1, W2, x):
    a = W1 @ x
    c = W2 @ np.cos(a)
    return -2.0 * (W1.T @ (np.sin(a) * (W2.T @ (np.sin(c) * np.cos(c)))))


def np_head_hess(W1, W2, x):
    # −2 (W1ᵀ Diag(b ⊙ u) W1 + Pᵀ Diag(d² − g²) P), P = W2 Diag(h) W1
    a = W1 @ x
    b, h = np.cos(a), np.sin(a)
    c = W2 @ b
    d, g = np.sin(c), np.cos(c)
    u = W2.T @ (d * g)
    P = (W2 * h) @ W1
    return -2.0 * (W1.T @ ((b * u)[:, None] * W1) + P.T @ ((d * d - g * g)[:, None] * P))


def np_head_grad_batch(W1, W2, X):
    A = X @ W1.T
    C = np.cos(A) @ W2.T
    return -2.0 * ((np.sin(A) * ((np.sin(C) * np.cos(C)) @ W2)) @ W1)


LOGISTIC = "sum(log(1 + exp(-y .* (X*w))))"
LOGISTIC_DECL = "X: matrix(m, n); y: vector(m); w: vector(n)"


def np_log_f(X, y, w):
    return np.sum(np.log(1.0 + np.exp(-y * (X @ w))))


def np_log_grad(X, y, w):
    z = y * (X @ w)
    return -(X.T @ (y / (1.0 + np.exp(z))))


def np_log_hess(X, y, w):
    p = 1.0 / (1.0 + np.exp(-y * (X @ w)))
    return X.T @ ((p * (1.0 - p))[:, None] * X)


MLP = "norm2(W3*tanh(W2*tanh(W1*X)) - Y)^2"
MLP_DECL = "X: matrix(d, b); W1: matrix(h, d); W2: matrix(h, h); W3: matrix(o, h); Y: matrix(o, b)"


def np_mlp_f(W1, W2, W3, X, Y):
    return np.sum((W3 @ np.tanh(W2 @ np.tanh(W1 @ X)) - Y) ** 2)


def np_mlp_grad(W1, W2, W3, X, Y):
    h1 = np.tanh(W1 @ X)
    h2 = np.tanh(W2 @ h1)
    e = 2.0 * (W3 @ h2 - Y)
    g3 = e @ h2.T
    d2 = (W3.T @ e) * (1.0 - h2 * h2)
    g2 = d2 @ h1.T
    d1 = (W2.T @ d2) * (1.0 - h1 * h1)
    g1 = d1 @ X.T
    return g1, g2, g3


LOGDET = "logdet(X) + tr(A*inv(X))"
LOGDET_DECL = "X: matrix(n, n); A: matrix(n, n)"


def np_ld_f(X, A):
    return np.linalg.slogdet(X)[1] + np.trace(A @ np.linalg.inv(X))


def np_ld_grad(X, A):
    Xi = np.linalg.inv(X)
    return Xi.T - (Xi @ A @ Xi).T


def jax_setup():
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    import jax.numpy as jnp

    def blocked(fn):
        return lambda *a: jax.block_until_ready(fn(*a))

    j = {}
    head = lambda W1, W2, x: jnp.sum(jnp.sin(W2 @ jnp.cos(W1 @ x)) ** 2)  # noqa: E731
    j["head_f"] = blocked(jax.jit(head))
    j["head_grad"] = blocked(jax.jit(jax.grad(head, argnums=2)))
    j["head_hess"] = blocked(jax.jit(jax.hessian(head, argnums=2)))
    j["head_vmap"] = blocked(jax.jit(jax.vmap(jax.grad(head, argnums=2), in_axes=(None, None, 0))))
    logi = lambda X, y, w: jnp.sum(jnp.log(1.0 + jnp.exp(-y * (X @ w))))  # noqa: E731
    j["log_f"] = blocked(jax.jit(logi))
    j["log_grad"] = blocked(jax.jit(jax.grad(logi, argnums=2)))
    j["log_hess"] = blocked(jax.jit(jax.hessian(logi, argnums=2)))
    mlp = lambda W1, W2, W3, X, Y: jnp.sum((W3 @ jnp.tanh(W2 @ jnp.tanh(W1 @ X)) - Y) ** 2)  # noqa: E731
    j["mlp_f"] = blocked(jax.jit(mlp))
    j["mlp_grad"] = blocked(jax.jit(jax.grad(mlp, argnums=(0, 1, 2))))
    ld = lambda X, A: jnp.linalg.slogdet(X)[1] + jnp.trace(A @ jnp.linalg.inv(X))  # noqa: E731
    j["ld_f"] = blocked(jax.jit(ld))
    j["ld_grad"] = blocked(jax.jit(jax.grad(ld, argnums=0)))
    to = lambda *a: tuple(jnp.asarray(x) for x in a)  # noqa: E731
    return j, to


def torch_setup():
    try:
        import torch
    except ImportError:
        # The CPU-only wheel when its index is reachable, else PyPI's (with CUDA libraries, several GB).
        pip = [sys.executable, "-m", "pip", "install", "-q", "torch"]
        if subprocess.run([*pip, "--index-url", "https://download.pytorch.org/whl/cpu"]).returncode != 0:
            subprocess.run(pip, check=True)
        import torch
    # The generated PyTorch code, run on every case of the suite and compared
    # with matcalc's interpreter (crates/matcalc/tests/codegen.rs).
    print("running the generated PyTorch code on the test cases …", file=sys.stderr)
    subprocess.run(
        ["cargo", "test", "-q", "--release", "-p", "matcalc", "--test", "codegen", "torch_matches_interpreter"],
        cwd=ROOT,
        env={**os.environ, "MATCALC_TORCH_PYTHON": sys.executable},
        check=True,
    )
    torch.set_num_threads(1)
    from torch.func import grad, hessian, vmap

    head = lambda W1, W2, x: torch.sum(torch.sin(W2 @ torch.cos(W1 @ x)) ** 2)  # noqa: E731
    logi = lambda X, y, w: torch.sum(torch.log(1.0 + torch.exp(-y * (X @ w))))  # noqa: E731
    mlp = lambda W1, W2, W3, X, Y: torch.sum((W3 @ torch.tanh(W2 @ torch.tanh(W1 @ X)) - Y) ** 2)  # noqa: E731
    ld = lambda X, A: torch.linalg.slogdet(X)[1] + torch.trace(A @ torch.linalg.inv(X))  # noqa: E731
    t = {
        "head_f": head,
        "head_grad": grad(head, argnums=2),
        "head_hess": hessian(head, argnums=2),
        "head_vmap": vmap(grad(head, argnums=2), in_dims=(None, None, 0)),
        "log_f": logi,
        "log_grad": grad(logi, argnums=2),
        "log_hess": hessian(logi, argnums=2),
        "mlp_f": mlp,
        "mlp_grad": grad(mlp, argnums=(0, 1, 2)),
        "ld_f": ld,
        "ld_grad": grad(ld, argnums=0),
    }
    to = lambda *a: tuple(torch.from_numpy(np.ascontiguousarray(x)) for x in a)  # noqa: E731
    return t, to


# ---------------------------------------------------------------------------


def main():
    build()
    rng = np.random.default_rng(7)
    r, n = 95, 100
    W1 = rng.standard_normal((r, n)) / np.sqrt(n)
    W2 = rng.standard_normal((n, r)) / np.sqrt(r)
    x = rng.standard_normal(n)
    Xb = rng.standard_normal((4096, n))
    m, k = 10000, 100
    Xl = rng.standard_normal((m, k)) / np.sqrt(k)
    yl = np.sign(rng.standard_normal(m))
    wl = rng.standard_normal(k)
    d, hdim, o, b = 100, 200, 10, 256
    M1 = rng.standard_normal((hdim, d)) / np.sqrt(d)
    M2 = rng.standard_normal((hdim, hdim)) / np.sqrt(hdim)
    M3 = rng.standard_normal((o, hdim)) / np.sqrt(hdim)
    Xm = rng.standard_normal((d, b))
    Ym = rng.standard_normal((o, b))
    nl = 200
    Xd = np.eye(nl) * 2.0 + rng.standard_normal((nl, nl)) / np.sqrt(nl)
    Ad = rng.standard_normal((nl, nl))

    # Numbers agree (the hand-written NumPy against JAX is checked below too).
    j, jto = jax_setup()
    checks = [
        (np_head_grad(W1, W2, x), j["head_grad"](*jto(W1, W2, x))),
        (np_head_hess(W1, W2, x), j["head_hess"](*jto(W1, W2, x))),
        (np_head_grad_batch(W1, W2, Xb[:8]), j["head_vmap"](*jto(W1, W2, Xb[:8]))),
        (np_log_hess(Xl, yl, wl), j["log_hess"](*jto(Xl, yl, wl))),
        (np_mlp_grad(M1, M2, M3, Xm, Ym)[0], j["mlp_grad"](*jto(M1, M2, M3, Xm, Ym))[0]),
        (np_ld_grad(Xd, Ad), j["ld_grad"](*jto(Xd, Ad))),
    ]
    for a, bb in checks:
        assert np.allclose(a, np.asarray(bb), rtol=1e-8, atol=1e-8), "NumPy and JAX disagree"

    t = None
    if ARGS.with_torch:
        t, tto = torch_setup()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        v = Values(tmp)
        head_at = v.at(W1=W1, W2=W2, x=x)
        head_b_at = v.at(W1=W1, W2=W2, x=Xb)
        log_at = v.at(X=Xl, y=yl, w=wl)
        mlp_at = v.at(W1=M1, W2=M2, W3=M3, X=Xm, Y=Ym)
        ld_at = v.at(X=Xd, A=Ad)
        cases = [
            ("(a) headline f", (HEADLINE, HEADLINE_DECL, head_at, ()), np_head_f, "head_f", (W1, W2, x)),
            ("(a) headline gradient", (HEADLINE, HEADLINE_DECL, head_at, ("x",)), np_head_grad, "head_grad", (W1, W2, x)),
            ("(a) headline Hessian", (HEADLINE, HEADLINE_DECL, head_at, ("x",), 2), np_head_hess, "head_hess", (W1, W2, x)),
            ("(a) batched gradient, 4096 points", (HEADLINE, HEADLINE_DECL, head_b_at, ("x",), 1, "x"),
             np_head_grad_batch, "head_vmap", (W1, W2, Xb)),
            ("(b) logistic f", (LOGISTIC, LOGISTIC_DECL, log_at, ()), np_log_f, "log_f", (Xl, yl, wl)),
            ("(b) logistic gradient", (LOGISTIC, LOGISTIC_DECL, log_at, ("w",)), np_log_grad, "log_grad", (Xl, yl, wl)),
            ("(b) logistic Hessian", (LOGISTIC, LOGISTIC_DECL, log_at, ("w",), 2), np_log_hess, "log_hess", (Xl, yl, wl)),
            ("(c) MLP f", (MLP, MLP_DECL, mlp_at, ()), np_mlp_f, "mlp_f", (M1, M2, M3, Xm, Ym)),
            ("(c) MLP gradient (W1, W2, W3)", (MLP, MLP_DECL, mlp_at, ("W1", "W2", "W3")), np_mlp_grad, "mlp_grad",
             (M1, M2, M3, Xm, Ym)),
            ("(d) logdet f", (LOGDET, LOGDET_DECL, ld_at, ()), np_ld_f, "ld_f", (Xd, Ad)),
            ("(d) logdet gradient", (LOGDET, LOGDET_DECL, ld_at, ("X",)), np_ld_grad, "ld_grad", (Xd, Ad)),
        ]
        for name, mc, npf, key, args in cases:
            peers = [(npf, args), (j[key], jto(*args))] + ([(t[key], tto(*args))] if t else [])
            tm, tn, tj, *tt = interleaved(matcalc_args(*mc), peers)
            tt = tt[0] if t else None
            rows.append((name, tm, tn, tj, tt))
            print(f"  {name}: matcalc {tm * 1e6:.1f} µs", file=sys.stderr)
    gemm = plan_bench("gemm", "--m", "512", "--n", "512", "--k", "512")["macs_per_s"]

    by = {r[0]: r for r in rows}
    # The cheapest evaluation of the printed Hessian
    # −2 W1ᵀ (Diag(b ⊙ u) + Diag(h) W2ᵀ Diag(d² − g²) W2 Diag(h)) W1, symmetry exploited,
    # scalings by Diag and the O(n²), O(n·r) terms left out; the cheaper of two groupings:
    # inner first: Q = (W2 Diag(h))ᵀ D (W2 Diag(h)) (symmetric, n·r·r/2), M·W1 (r·r·n),
    #   W1ᵀ (M W1) (symmetric, n·n·r/2);
    # P first: P = W2 Diag(h) W1 (n·r·n), Pᵀ D P (symmetric, n·n·n/2), W1ᵀ D W1 (symmetric, n·n·r/2).
    floor_macs = min(n * r * r / 2 + r * r * n + n * n * r / 2, n * r * n + n * n * n / 2 + n * n * r / 2)
    floor = floor_macs / gemm
    lines = []
    has_t = t is not None
    head = "| case | matcalc | NumPy | JAX |" + (" torch |" if has_t else "") + " matcalc/NumPy | matcalc/JAX |" + (
        " matcalc/torch |" if has_t else "")
    lines.append(head)
    lines.append("|" + "---|" * (head.count("|") - 1))
    us = lambda s: f"{s * 1e6:,.1f} µs"  # noqa: E731
    for name, tm, tn, tj, tt in rows:
        cells = [name, us(tm), us(tn), us(tj)] + ([us(tt)] if has_t else [])
        cells += [f"{tm / tn:.2f}", f"{tm / tj:.2f}"] + ([f"{tm / tt:.2f}"] if has_t else [])
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    g_f = by["(a) headline gradient"][1] / by["(a) headline f"][1]
    lg_f = by["(b) logistic gradient"][1] / by["(b) logistic f"][1]
    mg_f = by["(c) MLP gradient (W1, W2, W3)"][1] / by["(c) MLP f"][1]
    hess = by["(a) headline Hessian"][1]
    lines.append(f"faer GEMM rate (512³, one thread): {gemm / 1e9:.2f} G multiply-adds/s")
    lines.append(
        f"headline Hessian floor: {floor_macs / 1e6:.3f} M multiply-adds = {floor * 1e6:.1f} µs; "
        f"matcalc / floor = {hess / floor:.2f}"
    )
    lines.append(f"gradient cost / function cost (matcalc): headline {g_f:.2f}, logistic {lg_f:.2f}, MLP {mg_f:.2f}")
    lines.append("")
    lines.append("targets:")
    targets = [
        ("headline gradient ≥ 5× faster than jax.jit(grad)", by["(a) headline gradient"][3] / by["(a) headline gradient"][1], 5.0),
        ("headline gradient/f ≤ 2.5", 2.5 / g_f, 1.0),
        ("headline Hessian ≥ 4× faster than jax.jit(hessian)", by["(a) headline Hessian"][3] / hess, 4.0),
        ("headline Hessian within 2× of the floor", 2.0 / (hess / floor), 1.0),
        ("batched 4096 faster than jax.jit(vmap(grad))",
         by["(a) batched gradient, 4096 points"][3] / by["(a) batched gradient, 4096 points"][1], 1.0),
    ]
    for case in ["(b) logistic gradient", "(b) logistic Hessian", "(c) MLP gradient (W1, W2, W3)"]:
        _, tm, tn, tj, _ = by[case]
        targets.append((f"{case} within 1.2× of the best of NumPy/JAX", 1.2 * min(tn, tj) / tm, 1.0))
    for what, ratio, need in targets:
        lines.append(f"- {what}: {'met' if ratio >= need else 'NOT met'} ({ratio:.2f} vs {need:.2f})")
    text = "\n".join(lines)
    print(text)
    if ARGS.markdown:
        with open(ARGS.markdown, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
