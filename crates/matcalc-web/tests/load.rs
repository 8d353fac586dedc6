//! Load test, bounded and on loopback only: 10 000 mixed requests (valid
//! derives, evals, parses and checks; bad syntax, shape errors, bodies over the
//! limit, deep nesting, broken JSON) from a few concurrent clients against a
//! server in this process. Every answer must be the expected status (never a
//! 5xx), the server must keep answering, and its memory must stay flat.

mod common;

use common::{request, Server, HEADLINE};
use matcalc_web::Config;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const REQUESTS: usize = 10_000;
const CLIENTS: usize = 3;
/// Requests before the first memory reading (allocator pools, lazy statics).
const WARM_UP: usize = 1_000;

/// One request of the mix: method, path, body, the status it must get.
fn case(i: usize) -> (&'static str, &'static str, String, u16) {
    let k = i % 20;
    let n = i % 7 + 1; // vary sizes a little so not every request is identical
    let j = |v: serde_json::Value| v.to_string();
    match k {
        0 => (
            "POST",
            "/api/derive",
            j(serde_json::json!({"expr": format!("sin(x +* {n})"), "wrt": ["x"]})),
            400,
        ),
        1 => (
            "POST",
            "/api/derive",
            j(serde_json::json!({"expr": "norm2(A*x - b", "wrt": ["x"]})),
            400,
        ),
        2 => (
            "POST",
            "/api/derive",
            j(serde_json::json!({"expr": "sinn(W*x)", "wrt": ["x"]})),
            400,
        ),
        3 => (
            "POST",
            "/api/derive",
            j(
                serde_json::json!({"expr": "A*x + b", "decls": format!("A: matrix(3, {n}); b: vector(4)"), "wrt": ["x"]}),
            ),
            400,
        ),
        4 => (
            "POST",
            "/api/eval",
            j(serde_json::json!({"expr": "A*x", "values": {"A": [[1, 2], [3, 4]], "x": [1, 2, 3]}})),
            400,
        ),
        5 => (
            "POST",
            "/api/derive",
            format!("{{\"expr\": \"{}x\", \"wrt\": [\"x\"]}}", "x+".repeat(35_000 + n)),
            413,
        ),
        6 => {
            let deep = format!("{}x{}", "(".repeat(2_000 + n), ")".repeat(2_000 + n));
            (
                "POST",
                "/api/derive",
                j(serde_json::json!({"expr": deep, "wrt": ["x"]})),
                400,
            )
        }
        7 => ("POST", "/api/derive", "{\"expr\": [".to_string(), 400),
        8 => (
            "POST",
            "/api/derive",
            j(serde_json::json!({"expr": "x'*A*x", "wrt": ["y"]})),
            400,
        ),
        9 => (
            "POST",
            "/api/derive",
            j(serde_json::json!({"expr": "x'*A*x", "wrt": ["x"], "code": false})),
            200,
        ),
        10 => (
            "POST",
            "/api/derive",
            j(serde_json::json!({"expr": "sum(exp(A*x)) + logdet(X)", "wrt": ["x", "X"], "code": false})),
            200,
        ),
        11 => (
            "POST",
            "/api/derive",
            j(serde_json::json!({"expr": "norm2(A*x - b)^2", "wrt": ["x"], "order": 2})),
            200,
        ),
        12 => ("POST", "/api/derive", HEADLINE.to_string(), 200),
        13 | 14 => (
            "POST",
            "/api/eval",
            j(
                serde_json::json!({"expr": "norm2(A*x - b)^2", "values": {"A": [[1, 2], [3, n], [5, 6]], "b": [1, 0, 1], "x": [0.5, -0.5]}, "wrt": ["x"]}),
            ),
            200,
        ),
        15 => (
            "POST",
            "/api/eval",
            j(serde_json::json!({"expr": "log(x)", "values": {"x": -1.0}})),
            400,
        ),
        16 => (
            "POST",
            "/api/parse",
            j(serde_json::json!({"expr": "x'*S*x", "decls": "S: symmetric(n)"})),
            200,
        ),
        17 => (
            "POST",
            "/api/check",
            j(
                serde_json::json!({"expr": "x'*A*x", "decls": format!("A: matrix({n}, {n})"), "wrt": ["x"], "trials": 1}),
            ),
            200,
        ),
        18 => (
            "POST",
            "/api/derive",
            j(serde_json::json!({"expr": r"f(x) = \|A x - b\|_2^2 + \lambda \|x\|_1", "code": false})),
            200,
        ),
        _ => ("GET", ["/", "/app.js"][n & 1], String::new(), 200),
    }
}

/// Resident memory of this process (the server runs in it), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Send requests `range` (every CLIENTS-th, starting at `offset`), checking each status.
fn client(addr: SocketAddr, range: std::ops::Range<usize>, offset: usize) -> Vec<String> {
    let mut wrong = Vec::new();
    for i in range.skip(offset).step_by(CLIENTS) {
        let (method, path, body, want) = case(i);
        let r = request(addr, method, path, body.as_bytes());
        if r.status != want {
            wrong.push(format!(
                "#{i} {method} {path}: {} (want {want}): {}",
                r.status,
                &r.body[..r.body.len().min(200)]
            ));
        }
    }
    wrong
}

fn run_phase(addr: SocketAddr, range: std::ops::Range<usize>) -> Vec<String> {
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let range = range.clone();
            std::thread::spawn(move || client(addr, range, c))
        })
        .collect();
    clients.into_iter().flat_map(|h| h.join().unwrap()).collect()
}

#[test]
fn ten_thousand_mixed_requests() {
    // Every case runs well inside the time bound; CLIENTS ≤ concurrency, so no 503 either.
    let s = Server::start(Config {
        timeout: Duration::from_secs(30),
        ..Config::default()
    });
    assert!(CLIENTS <= Config::default().concurrency);
    let t = Instant::now();
    let mut wrong = run_phase(s.addr, 0..WARM_UP);
    let warm = rss_kib();
    wrong.extend(run_phase(s.addr, WARM_UP..REQUESTS));
    let end = rss_kib();
    let took = t.elapsed();
    eprintln!(
        "load: {REQUESTS} requests from {CLIENTS} clients in {:.1} s ({:.0}/s); RSS after warm-up {} MiB, at the end {} MiB",
        took.as_secs_f64(),
        REQUESTS as f64 / took.as_secs_f64(),
        warm / 1024,
        end / 1024
    );
    assert!(
        wrong.is_empty(),
        "{} unexpected statuses:\n{}",
        wrong.len(),
        wrong[..wrong.len().min(20)].join("\n")
    );
    // Still answering.
    assert_eq!(s.post("/api/derive", HEADLINE).status, 200);
    // Flat memory: 9 000 more requests may not add more than 32 MiB (measured: about 1).
    assert!(end < warm + 32 * 1024, "RSS grew from {warm} KiB to {end} KiB");
}
