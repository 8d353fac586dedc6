//! The compiled plan against the interpreter: every case of `tests/cases/*.mc`
//! at every symbolic dimension 1, 2 and random sizes, unbatched and batched
//! (three points at once), must give the same numbers, the same errors and
//! the same warnings. The property-test generator's expressions get the same
//! comparison in `tests/properties.rs` (`plan_matches_interpreter`).

use matcalc::eval::check::{sample_dims, sample_values};
use matcalc::eval::interp::{bind_dims, evaluate};
use matcalc::eval::Tensor;
use matcalc::{Compiled, Problem};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::Path;

/// A case file's header: expression, declarations, wrt, order.
struct Header {
    expr: String,
    decls: String,
    wrt: Vec<String>,
    order: usize,
}

fn header(text: &str) -> Header {
    let mut h = Header {
        expr: String::new(),
        decls: String::new(),
        wrt: Vec::new(),
        order: 1,
    };
    let mut decls = Vec::new();
    for line in text.lines().take_while(|l| !l.starts_with("--- ")) {
        let Some((k, v)) = line.split_once(':') else { continue };
        let v = v.trim();
        match k.trim() {
            "expr" => h.expr = v.to_string(),
            "decl" => decls.push(v.to_string()),
            "wrt" => h
                .wrt
                .extend(v.split(',').map(|w| w.trim().to_string()).filter(|w| !w.is_empty())),
            "order" => h.order = v.parse().expect("order"),
            _ => {}
        }
    }
    h.decls = decls.join("; ");
    h
}

fn close(a: &[f64], b: &[f64]) -> bool {
    let scale = a.iter().chain(b).fold(1.0f64, |m, v| m.max(v.abs()));
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-10 * scale)
}

/// Compare the plan with the interpreter at one point; `Err` describes a mismatch.
pub fn compare(p: &Problem, c: &mut Compiled, vals: &[Option<Tensor>], dims: &[Option<usize>]) -> Result<(), String> {
    let g = &p.graph;
    let mut roots = vec![p.root];
    roots.extend(c.derivatives().iter().map(|d| d.id));
    let explicit: Vec<(String, usize)> = g
        .dims
        .iter()
        .zip(dims)
        .filter_map(|(d, v)| Some((d.name.clone(), (*v)?)))
        .collect();
    c.set_dims(&explicit);
    let named: Vec<(&str, &Tensor)> = g
        .vars
        .iter()
        .zip(vals)
        .filter_map(|(v, t)| Some((v.name.as_str(), t.as_ref()?)))
        .collect();
    let want = bind_dims(g, vals, &explicit).and_then(|d| evaluate(g, &roots, p.root, vals, &d));
    let got = c.eval(&named);
    match (want, got) {
        (Ok(w), Ok(e)) => {
            for (i, wv) in w.values.iter().enumerate() {
                let gv = if i == 0 { e.value() } else { e.derivative(i - 1) };
                if gv.shape != wv.shape() || !close(gv.data, wv.data()) {
                    return Err(format!(
                        "root {i}: plan {:?} {:?}\n interpreter {:?} {:?}",
                        gv.shape,
                        &gv.data[..gv.data.len().min(6)],
                        wv.shape(),
                        &wv.data()[..wv.len().min(6)]
                    ));
                }
            }
            let ws: Vec<&str> = e.warnings().collect();
            if ws != w.warnings {
                return Err(format!("warnings: plan {ws:?}, interpreter {:?}", w.warnings));
            }
            Ok(())
        }
        (Err(w), Err(e)) if w == e => Ok(()),
        (w, e) => Err(format!(
            "plan {:?} / interpreter {:?}",
            e.map(|_| "ok").map_err(|e| e.to_string()),
            w.map(|_| "ok").map_err(|e| e.to_string())
        )),
    }
}

/// Three points of the first `wrt` variable at once against the interpreter point by point.
pub fn compare_batched(
    p: &Problem,
    c: &mut Compiled,
    wrt: &str,
    seed: u64,
    dims: &[Option<usize>],
) -> Result<(), String> {
    let g = &p.graph;
    let Some(v) = g.var_index(wrt) else { return Ok(()) };
    let mut rng = StdRng::seed_from_u64(seed);
    let points: Vec<Vec<Option<Tensor>>> = (0..3)
        .map(|_| sample_values(g, p.root, &dims.to_vec(), &mut rng))
        .collect();
    let Some(first) = points[0][v].as_ref() else {
        return Ok(());
    };
    let mut shape = vec![3];
    shape.extend_from_slice(first.shape());
    let data: Vec<f64> = points
        .iter()
        .flat_map(|pt| pt[v].as_ref().unwrap().data().to_vec())
        .collect();
    let stacked = Tensor::from_vec(shape, data).unwrap();
    let mut roots = vec![p.root];
    roots.extend(c.derivatives().iter().map(|d| d.id));
    let explicit: Vec<(String, usize)> = g
        .dims
        .iter()
        .zip(dims)
        .filter_map(|(d, v)| Some((d.name.clone(), (*v)?)))
        .collect();
    c.set_dims(&explicit);
    let mut named: Vec<(&str, &Tensor)> = Vec::new();
    for (i, var) in g.vars.iter().enumerate() {
        if i == v {
            named.push((var.name.as_str(), &stacked));
        } else if let Some(t) = points[0][i].as_ref() {
            named.push((var.name.as_str(), t));
        }
    }
    let got = c.eval_batch(&named, wrt);
    let mut want = Vec::new();
    for pt in &points {
        let mut vals = points[0].clone();
        vals[v] = pt[v].clone();
        let r = bind_dims(g, &vals, &explicit).and_then(|d| evaluate(g, &roots, p.root, &vals, &d));
        match r {
            Ok(r) => want.push(r.values),
            Err(e) => {
                return match got {
                    Err(_) => Ok(()),
                    Ok(_) => Err(format!("batched: plan ok, interpreter {e}")),
                }
            }
        }
    }
    let e = got.map_err(|e| format!("batched: plan failed: {e}"))?;
    for k in 0..roots.len() {
        let gv = if k == 0 { e.value() } else { e.derivative(k - 1) };
        let per: Vec<f64> = want.iter().flat_map(|w| w[k].data().to_vec()).collect();
        let mut shape = vec![3];
        shape.extend_from_slice(want[0][k].shape());
        if gv.shape != &shape[..] || !close(gv.data, &per) {
            return Err(format!(
                "batched root {k}: plan {:?}, interpreter {:?}",
                gv.shape, shape
            ));
        }
    }
    Ok(())
}

fn dims_all(p: &Problem, v: u64) -> Vec<(String, usize)> {
    p.graph
        .dims
        .iter()
        .map(|d| {
            let v = match d.range {
                Some((lo, hi)) => v.clamp(lo, hi),
                None => v,
            };
            (d.name.clone(), v as usize)
        })
        .collect()
}

#[test]
fn plan_matches_interpreter_on_every_case() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/cases");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mc"))
        .collect();
    files.sort();
    assert!(files.len() > 100, "case files not found");
    let mut failures = Vec::new();
    let mut compared = 0;
    for f in &files {
        let h = header(&std::fs::read_to_string(f).unwrap());
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let mut p = Problem::new(&h.expr, &h.decls).unwrap();
        let ds = p.derive(&h.wrt, h.order).unwrap();
        let mut c = Compiled::new(p.clone(), ds);
        for (what, seed, explicit) in [
            ("dims=1", 1u64, dims_all(&p, 1)),
            ("dims=2", 2, dims_all(&p, 2)),
            ("random", 3, Vec::new()),
            ("random", 4, Vec::new()),
        ] {
            let mut rng = StdRng::seed_from_u64(seed);
            let dims = sample_dims(&p.graph, &explicit, &mut rng);
            let vals = sample_values(&p.graph, p.root, &dims, &mut rng);
            if let Err(e) = compare(&p, &mut c, &vals, &dims) {
                failures.push(format!("{name} ({what}, seed {seed}): {e}"));
            }
            // The same shapes again: the cached program must give the same.
            if let Err(e) = compare(&p, &mut c, &vals, &dims) {
                failures.push(format!("{name} ({what}, seed {seed}, second call): {e}"));
            }
            if let Err(e) = compare_batched(&p, &mut c, &h.wrt[0], seed + 10, &dims) {
                failures.push(format!("{name} ({what}, seed {seed}): {e}"));
            }
            compared += 1;
        }
    }
    assert!(compared > 400);
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn plan_reports_the_interpreters_errors() {
    let mut c = matcalc::compile("log(x'*x - 1)", "x: vector(n)", &["x"], 1).unwrap();
    let x = Tensor::from_vec(vec![2], vec![0.5, 0.5]).unwrap();
    let e = c.eval(&[("x", &x)]).unwrap_err();
    assert_eq!(e.kind, matcalc::ErrorKind::Numeric);
    assert!(e.message.contains("log of a negative number"), "{}", e.message);
    let mut c = matcalc::compile("logdet(X)", "X: matrix(n, n)", &["X"], 1).unwrap();
    let x = Tensor::from_vec(vec![2, 2], vec![1.0, 2.0, 2.0, 4.0]).unwrap();
    let e = c.eval(&[("X", &x)]).unwrap_err();
    assert!(e.message.contains("singular"), "{}", e.message);
    let y = Tensor::from_vec(vec![2, 2], vec![2.0, 1.0, 1.0, 2.0]).unwrap();
    assert!((c.eval(&[("X", &y)]).unwrap().value().data[0] - 3f64.ln()).abs() < 1e-12);
    let e = c.eval(&[]).unwrap_err();
    assert!(e.message.contains("no value given for `X`"), "{}", e.message);
    // Non-finite inputs: the interpreter's error whether or not a product exposes them.
    for (expr, decl) in [
        ("sum(relu(A*x))", "A: matrix(m, n)"),
        ("sum(exp(-x))", ""),
        ("sum(relu(x))", ""),
        ("x'*x", ""),
    ] {
        let mut c = matcalc::compile(expr, decl, &["x"], 1).unwrap();
        let a = Tensor::from_vec(vec![2, 2], vec![1.0, 0.0, 0.0, 1.0]).unwrap();
        let ok = Tensor::from_vec(vec![2], vec![1.0, 2.0]).unwrap();
        assert!(c.eval(&[("A", &a), ("x", &ok)]).is_ok());
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let x = Tensor::from_vec(vec![2], vec![1.0, bad]).unwrap();
            let e = c.eval(&[("A", &a), ("x", &x)]).unwrap_err();
            assert!(e.message.contains("not finite"), "{expr} at {bad}: {}", e.message);
        }
    }
    // A product that overflows: reported whether its reader propagates the
    // infinity (sin: the product itself is not checked) or not (exp(−∞) = 0).
    for expr in ["sum(sin(A*x))", "sum(exp(A*x))", "sum(exp(-(A*x)))", "sum(relu(A*B*x))"] {
        let mut c = matcalc::compile(expr, "A: matrix(n, n); B: matrix(n, n)", &["x"], 1).unwrap();
        let big = Tensor::from_vec(vec![2, 2], vec![1e300, 1e300, 1e300, 1e300]).unwrap();
        let x = Tensor::from_vec(vec![2], vec![1e300, 1e300]).unwrap();
        let e = c.eval(&[("A", &big), ("B", &big), ("x", &x)]).unwrap_err();
        assert!(
            e.message.contains("not finite") || e.message.contains("overflow"),
            "{expr}: {}",
            e.message
        );
    }
    let z = Tensor::from_vec(vec![3], vec![1.0, 2.0, 3.0]).unwrap();
    assert_eq!(c.eval(&[("X", &z)]).unwrap_err().kind, matcalc::ErrorKind::Value);
    assert_eq!(
        c.eval_batch(&[("X", &y)], "X").unwrap_err().kind,
        matcalc::ErrorKind::Value
    );
}

/// Sizes where the kernels switch strategy (streamed matrix–vector products,
/// symmetric products, blocked GEMMs) against the interpreter.
#[test]
fn plan_matches_interpreter_at_larger_sizes() {
    let problems = [
        (
            "sum(log(1 + exp(-y .* (X*w))))",
            "X: matrix(m, n)",
            "w",
            2,
            vec![("m", 400), ("n", 60)],
        ),
        (
            "sum(log(1 + exp(-y .* (X*w))))",
            "X: matrix(m, n)",
            "w",
            1,
            vec![("m", 3000), ("n", 40)],
        ),
        (
            "norm2(sin(W2*cos(W1*x)))^2",
            "W1: matrix(r, n); W2: matrix(n, r)",
            "x",
            2,
            vec![("r", 95), ("n", 100)],
        ),
        ("logdet(X) + tr(A*inv(X))", "X: matrix(n, n)", "X", 1, vec![("n", 70)]),
        (
            "norm2(W3*tanh(W2*tanh(W1*X)) - Y)^2",
            "X: matrix(d, b); W1: matrix(h, d); W2: matrix(h, h); W3: matrix(o, h)",
            "W1",
            1,
            vec![("d", 30), ("b", 50), ("h", 40), ("o", 5)],
        ),
    ];
    for (expr, decl, wrt, order, dims) in problems {
        let (p, mut c, dv) = compiled_and_compared(expr, decl, wrt, order, &dims, 5);
        compare_batched(&p, &mut c, wrt, 6, &dv).unwrap_or_else(|e| panic!("{expr} (batched): {e}"));
    }
}

/// Compile `expr` with its derivatives of `order` by `wrt` (none for order 0),
/// check it against the interpreter at random values with the sizes `dims`,
/// and return it with the sizes drawn.
fn compiled_and_compared(
    expr: &str,
    decl: &str,
    wrt: &str,
    order: usize,
    dims: &[(&str, usize)],
    seed: u64,
) -> (Problem, Compiled, Vec<Option<usize>>) {
    let mut p = Problem::new(expr, decl).unwrap();
    let ds = if order == 0 {
        Vec::new()
    } else {
        p.derive(&[wrt.to_string()], order).unwrap()
    };
    let mut c = Compiled::new(p.clone(), ds);
    let explicit: Vec<(String, usize)> = dims.iter().map(|(n, v)| (n.to_string(), *v)).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let dv = sample_dims(&p.graph, &explicit, &mut rng);
    let vals = sample_values(&p.graph, p.root, &dv, &mut rng);
    compare(&p, &mut c, &vals, &dv).unwrap_or_else(|e| panic!("{expr}: {e}"));
    (p, c, dv)
}

/// Multiply-adds of the plan's products, from its summary (a symmetric
/// product computes half).
fn product_macs(summary: &str) -> f64 {
    summary
        .lines()
        .filter_map(|l| {
            let sym = l.starts_with("symmetric product ");
            let rest = l
                .strip_prefix("symmetric product ")
                .or_else(|| l.strip_prefix("product "))?;
            let dims: Vec<f64> = rest
                .split_whitespace()
                .next()?
                .split('×')
                .map(|d| d.parse().unwrap())
                .collect();
            Some(dims.iter().product::<f64>() * if sym { 0.5 } else { 1.0 })
        })
        .sum()
}

/// Chains of products are regrouped at the evaluation's sizes: the headline
/// Hessian's `Diag(h) W2ᵀ Diag(d) W2 Diag(h) W1` becomes `(W2ᵀ D W2)` (a
/// symmetric product) times `Diag(h) W1`, a chain of rectangular matrices
/// takes its cheapest order, and `A B x` is `A (B x)`; the numbers stay the
/// interpreter's.
#[test]
fn product_chains_take_their_cheapest_grouping() {
    let cases = [
        (
            "norm2(sin(W2*cos(W1*x)))^2",
            "W1: matrix(r, n); W2: matrix(n, r)",
            "x",
            2,
            vec![("r", 95), ("n", 100)],
            "symmetric product 95×100×95",
            // n·r²/2 + r²·n + n²·r/2 plus the gradient's four matrix–vector products.
            95.0 * 95.0 * 100.0 * 0.5 + 95.0 * 95.0 * 100.0 + 100.0 * 100.0 * 95.0 * 0.5 + 4.0 * 9500.0,
        ),
        (
            "norm2(A*B*C)^2",
            "A: matrix(n, m); B: matrix(m, n); C: matrix(n, m)",
            "A",
            0,
            vec![("m", 4), ("n", 60)],
            "product",
            // A·(B·C) at m = 4, n = 60: 4·60·4 + 60·4·4, where (A·B)·C costs 2·60·4·60.
            2.0 * 4.0 * 60.0 * 4.0,
        ),
        (
            // The product A·B is shared by the value, (A B) x, and the gradient,
            // 2 (A B)ᵀ (A B) x: both regroup into matrix–vector products, and
            // A·B is not computed at all.
            "norm2(A*B*x)^2",
            "A: matrix(n, n); B: matrix(n, n); x: vector(n)",
            "x",
            1,
            vec![("n", 60)],
            "product 60×60×1",
            4.0 * 60.0 * 60.0,
        ),
    ];
    for (expr, decl, wrt, order, dims, must, max_macs) in cases {
        let (_, c, _) = compiled_and_compared(expr, decl, wrt, order, &dims, 9);
        let summary = c.plan_summary();
        assert!(summary.contains(must), "{expr}:\n{summary}");
        let macs = product_macs(&summary);
        assert!(
            macs <= max_macs * 1.001,
            "{expr}: {macs} multiply-adds > {max_macs}\n{summary}"
        );
        if order == 2 {
            // Memory: every buffer of the plan together, a small multiple of the Hessian.
            let entries: usize = summary
                .lines()
                .find_map(|l| l.strip_prefix("buffers: ")?.strip_suffix(" entries")?.parse().ok())
                .expect("a buffer count");
            assert!(entries <= 4 * 100 * 100, "{expr}: {entries} buffer entries\n{summary}");
        }
    }
}

/// A gradient `Xᵀ·φ(X·w)` over a data matrix larger than the cache runs
/// block by block of rows (each block of X read once for both products, see
/// `plan/stream.rs`): the summary shows the products per block, and the
/// numbers, a second evaluation (the sums restart) and a non-finite entry in
/// a late row are the interpreter's. A sum over the rows that the row work
/// reads (`sum(exp(X w))²`) keeps the steps whole.
#[test]
fn data_matrices_stream_once_per_gradient() {
    let decl = "X: matrix(m, n); y: vector(m); w: vector(n)";
    let dims = [("m", 3000), ("n", 100)];
    for (expr, streamed) in [
        ("sum(log(1 + exp(-y .* (X*w))))", true),
        ("norm2(X*w - y)^2", true),
        ("sum(exp(X*w))^2", false),
    ] {
        let (p, mut c, dv) = compiled_and_compared(expr, decl, "w", 1, &dims, 11);
        let summary = c.plan_summary();
        let products: Vec<&str> = summary.lines().filter(|l| l.starts_with("product ")).collect();
        if streamed {
            // 3000 rows of 800 bytes in blocks of 256 KiB: 327 rows, 10 blocks.
            assert_eq!(products.len(), 20, "{expr}:\n{summary}");
            assert!(products.contains(&"product 327×100×1"), "{expr}:\n{summary}");
            assert!(products.contains(&"product 100×327×1"), "{expr}:\n{summary}");
        } else {
            assert_eq!(products.len(), 2, "{expr}:\n{summary}");
        }
        let mut rng = StdRng::seed_from_u64(12);
        let mut vals = sample_values(&p.graph, p.root, &dv, &mut rng);
        compare(&p, &mut c, &vals, &dv).unwrap_or_else(|e| panic!("{expr}, again: {e}"));
        let x = p.graph.vars.iter().position(|v| v.name == "X").unwrap();
        vals[x].as_mut().unwrap().data_mut()[2900 * 100 + 7] = f64::NAN;
        compare(&p, &mut c, &vals, &dv).unwrap_or_else(|e| panic!("{expr}, NaN: {e}"));
    }
}

/// The headline gradient's elementwise work shares loops: `sin(b)`, `Σ z²`
/// and `z ⊙ cos(b)` are one pass over b (z in a register, the sum kept by
/// the loop), and the factor −2 is applied by the last product, not by a
/// pass of its own. Batched, the loop after the second product also takes
/// `z ⊙ cos(b)` across the per-point sums.
#[test]
fn elementwise_work_shares_loops() {
    let decl = "W1: matrix(r, 100); W2: matrix(100, r); x: vector(100)";
    let (p, c, _) = compiled_and_compared("norm2(sin(W2*cos(W1*x)))^2", decl, "x", 1, &[("r", 95)], 5);
    let summary = c.plan_summary();
    let lines: Vec<&str> = summary.lines().filter(|l| !l.starts_with("buffers")).collect();
    assert_eq!(lines.len(), 7, "{summary}");
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("product ")).count(),
        4,
        "{summary}"
    );
    assert!(!summary.contains("sum over"), "{summary}");
    assert!(lines[3].ends_with("over [100], 2 values"), "{summary}");
    assert!(lines[6].starts_with("product "), "{summary}");
    let mut c = Compiled::new(p.clone(), p.clone().derive(&["x".to_string()], 1).unwrap());
    compare_batched(&p, &mut c, "x", 9, &[Some(95)]).unwrap();
    let summary = c.plan_summary();
    assert_eq!(
        summary.lines().filter(|l| l.starts_with("fused loop")).count(),
        3,
        "{summary}"
    );
}
