//! The engine's own costs: deriving (parse + type + differentiate + simplify +
//! render), compiling a plan, and evaluating (interpreter and compiled plan).
//! Run with `cargo bench -p matcalc`. The comparison with NumPy, JAX and
//! PyTorch is `bench/compare.py`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use matcalc::eval::{check, interp};
use matcalc::render::{self, print::Style, Form};
use matcalc::Problem;
use rand::SeedableRng;

/// `norm2(tanh(Wk*tanh(…tanh(W1*x))))^2`
fn deep_net(layers: usize) -> String {
    let mut e = "x".to_string();
    for k in 1..=layers {
        e = format!("tanh(W{k}*{e})");
    }
    format!("norm2({e})^2")
}

fn derive_all(expr: &str, decls: &str, form: Form) -> usize {
    let mut p = Problem::new(expr, decls).unwrap();
    let d = p.derive(&["x".to_string()], 1).unwrap();
    let r = render::recover(&p.graph, &[d[0].id], form, Some(p.root), &p.reserved_names());
    let (defs, res) = r.lines(&Style::TEXT);
    defs.iter().map(String::len).sum::<usize>() + res[0].len()
}

fn bench_derive(c: &mut Criterion) {
    let mut group = c.benchmark_group("derive_deep_net_cascade");
    for layers in [50, 100, 200] {
        let e = deep_net(layers);
        group.bench_with_input(BenchmarkId::from_parameter(layers), &e, |b, e| {
            b.iter(|| derive_all(e, "", Form::Cascade))
        });
    }
    group.finish();
    let headline = "norm2(sin(W2*cos(W1*x)))^2";
    let decls = "W1: matrix(r, 100); W2: matrix(100, r); r: dim in 1..95";
    c.bench_function("derive_headline_nested", |b| {
        b.iter(|| derive_all(headline, decls, Form::Nested))
    });
}

fn bench_eval(c: &mut Criterion) {
    let headline = "norm2(sin(W2*cos(W1*x)))^2";
    let decls = "W1: matrix(r, 100); W2: matrix(100, r); r: dim in 1..95";
    let mut p = Problem::new(headline, decls).unwrap();
    let d = p.derive(&["x".to_string()], 1).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let dims = check::sample_dims(&p.graph, &[("r".to_string(), 95)], &mut rng);
    let vals = check::sample_values(&p.graph, p.root, &dims, &mut rng);
    c.bench_function("eval_headline_value_and_gradient_r95", |b| {
        b.iter(|| interp::evaluate(&p.graph, &[p.root, d[0].id], p.root, &vals, &dims).unwrap())
    });
}

fn headline_values(r: usize) -> Vec<(String, matcalc::eval::Tensor)> {
    let p = Problem::new(
        "norm2(sin(W2*cos(W1*x)))^2",
        "W1: matrix(r, 100); W2: matrix(100, r); x: vector(100)",
    )
    .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let dims = check::sample_dims(&p.graph, &[("r".to_string(), r)], &mut rng);
    let vals = check::sample_values(&p.graph, p.root, &dims, &mut rng);
    p.graph
        .vars
        .iter()
        .zip(vals)
        .map(|(v, t)| (v.name.clone(), t.unwrap()))
        .collect()
}

fn bench_plan(c: &mut Criterion) {
    let headline = "norm2(sin(W2*cos(W1*x)))^2";
    let decls = "W1: matrix(r, 100); W2: matrix(100, r); x: vector(100)";
    let vals = headline_values(95);
    let named: Vec<(&str, &matcalc::eval::Tensor)> = vals.iter().map(|(n, t)| (n.as_str(), t)).collect();
    // Compile: parse, type, differentiate, lower at the values' sizes (first evaluation).
    for order in [1, 2] {
        c.bench_function(&format!("plan_compile_headline_order{order}_r95"), |b| {
            b.iter(|| {
                let mut f = matcalc::compile(headline, decls, &["x"], order).unwrap();
                f.eval(&named).unwrap().value().data[0]
            })
        });
    }
    for (name, order) in [("gradient", 1), ("hessian", 2)] {
        let mut f = matcalc::compile(headline, decls, &["x"], order).unwrap();
        c.bench_function(&format!("plan_eval_headline_{name}_r95"), |b| {
            b.iter(|| f.eval(&named).unwrap().derivative(0).data[0])
        });
    }
    let mut f = matcalc::compile(headline, decls, &["x"], 1).unwrap();
    let xs = matcalc::eval::Tensor::from_vec(
        vec![256, 100],
        (0..25_600).map(|i| ((i * 37 % 101) as f64) / 50.0 - 1.0).collect(),
    )
    .unwrap();
    let batched: Vec<(&str, &matcalc::eval::Tensor)> = named
        .iter()
        .map(|&(n, t)| if n == "x" { (n, &xs) } else { (n, t) })
        .collect();
    c.bench_function("plan_eval_headline_gradient_batch256_r95", |b| {
        b.iter(|| f.eval_batch(&batched, "x").unwrap().derivative(0).data[0])
    });
}

criterion_group!(benches, bench_derive, bench_eval, bench_plan);
criterion_main!(benches);
