//! `Compiled::eval` allocates nothing after the first call with given shapes
//! (issue 7): counted with a global allocator that counts every allocation.

use matcalc::eval::Tensor;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn tensor(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| ((i as u64 * 2654435761 + seed * 97) % 1000) as f64 / 1000.0 - 0.5)
        .collect();
    Tensor::from_vec(shape.to_vec(), data).unwrap()
}

/// Allocations made by `f`.
fn count(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    f();
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

fn steady_state(expr: &str, decls: &str, wrt: &[&str], order: usize, values: &[(&str, Tensor)], batched: Option<&str>) {
    let mut c = matcalc::compile(expr, decls, wrt, order).unwrap();
    let named: Vec<(&str, &Tensor)> = values.iter().map(|(n, t)| (*n, t)).collect();
    let run = |c: &mut matcalc::Compiled| -> f64 {
        let e = match batched {
            Some(b) => c.eval_batch(&named, b).unwrap(),
            None => c.eval(&named).unwrap(),
        };
        e.value().data[0] + e.derivative(0).data.iter().sum::<f64>()
    };
    let first = run(&mut c);
    let mut again = 0.0;
    let n = count(|| {
        for _ in 0..5 {
            again = run(&mut c);
        }
    });
    assert_eq!(n, 0, "{expr}: {n} allocations in 5 steady-state evaluations");
    assert_eq!(first, again, "{expr}: the same values give the same results");
}

#[test]
fn no_allocation_after_the_first_call() {
    // The counter works: a fresh evaluator allocates on its first call.
    let mut c = matcalc::compile("x'*x", "", &["x"], 1).unwrap();
    let x = tensor(&[3], 0);
    assert!(count(|| assert!(c.eval(&[("x", &x)]).unwrap().value().data[0] > 0.0)) > 0);
    let w1 = tensor(&[20, 30], 1);
    let w2 = tensor(&[30, 20], 2);
    let x = tensor(&[30], 3);
    let headline = "norm2(sin(W2*cos(W1*x)))^2";
    let decls = "W1: matrix(r, 30); W2: matrix(30, r)";
    let vals = [("W1", w1.clone()), ("W2", w2.clone()), ("x", x)];
    steady_state(headline, decls, &["x"], 1, &vals, None);
    steady_state(headline, decls, &["x"], 2, &vals, None);
    steady_state(headline, decls, &["W1", "W2"], 1, &vals, None);
    let xs = tensor(&[64, 30], 4);
    steady_state(
        headline,
        decls,
        &["x"],
        1,
        &[("W1", w1), ("W2", w2), ("xs", xs.clone()), ("x", xs)],
        Some("x"),
    );
    // inverse and log-determinant (LU workspaces), a transpose, a trace
    let mut a = tensor(&[12, 12], 5);
    for i in 0..12 {
        a.data_mut()[i * 12 + i] += 4.0;
    }
    let b = tensor(&[12, 12], 6);
    steady_state(
        "logdet(X) + tr(A*inv(X))",
        "X: matrix(n, n)",
        &["X"],
        1,
        &[("X", a), ("A", b)],
        None,
    );
    // logistic regression, softmax
    let xm = tensor(&[50, 8], 7);
    let y = tensor(&[50], 8);
    let w = tensor(&[8], 9);
    steady_state(
        "sum(log(1 + exp(-y .* (X*w)))) + logsumexp(X*w)",
        "X: matrix(m, n)",
        &["w"],
        2,
        &[("X", xm), ("y", y), ("w", w)],
        None,
    );
    // A data matrix large enough to be read block by block of rows (3 MB).
    let xm = tensor(&[4000, 100], 10);
    let y = tensor(&[4000], 11);
    let w = tensor(&[100], 12);
    steady_state(
        "sum(log(1 + exp(-y .* (X*w))))",
        "X: matrix(m, n)",
        &["w"],
        1,
        &[("X", xm), ("y", y), ("w", w)],
        None,
    );
}
