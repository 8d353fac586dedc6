use matcalc::render::{self, print::Style, Form};
use matcalc::Problem;

fn show(expr: &str, decls: &str, wrt: &str, order: usize) -> String {
    let mut p = Problem::new(expr, decls).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let d = p.derive(&[wrt.to_string()], order).unwrap();
    let r = render::recover(&p.graph, &[d[0].id], Form::Nested, Some(p.root), &p.reserved_names());
    let (_, res) = r.lines(&Style::EXPR);
    res[0].clone()
}

#[test]
fn smoke() {
    let cases = [
        (
            "norm2(sin(W2*cos(W1*x)))^2",
            "W1: matrix(r, 100); W2: matrix(100, r)",
            "x",
            1,
        ),
        (
            "norm2(sin(W2*cos(W1*x)))^2",
            "W1: matrix(r, 100); W2: matrix(100, r)",
            "W1",
            1,
        ),
        ("x'*A*x", "", "x", 1),
        ("x'*A*x", "", "x", 2),
        ("a'*X*b", "", "X", 1),
        ("norm2(A*x - b)^2", "b: vector(m)", "x", 1),
        ("norm2(A*x - b)^2", "b: vector(m)", "x", 2),
        ("tr(A*X*B)", "", "X", 1),
        ("log(det(X))", "", "X", 1),
        ("sum(log(1 + exp(-y.*(X*w))))", "", "w", 1),
        ("sum(log(1 + exp(-y.*(X*w))))", "", "w", 2),
        ("sin(A*x)", "", "x", 1),
        ("logsumexp(A*x)", "", "x", 1),
        ("tr(inv(X)*A)", "", "X", 1),
    ];
    for (e, d, w, o) in cases {
        eprintln!("{e} d/d{w} (order {o}) = {}", show(e, d, w, o));
    }
}
