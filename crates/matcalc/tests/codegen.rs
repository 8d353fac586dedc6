//! Code generation, run: for every case of `tests/cases/*.mc`, the generated
//! NumPy module (and JAX, when `import jax` works) is run with `python3` on
//! random values and its value and derivatives are compared with the
//! interpreter ([`matcalc::eval::interp::evaluate`]) to 1e-8 relative; the
//! generated Rust for a set of representative cases (every case with
//! `MATCALC_RUST_ALL=1`, which CI does not set: it adds minutes of
//! compilation) is built in one temporary crate (`target/codegen-test`,
//! reused between runs) with faer 0.24 and compared the same way. The PyTorch modules are always generated and
//! parsed; they are run and compared like NumPy's when the Python in
//! `MATCALC_TORCH_PYTHON` (default `python3`) imports torch. CI does not
//! install torch (PyPI's wheel is several GB with its CUDA libraries):
//! `python3 -m venv --system-site-packages /tmp/tv && /tmp/tv/bin/pip install
//! torch`, then `MATCALC_TORCH_PYTHON=/tmp/tv/bin/python cargo test --test
//! codegen torch`.
//!
//! All Python cases run in one interpreter (one driver script loading every
//! module), so the whole suite costs seconds after the first build.

use matcalc::codegen::{self, Target};
use matcalc::eval::check::{sample_dims, sample_values};
use matcalc::eval::interp::evaluate;
use matcalc::eval::Tensor;
use matcalc::{ErrorKind, Problem};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const TOLERANCE: f64 = 1e-8;

/// The key of the function's value among the results (no variable has this name).
const VALUE: &str = "<value>";

/// Cases whose generated Rust is built and run: the headline, a logistic
/// Hessian, log-determinants, softmax cross-entropy, and one of each
/// remaining node kind (inverse, determinant, literal, symmetric variable,
/// order-3 tensors, elementwise functions with kinks).
/// Cases whose generated `check_grad` is also run (NumPy and PyTorch).
const CHECK_GRAD_CASES: &[&str] = &[
    "headline.mc",
    "logistic_loss_hess.mc",
    "ex_logdet.mc",
    "softmax_xent.mc",
    "symmetric_quad.mc",
    "mixed_vec_mat.mc",
    "third_order.mc",
    "jac_softmax.mc",
];

const RUST_CASES: &[&str] = &[
    "headline.mc",
    "headline_hess_x.mc",
    "logistic_loss_hess.mc",
    "ex_logdet.mc",
    "logdet_gram.mc",
    "softmax_xent.mc",
    "jac_softmax.mc",
    "logsumexp_affine_hess.mc",
    "trace_inv.mc",
    "det_AX.mc",
    "literal_quad.mc",
    "symmetric_inv_quad.mc",
    "third_order.mc",
    "jac_relu.mc",
    "softplus_hess.mc",
    "norm1_affine.mc",
    "mixed_vec_mat.mc",
    "two_layer_tanh.mc",
    "diag_quad.mc",
    "fill_matrix.mc",
    "extra_rust_names.mc",
];

/// The header of a case file: what to differentiate.
#[derive(Debug, Clone)]
struct Case {
    name: String,
    expr: String,
    decls: String,
    wrt: Vec<String>,
    order: usize,
    dims: Vec<(String, usize)>,
}

fn parse_header(name: &str, text: &str) -> Result<Case, String> {
    let mut case = Case {
        name: name.to_string(),
        expr: String::new(),
        decls: String::new(),
        wrt: Vec::new(),
        order: 1,
        dims: Vec::new(),
    };
    let mut decls = Vec::new();
    for line in text.lines().take_while(|l| !l.starts_with("--- ")) {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let (key, value) = t.split_once(':').ok_or_else(|| format!("header line `{t}`"))?;
        let value = value.trim();
        match key.trim() {
            "expr" => case.expr = value.to_string(),
            "decl" => decls.push(value.to_string()),
            "wrt" => case
                .wrt
                .extend(value.split(',').map(|w| w.trim().to_string()).filter(|w| !w.is_empty())),
            "order" => case.order = value.parse().map_err(|_| format!("order `{value}`"))?,
            "dims" => {
                for pair in value.split_whitespace() {
                    let (n, v) = pair.split_once('=').ok_or_else(|| format!("dims `{pair}`"))?;
                    case.dims
                        .push((n.to_string(), v.parse().map_err(|_| format!("dims `{pair}`"))?));
                }
            }
            other => return Err(format!("unknown directive `{other}`")),
        }
    }
    case.decls = decls.join("; ");
    Ok(case)
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cases() -> Vec<Case> {
    let dir = workspace().join("tests/cases");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mc"))
        .collect();
    files.sort();
    let mut out: Vec<Case> = files
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(p).unwrap();
            parse_header(&name, &text).unwrap_or_else(|e| panic!("{name}: {e}"))
        })
        .collect();
    out.extend(EXTRA_CASES.iter().map(|(n, t)| parse_header(n, t).unwrap()));
    out
}

/// A case at one random point: the problem, the generated code's signature,
/// the argument values and the interpreter's results.
struct Instance {
    case: Case,
    problem: Problem,
    derivs: Vec<matcalc::Derivative>,
    /// Argument values in the generated signature's order, then dimension values.
    args: Vec<Tensor>,
    dim_args: Vec<usize>,
    /// `(VALUE, …)` then one entry per derivative key.
    expected: Vec<(String, Tensor)>,
}

fn instance(case: &Case, seed: u64) -> Result<Instance, String> {
    let base = Problem::new(&case.expr, &case.decls).map_err(|e| format!("does not parse: {e}"))?;
    let mut p = base.clone();
    let ds = p
        .derive(&case.wrt, case.order)
        .map_err(|e| format!("derive failed: {e}"))?;
    instance_of(case.clone(), p, ds, seed)
}

/// An instance of any problem and roots: the roots need not be derivatives
/// (the synthetic case uses arbitrary nodes, keyed by made-up names).
fn instance_of(case: Case, p: Problem, ds: Vec<matcalc::Derivative>, seed: u64) -> Result<Instance, String> {
    let sig = codegen::signature(&p, &ds).map_err(|e| e.to_string())?;
    let g = &p.graph;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut roots = vec![p.root];
    roots.extend(ds.iter().map(|d| d.id));
    let mut attempt = 0;
    let (dims, vals, out) = loop {
        let dims = sample_dims(g, &case.dims, &mut rng);
        let vals = sample_values(g, p.root, &dims, &mut rng);
        match evaluate(g, &roots, p.root, &vals, &dims) {
            Ok(e) => break (dims, vals, e.values),
            Err(e) if e.kind == ErrorKind::Numeric && attempt < 20 => attempt += 1,
            Err(e) => return Err(format!("the interpreter fails: {e}")),
        }
    };
    let args = sig
        .arguments
        .iter()
        .map(|n| vals[g.var_index(n).expect("a variable")].clone().expect("a value"))
        .collect();
    let dim_args = sig
        .dimensions
        .iter()
        .map(|n| dims[g.dims.iter().position(|d| d.name == *n).expect("a dimension")].expect("a size"))
        .collect();
    let mut expected = vec![(VALUE.to_string(), out[0].clone())];
    for (d, t) in ds.iter().zip(&out[1..]) {
        expected.push((codegen::derivative_key(d), t.clone()));
    }
    Ok(Instance {
        case,
        problem: p,
        derivs: ds,
        args,
        dim_args,
        expected,
    })
}

/// Cases beyond the suite: names that clash with Python and Rust keywords,
/// library names and generated names, and a dimension that no variable fixes
/// (an extra argument).
const EXTRA_CASES: &[(&str, &str)] = &[
    (
        "extra_names.mc",
        "expr: lambda*sum(exp(np)) + t1'*value + len*sum(vector(1, k))\n\
         decl: np: vector(n); value: vector(n); t1: vector(n); lambda: scalar; len: scalar; k: dim in 1..4\n\
         wrt: np, value, lambda\n",
    ),
    (
        "extra_rust_names.mc",
        "expr: type*dot'*matmul + sum(softmax(x)) + sum(vector(2, k))\n\
         decl: dot: vector(n); matmul: vector(n); type: vector(m)\n\
         wrt: dot, type\n",
    ),
];

/// A problem whose "derivatives" are hand-built nodes of every kind the IR
/// has (every function, powers, inverse, determinants, softmax and
/// log-sum-exp of matrices, order-3 permutations and partial sums, batched
/// and broadcast products, identity, literal, fill, constant), compared with
/// the interpreter like derivatives.
fn synthetic() -> (Case, Problem, Vec<matcalc::Derivative>) {
    use matcalc::ir::{Dim, Func, Labels};
    let case = Case {
        name: "synthetic.mc".into(),
        expr: "sum(asin(x)) + sum(log(y)) + logdet(A) + sum(z)".into(),
        decls: "x: vector(n); y: vector(n); A: matrix(n, n); z: vector(m)".into(),
        wrt: Vec::new(),
        order: 1,
        dims: Vec::new(),
    };
    let mut p = Problem::new(&case.expr, &case.decls).unwrap();
    let g = &mut p.graph;
    let l = Labels::from_slice;
    let x = g.var("x", Vec::new(), false);
    let y = g.var("y", Vec::new(), false);
    let a = g.var("A", Vec::new(), false);
    let z = g.var("z", Vec::new(), false);
    let n = g.shape(x)[0];
    let m = g.shape(z)[0];
    let mut nodes = Vec::new();
    for f in Func::ALL {
        nodes.push(g.map(f, if f == Func::Log { y } else { x }));
    }
    for (b, e) in [(y, 0.5), (y, -1.0), (y, 2.0), (y, -1.5), (x, 3.0)] {
        nodes.push(g.pow(b, e));
    }
    nodes.push(g.inv(a));
    nodes.push(g.det(a));
    nodes.push(g.logdet(a));
    nodes.push(g.logsumexp(a));
    nodes.push(g.softmax(a));
    nodes.push(g.softmax(x));
    let xy = g.mul(x, y, l(&[0]), l(&[1]), l(&[0, 1]));
    let t = g.mul(xy, z, l(&[0, 1]), l(&[2]), l(&[0, 1, 2]));
    let st = g.softmax(t);
    nodes.push(g.reindex(st, l(&[0, 1, 2]), l(&[2, 0, 1])));
    let sin_t = g.map(Func::Sin, t);
    nodes.push(g.reindex(sin_t, l(&[0, 1, 2]), l(&[2, 0])));
    nodes.push(g.reindex(st, l(&[0, 1, 2]), l(&[1])));
    nodes.push(g.mul(a, a, l(&[0, 1]), l(&[1, 0]), l(&[0])));
    nodes.push(g.mul(a, x, l(&[0, 1]), l(&[1]), l(&[1])));
    nodes.push(g.mul(st, a, l(&[0, 1, 2]), l(&[1, 0]), l(&[2])));
    let eye = g.delta(n);
    nodes.push(g.mul(eye, z, l(&[0, 1]), l(&[2]), l(&[0, 1, 2])));
    nodes.push(eye);
    nodes.push(g.literal(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], vec![Dim::Fixed(2), Dim::Fixed(3)]));
    nodes.push(g.fill(2.5, vec![n, m]));
    let fill = g.fill(1.5, vec![n]);
    nodes.push(g.add(&[x, fill]));
    nodes.push(g.constant(3.25));
    let y2 = g.scale(2.0, y);
    nodes.push(g.sub(x, y2));
    nodes.push(g.mul(x, a, l(&[0]), l(&[0, 1]), l(&[0, 1])));
    nodes.push(g.mul(a, x, l(&[0, 1]), l(&[1]), l(&[0, 1])));
    nodes.push(g.mul(a, z, l(&[0, 1]), l(&[2]), l(&[0, 2, 1])));
    let d = g.det(a);
    nodes.push(g.mul(d, a, Labels::EMPTY, l(&[0, 1]), l(&[1, 0])));
    nodes.push(g.mul(d, x, Labels::EMPTY, l(&[0]), Labels::EMPTY));
    let ds = nodes
        .into_iter()
        .enumerate()
        .map(|(k, id)| matcalc::Derivative {
            wrt: vec![format!("k{k:02}")],
            id,
        })
        .collect();
    (case, p, ds)
}

fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let norm = |t: &Tensor| t.data().iter().map(|v| v * v).sum::<f64>().sqrt();
    let d: f64 = a
        .data()
        .iter()
        .zip(b.data())
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt();
    d / norm(a).max(norm(b)).max(1e-12)
}

/// Compare results (shape and data) with the interpreter's; a failure message per mismatch.
fn compare(inst: &Instance, got: &[Result1]) -> Vec<String> {
    let mut failures = Vec::new();
    for (key, want) in &inst.expected {
        let Some((_, shape, data)) = got.iter().find(|(k, ..)| k == key) else {
            failures.push(format!("`{key}` missing from the result"));
            continue;
        };
        if shape.as_slice() != want.shape() {
            failures.push(format!(
                "`{key}` has shape {shape:?}, the interpreter's {:?}",
                want.shape()
            ));
            continue;
        }
        let Some(data) = data.iter().copied().collect::<Option<Vec<f64>>>() else {
            failures.push(format!("`{key}` has entries that are not finite"));
            continue;
        };
        let t = Tensor::from_vec(shape.clone(), data).expect("shape and data agree");
        let err = rel_err(want, &t);
        if err.is_nan() || err > TOLERANCE {
            failures.push(format!("`{key}` differs: relative error {err:.2e}"));
        }
    }
    failures
}

fn tensor_json(t: &Tensor) -> Value {
    json!({"shape": t.shape(), "data": t.data()})
}

/// The Python driver: loads each module, calls `f_and_grad` (and
/// `check_grad` when asked), writes the results as JSON.
const DRIVER: &str = r#"
import importlib.util, json, sys, traceback
import numpy as np

def arr(a):
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    data = [float(v) if np.isfinite(v) else None for v in a.ravel().tolist()]
    return {"shape": list(a.shape), "data": data}

items = json.load(open(sys.argv[1]))
out = {}
for item in items:
    res = {}
    try:
        spec = importlib.util.spec_from_file_location("gen_" + str(len(out)), item["module"])
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        args = [np.array(a["data"], dtype=np.float64).reshape(a["shape"]) for a in item["args"]]
        args += item["dims"]
        fn = mod.f_and_grad
        if item.get("jit"):
            import jax
            fn = jax.jit(fn)
        value, derivs = fn(*args)
        res["results"] = {"<value>": arr(value), **{k: arr(v) for k, v in derivs.items()}}
        if item.get("check"):
            res["check"] = mod.check_grad(*args)
    except Exception:
        res["error"] = traceback.format_exc()
    out[item["name"]] = res
json.dump(out, open(sys.argv[2], "w"))
"#;

fn python_has(python: &str, module: &str) -> Result<(), String> {
    match Command::new(python).args(["-c", &format!("import {module}")]).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr)
            .trim()
            .lines()
            .last()
            .unwrap_or("")
            .to_string()),
        Err(e) => Err(format!("cannot run python3: {e}")),
    }
}

/// A fresh scratch directory under the target directory.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One result of generated code: key, shape and entries (`None` where not finite).
type Result1 = (String, Vec<usize>, Vec<Option<f64>>);
type Results = Vec<Result1>;

fn parse_results(v: &Value) -> Results {
    v.as_object()
        .expect("an object")
        .iter()
        .map(|(k, r)| {
            let shape = r["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let data = r["data"].as_array().unwrap().iter().map(|x| x.as_f64()).collect();
            (k.clone(), shape, data)
        })
        .collect()
}

/// Generate every case for a Python target, run them all in one interpreter,
/// and compare. `check` names cases whose `check_grad` is also run, `jit`
/// cases also run through `jax.jit`.
fn run_python(python: &str, target: Target, check: &[&str], jit: &[&str]) {
    let start = Instant::now();
    let dir = scratch(&format!("codegen-{}", target.name()));
    let mut failures: Vec<String> = Vec::new();
    let mut instances = Vec::new();
    let mut items = Vec::new();
    let (syn_case, syn_p, syn_ds) = synthetic();
    let all = cases()
        .into_iter()
        .map(|c| (c.name.clone(), instance(&c, 7)))
        .chain(std::iter::once((
            syn_case.name.clone(),
            instance_of(syn_case, syn_p, syn_ds, 7),
        )));
    for (name, inst) in all {
        let inst = match inst {
            Ok(i) => i,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let case = inst.case.clone();
        let code = match codegen::generate(&inst.problem, &inst.derivs, target) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("{}: generate failed: {e}", case.name));
                continue;
            }
        };
        let module = dir.join(format!("{}.py", case.name.trim_end_matches(".mc")));
        std::fs::write(&module, code).unwrap();
        items.push(json!({
            "name": case.name,
            "module": module,
            "args": inst.args.iter().map(tensor_json).collect::<Vec<_>>(),
            "dims": inst.dim_args,
            "check": check.contains(&case.name.as_str()),
        }));
        if jit.contains(&case.name.as_str()) {
            items.push(json!({
                "name": format!("{} (jit)", case.name),
                "module": module,
                "args": inst.args.iter().map(tensor_json).collect::<Vec<_>>(),
                "dims": inst.dim_args,
                "jit": true,
            }));
        }
        instances.push(inst);
    }
    let input = dir.join("input.json");
    let output = dir.join("output.json");
    let driver = dir.join("driver.py");
    std::fs::write(&input, serde_json::to_string(&items).unwrap()).unwrap();
    std::fs::write(&driver, DRIVER).unwrap();
    let run = Command::new(python)
        .env("JAX_PLATFORMS", "cpu")
        .arg(&driver)
        .arg(&input)
        .arg(&output)
        .output()
        .expect("python3 runs");
    assert!(
        run.status.success(),
        "the driver failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out: Value = serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    let mut checked = 0;
    let runs = instances.iter().flat_map(|inst| {
        let name = inst.case.name.clone();
        let jitted = jit.contains(&name.as_str()).then(|| (format!("{name} (jit)"), inst));
        std::iter::once((name, inst)).chain(jitted)
    });
    for (name, inst) in runs {
        let res = &out[name.as_str()];
        if let Some(e) = res.get("error") {
            failures.push(format!(
                "{name}: the generated code fails:\n{}",
                e.as_str().unwrap_or("")
            ));
            continue;
        }
        for f in compare(inst, &parse_results(&res["results"])) {
            failures.push(format!("{name}: {f}"));
        }
        if let Some(c) = res.get("check") {
            checked += 1;
            for (key, err) in c.as_object().unwrap() {
                let err = err.as_f64().unwrap_or(f64::NAN);
                if err.is_nan() || err > 1e-5 {
                    failures.push(format!("{name}: check_grad `{key}`: relative error {err:.2e}"));
                }
            }
        }
    }
    eprintln!(
        "{}: {} cases generated and compared ({} with check_grad, {} also jitted) in {:.1?}",
        target.name(),
        instances.len(),
        checked,
        jit.len(),
        start.elapsed()
    );
    if !failures.is_empty() {
        panic!(
            "{} failure(s) for {}:\n{}\n(generated modules in {})",
            failures.len(),
            target.name(),
            failures.join("\n"),
            dir.display()
        );
    }
}

#[test]
fn numpy_matches_interpreter() {
    if let Err(e) = python_has("python3", "numpy") {
        panic!("numpy is needed (scripts/test.sh installs it): {e}");
    }
    run_python("python3", Target::Numpy, CHECK_GRAD_CASES, &[]);
}

#[test]
fn jax_matches_interpreter() {
    if let Err(e) = python_has("python3", "jax") {
        eprintln!("SKIPPED jax_matches_interpreter: `import jax` fails ({e}); `python3 -m pip install \"jax[cpu]\"`");
        return;
    }
    run_python(
        "python3",
        Target::Jax,
        &["headline.mc", "logistic_loss_hess.mc"],
        &[
            "headline.mc",
            "headline_hess_x.mc",
            "logistic_loss_hess.mc",
            "softmax_xent.mc",
            "synthetic.mc",
        ],
    );
}

/// PyTorch: generated for every case and parsed (run by `torch_matches_interpreter` when torch imports).
#[test]
fn torch_generates() {
    let dir = scratch("codegen-torch");
    let mut n = 0;
    let mut files = Vec::new();
    let mut problems: Vec<(Case, Problem, Vec<matcalc::Derivative>)> = cases()
        .into_iter()
        .map(|case| {
            let mut p = Problem::new(&case.expr, &case.decls).unwrap();
            let ds = p.derive(&case.wrt, case.order).unwrap();
            (case, p, ds)
        })
        .collect();
    problems.push(synthetic());
    for (case, p, ds) in problems {
        let code = codegen::generate(&p, &ds, Target::Torch).unwrap();
        assert!(
            code.contains("def f_and_grad(") && code.contains("torch."),
            "{}",
            case.name
        );
        let path = dir.join(format!("{}.py", case.name.trim_end_matches(".mc")));
        std::fs::write(&path, code).unwrap();
        files.push(path);
        n += 1;
    }
    if python_has("python3", "ast").is_ok() {
        let script = "import ast, sys\nfor f in sys.argv[1:]:\n    ast.parse(open(f).read(), f)\n";
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(&files)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    eprintln!("torch: {n} modules generated and parsed");
}

/// PyTorch, run and compared on every case when torch imports (see the module docs).
#[test]
fn torch_matches_interpreter() {
    let python = std::env::var("MATCALC_TORCH_PYTHON").unwrap_or_else(|_| "python3".to_string());
    if let Err(e) = python_has(&python, "torch") {
        eprintln!("SKIPPED torch_matches_interpreter: `{python} -c 'import torch'` fails ({e}); see the module docs");
        return;
    }
    run_python(&python, Target::Torch, CHECK_GRAD_CASES, &[]);
}

/// The Rust target: representative cases built in one crate and run.
#[test]
fn rust_matches_interpreter() {
    let start = Instant::now();
    let root = workspace().join("target/codegen-test");
    let krate = root.join("crate");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    let all = cases();
    let mut instances = Vec::new();
    let mut main = String::from("#![allow(non_snake_case)]\n\n");
    let mut body = String::new();
    let every = std::env::var("MATCALC_RUST_ALL").is_ok_and(|v| v != "0");
    let names: Vec<&str> = if every {
        all.iter().map(|c| c.name.as_str()).collect()
    } else {
        RUST_CASES.to_vec()
    };
    let mut todo: Vec<Instance> = names
        .iter()
        .filter_map(|name| {
            let case = all
                .iter()
                .find(|c| c.name == *name)
                .unwrap_or_else(|| panic!("no case {name}"));
            match instance(case, 7) {
                Ok(i) => Some(i),
                // A case whose values cannot be sampled (the NumPy test reports those).
                Err(e) if every => {
                    eprintln!("{name}: skipped: {e}");
                    None
                }
                Err(e) => panic!("{name}: {e}"),
            }
        })
        .collect();
    let (syn_case, syn_p, syn_ds) = synthetic();
    todo.push(instance_of(syn_case, syn_p, syn_ds, 7).unwrap());
    for inst in todo {
        let name = inst.case.name.clone();
        let name = name.as_str();
        let code = codegen::generate(&inst.problem, &inst.derivs, Target::Rust).unwrap();
        let module = format!("gen_{}", name.trim_end_matches(".mc"));
        write_if_changed(&krate.join(format!("src/{module}.rs")), &code);
        let _ = writeln!(main, "mod {module};");
        let _ = writeln!(body, "    {{\n        use {module}::Tensor;");
        let mut args = Vec::new();
        for (k, t) in inst.args.iter().enumerate() {
            let _ = writeln!(
                body,
                "        let a{k} = Tensor::new(vec!{:?}, vec!{:?});",
                t.shape(),
                t.data()
            );
            args.push(format!("&a{k}"));
        }
        args.extend(inst.dim_args.iter().map(|d| d.to_string()));
        let _ = writeln!(body, "        let (v, ds) = {module}::f_and_grad({});", args.join(", "));
        let _ = writeln!(body, "        show({name:?}, \"<value>\", &v.shape, &v.data);");
        let _ = writeln!(
            body,
            "        for (k, d) in &ds {{ show({name:?}, k, &d.shape, &d.data); }}"
        );
        // The synthetic roots are not derivatives: no finite-difference check.
        if !name.starts_with("synthetic") {
            let mut check_args = args.clone();
            check_args.push("1".into());
            let _ = writeln!(
                body,
                "        for (k, e) in {module}::check_grad({}) {{ println!(\"check\\t{name}\\t{{k}}\\t{{e:?}}\"); }}",
                check_args.join(", ")
            );
        }
        let _ = writeln!(body, "    }}");
        instances.push(inst);
    }
    let _ = write!(
        main,
        "\nfn show(case: &str, key: &str, shape: &[usize], data: &[f64]) {{\n    \
         let d: Vec<String> = data.iter().map(|v| format!(\"{{v:?}}\")).collect();\n    \
         println!(\"result\\t{{case}}\\t{{key}}\\t{{shape:?}}\\t{{}}\", d.join(\",\"));\n}}\n\n\
         fn main() {{\n{body}}}\n"
    );
    write_if_changed(&krate.join("src/main.rs"), &main);
    write_if_changed(
        &krate.join("Cargo.toml"),
        "[package]\nname = \"codegen_check\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
         [dependencies]\nfaer = { version = \"=0.24\", default-features = false, features = [\"std\", \"linalg\"] }\n\n\
         [workspace]\n\n\
         # Dependencies keep the release profile (faer is built once and reused);\n\
         # the generated code itself needs no heavy optimisation to be checked.\n\
         [profile.release.package.codegen_check]\nopt-level = 1\n",
    );
    // The workspace's lock file pins the same faer and dependencies the engine builds with.
    if !krate.join("Cargo.lock").exists() {
        std::fs::copy(workspace().join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = Command::new(&cargo)
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(krate.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(root.join("target"))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    assert!(
        build.status.success(),
        "the generated Rust does not build:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let built = start.elapsed();
    let run = Command::new(root.join("target/release/codegen_check"))
        .output()
        .expect("the check runs");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let stdout = String::from_utf8_lossy(&run.stdout);
    let mut failures = Vec::new();
    for inst in &instances {
        let name = &inst.case.name;
        let mut got: Results = Vec::new();
        for line in stdout.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            match f.as_slice() {
                ["result", case, key, shape, data] if case == name => {
                    let shape: Vec<usize> = serde_json::from_str(shape).unwrap();
                    let data: Vec<Option<f64>> = if data.is_empty() {
                        Vec::new()
                    } else {
                        data.split(',')
                            .map(|v| v.parse::<f64>().ok().filter(|x| x.is_finite()))
                            .collect()
                    };
                    got.push((key.to_string(), shape, data));
                }
                ["check", case, key, err] if case == name => {
                    let err: f64 = err.parse().unwrap_or(f64::NAN);
                    if err.is_nan() || err > 1e-5 {
                        failures.push(format!("{name}: check_grad `{key}`: relative error {err:.2e}"));
                    }
                }
                _ => {}
            }
        }
        for f in compare(inst, &got) {
            failures.push(format!("{name}: {f}"));
        }
    }
    eprintln!(
        "rust: {} cases built ({:.1?}) and compared in {:.1?}",
        instances.len(),
        built,
        start.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Write a file only when its content changes, so cargo's fingerprints hold.
fn write_if_changed(path: &Path, text: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).unwrap();
    }
}

#[test]
fn signature_and_targets() {
    let mut p = Problem::new(
        "norm2(sin(W2*cos(W1*x)))^2",
        "W1: matrix(r, 100); W2: matrix(100, r); r: dim in 1..95",
    )
    .unwrap();
    let ds = p.derive(&["x".into(), "W1".into()], 1).unwrap();
    let sig = codegen::signature(&p, &ds).unwrap();
    assert_eq!(sig.arguments, ["W2", "W1", "x"]);
    assert!(sig.dimensions.is_empty());
    for t in Target::ALL {
        assert_eq!(Target::from_name(t.name()), Some(t));
        let code = codegen::generate(&p, &ds, t).unwrap();
        assert!(
            code.contains("f_and_grad(W2, W1, x") || code.contains("f_and_grad(W2: &Tensor"),
            "{t}"
        );
        assert!(code.contains("check_grad"), "{t}");
    }
    let np = codegen::generate(&p, &ds, Target::Numpy).unwrap();
    assert!(np.contains("W1 @ x"), "{np}");
    assert!(np.contains("W2.T @ "), "{np}");
    assert!(np.contains("assert 1 <= r <= 95"), "{np}");
}
