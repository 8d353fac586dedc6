//! The engine's own costs: deriving (parse + type + differentiate + simplify +
//! render) and evaluating. Run with `cargo bench -p matcalc`.

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

criterion_group!(benches, bench_derive, bench_eval);
criterion_main!(benches);
