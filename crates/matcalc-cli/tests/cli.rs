//! The `matcalc` binary as a user runs it: arguments in, text and exit codes out.
//!
//! Exit codes: 0 success, 1 `check` FAIL, 2 bad input (with a message and a hint on
//! stderr). Anything else (3 = internal failure, 101 = panic, a signal = crash) is a bug.
//! Every run has a time limit, so a hang fails the test instead of blocking the suite.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_matcalc");

const HEADLINE: &str = "norm2(sin(W2*cos(W1*x)))^2";
const HEADLINE_DECL: &str = "W1: matrix(r, 100); W2: matrix(100, r); r: dim in 1..95";

/// What a run produced.
struct Run {
    /// The exit code; `None` if the process was killed by a signal (a crash).
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let clip = |s: &str| -> String { s.chars().take(3000).collect() };
        write!(
            f,
            "exit {:?} after {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            self.elapsed,
            clip(&self.stdout),
            clip(&self.stderr)
        )
    }
}

/// Run `matcalc args…` with `stdin` as standard input, killing it after `limit`.
fn run_with(args: &[&str], stdin: &str, limit: Duration) -> Run {
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start matcalc");
    // Feed and drain the pipes on threads so a large output cannot block the child.
    let mut input = child.stdin.take().unwrap();
    let text = stdin.to_string();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
    });
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("matcalc {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = writer.join();
    Run {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        elapsed: start.elapsed(),
    }
}

fn run(args: &[&str]) -> Run {
    run_with(args, "", Duration::from_secs(60))
}

/// Run and expect success; returns stdout.
#[track_caller]
fn ok(args: &[&str]) -> String {
    let r = run(args);
    assert_eq!(r.code, Some(0), "matcalc {args:?}\n{r:?}");
    r.stdout
}

/// Run and expect exit code 2 with `message` and a hint (`help:`) on stderr, and
/// nothing on stdout; returns stderr.
#[track_caller]
fn bad_input(args: &[&str], message: &str) -> String {
    bad_run(run(args), args, message)
}

#[track_caller]
fn bad_run(r: Run, args: &[&str], message: &str) -> String {
    assert_eq!(r.code, Some(2), "matcalc {args:?}: expected exit 2\n{r:?}");
    assert!(
        r.stderr.contains(message),
        "matcalc {args:?}: expected {message:?} on stderr\n{r:?}"
    );
    assert!(
        r.stderr.contains("help:"),
        "matcalc {args:?}: the error has no hint\n{r:?}"
    );
    assert!(
        r.stdout.is_empty(),
        "matcalc {args:?}: output on stdout despite the error\n{r:?}"
    );
    r.stderr
}

/// A fresh directory for one test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Write `content` to `dir/name`; returns the path as a string.
fn write(dir: &std::path::Path, name: &str, content: impl AsRef<[u8]>) -> String {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p.to_str().unwrap().to_string()
}

fn parse_json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Deterministic pseudo-random numbers in [-1, 1).
fn noise(seed: u64, n: usize) -> Vec<f64> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

/// Values for the headline example with r = 3, as a JSON object.
fn headline_values() -> Value {
    let rows = |data: Vec<f64>, cols: usize| -> Value { Value::Array(data.chunks(cols).map(|r| json!(r)).collect()) };
    json!({
        "W1": rows(noise(1, 3 * 100), 100),
        "W2": rows(noise(2, 100 * 3), 3),
        "x": noise(3, 100),
    })
}

/// Flatten a JSON number / array / array of rows.
fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Number(n) => vec![n.as_f64().unwrap()],
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        other => panic!("not a numeric value: {other}"),
    }
}

#[track_caller]
fn assert_close(got: &Value, want: &Value) {
    let (g, w) = (flat(got), flat(want));
    assert_eq!(g.len(), w.len(), "sizes differ: {got} vs {want}");
    let diff: f64 = g.iter().zip(&w).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
    let norm: f64 = w.iter().map(|b| b * b).sum::<f64>().sqrt();
    assert!(
        diff <= 1e-9 * norm.max(1.0),
        "relative error {:e}: {got} vs {want}",
        diff / norm
    );
}

/// `matcalc CMD <headline example> --wrt x --decl <its declarations> EXTRA…`
fn headline<'a>(cmd: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![cmd, HEADLINE, "--wrt", "x", "--decl", HEADLINE_DECL];
    args.extend_from_slice(extra);
    args
}

/// `eval --json` of `expr` at the values file; the parsed output.
#[track_caller]
fn eval_json(expr: &str, values: &str, extra: &[&str]) -> Value {
    let mut args = vec!["eval", expr, "--at", values, "--json"];
    args.extend_from_slice(extra);
    parse_json(&ok(&args))
}

// ---------------------------------------------------------------------------------------
// derive
// ---------------------------------------------------------------------------------------

#[test]
fn headline_nested_text() {
    let out = ok(&headline("derive", &[]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[0].starts_with("f = ") && lines[0].contains("sin(W2 cos(W1 x))"),
        "{out}"
    );
    assert_eq!(lines[1], "assumed (not declared): x: vector(100)");
    assert!(lines[2].starts_with("∂f/∂x = −2 W1ᵀ "), "{out}");
    assert!(lines[2].contains('⊙') && lines[2].contains("sin(W1 x)"), "{out}");
    assert_eq!(lines[3], "  [gradient: same shape as x (100)]");
}

#[test]
fn headline_cascade_and_diag_text() {
    let cascade = ok(&headline("derive", &["--form", "cascade"]));
    let diag = ok(&headline("derive", &["--form", "diag"]));
    for out in [&cascade, &diag] {
        let first = out.lines().next().unwrap();
        assert!(
            first.starts_with("f = ") && first.contains("sin(W2 cos(W1 x))"),
            "{out}"
        );
        assert!(out.contains("\nwhere\n  a = W1 x\n"), "{out}");
        assert!(out.contains("∂f/∂x = −2 W1ᵀ "), "{out}");
        assert!(out.ends_with("  [gradient: same shape as x (100)]\n"), "{out}");
    }
    // The cascade names function values; the Diag form turns Hadamard scalings into
    // products with Diag matrices, so its result has no ⊙ left.
    assert!(!cascade.contains("Diag("), "{cascade}");
    assert!(diag.contains(" = Diag("), "{diag}");
    let result = diag.lines().find(|l| l.starts_with("∂f/∂x")).unwrap();
    assert!(!result.contains('⊙'), "{diag}");
}

/// Braces balance in LaTeX output.
#[track_caller]
fn assert_balanced(tex: &str) {
    let mut depth = 0i32;
    for c in tex.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        assert!(depth >= 0, "unbalanced braces: {tex}");
    }
    assert_eq!(depth, 0, "unbalanced braces: {tex}");
    assert_eq!(tex.matches("\\left").count(), tex.matches("\\right").count(), "{tex}");
}

#[test]
fn headline_latex_in_all_forms() {
    for form in ["nested", "cascade", "diag"] {
        let out = ok(&headline("derive", &["--format", "latex", "--form", form]));
        assert!(out.starts_with("\\begin{aligned}\nf &= "), "{form}: {out}");
        assert!(out.ends_with("\\end{aligned}\n"), "{form}: {out}");
        assert!(
            out.contains("\\frac{\\partial f}{\\partial x} &= -2 W_{1}^\\top"),
            "{form}: {out}"
        );
        assert_balanced(&out);
        assert_eq!(out.contains("\\operatorname{Diag}"), form == "diag", "{form}: {out}");
    }
}

#[test]
fn expr_format_prints_one_line_per_wrt_in_order_and_evaluates_to_the_derivative() {
    let dir = scratch("expr-format");
    let values = write(&dir, "values.json", headline_values().to_string());
    let out = ok(&headline("derive", &["--wrt", "W1", "--format", "expr"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    // Each line is an expression in the input language: evaluating it gives the
    // derivative that `eval` computes.
    let want = eval_json(
        HEADLINE,
        &values,
        &["--decl", HEADLINE_DECL, "--wrt", "x", "--wrt", "W1"],
    );
    for (line, name, shape) in [(lines[0], "x", vec![100]), (lines[1], "W1", vec![3, 100])] {
        let got = eval_json(line, &values, &["--decl", HEADLINE_DECL]);
        assert_close(&got["value"], &want["derivatives"][name]);
        let dims: Vec<usize> = match &got["value"] {
            Value::Array(rows) => match &rows[0] {
                Value::Array(cols) => vec![rows.len(), cols.len()],
                _ => vec![rows.len()],
            },
            _ => vec![],
        };
        assert_eq!(dims, shape, "∂f/∂{name} = {line}");
    }
}

#[test]
fn json_format_has_every_field() {
    let out = ok(&headline("derive", &["--format", "json"]));
    assert_eq!(out.lines().count(), 1, "one line of JSON: {out}");
    let j = parse_json(&out);
    assert!(
        j["function"]["expr"].as_str().unwrap().contains("sin(W2*cos(W1*x))"),
        "{j}"
    );
    assert!(
        j["function"]["text"].as_str().unwrap().contains("sin(W2 cos(W1 x))"),
        "{j}"
    );
    assert!(j["function"]["latex"].as_str().unwrap().contains("W_{2}"), "{j}");
    assert_eq!(j["function"]["shape"], json!([]));
    assert_eq!(j["variables"]["W1"], json!({"shape": ["r", "100"], "symmetric": false}));
    assert_eq!(j["variables"]["W2"], json!({"shape": ["100", "r"], "symmetric": false}));
    assert_eq!(j["variables"]["x"], json!({"shape": ["100"], "symmetric": false}));
    assert_eq!(j["dims"], json!([{"name": "r", "range": [1, 95], "assumed": false}]));
    assert_eq!(j["assumed"], json!(["x: vector(100)"]));
    let ds = j["derivatives"].as_array().unwrap();
    assert_eq!(ds.len(), 1);
    let d = &ds[0];
    assert_eq!(d["wrt"], json!(["x"]));
    assert_eq!(d["kind"], "gradient");
    assert_eq!(d["layout"], "gradient: same shape as x (100)");
    assert_eq!(d["shape"], json!(["100"]));
    assert!(d["expr"].as_str().unwrap().starts_with("-2*W1'*"), "{d}");
    assert!(d["text"].as_str().unwrap().starts_with("−2 W1ᵀ"), "{d}");
    assert!(d["latex"].as_str().unwrap().starts_with("-2 W_{1}^\\top"), "{d}");
    for form in ["cascade", "diag"] {
        for key in ["definitions", "latex_definitions"] {
            assert!(!d[form][key].as_array().unwrap().is_empty(), "{form}.{key}: {d}");
        }
        assert!(
            d[form]["result"].is_string() && d[form]["latex"].is_string(),
            "{form}: {d}"
        );
    }
    assert_eq!(d["cascade"]["definitions"][0], "a = W1 x");
    let diag_defs = d["diag"]["definitions"].as_array().unwrap();
    assert!(diag_defs.iter().any(|s| s.as_str().unwrap().contains("= Diag(")), "{d}");
}

#[test]
fn expression_from_stdin_and_from_file() {
    let dir = scratch("stdin-file");
    let direct = ok(&headline("derive", &[]));
    let r = run_with(
        &["derive", "-", "--wrt", "x", "--decl", HEADLINE_DECL],
        &format!("{HEADLINE}\n"),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout, direct);
    // A file, with a trailing newline and a line break inside the expression.
    let path = write(&dir, "headline.mc", "norm2(sin(W2*cos(\n  W1*x)))^2\n");
    assert_eq!(
        ok(&["derive", "--file", &path, "--wrt", "x", "--decl", HEADLINE_DECL]),
        direct
    );
    // Declarations may be split over several --decl flags.
    let split = ok(&[
        "derive",
        "--file",
        &path,
        "--wrt",
        "x",
        "--decl",
        "W1: matrix(r, 100)",
        "--decl",
        "W2: matrix(100, r)",
        "--decl",
        "r: dim in 1..95",
    ]);
    assert_eq!(split, direct);
}

#[test]
fn expression_input_errors() {
    let dir = scratch("input-errors");
    bad_input(&["derive", "--wrt", "x"], "no expression given");
    let missing = dir.join("missing.mc");
    bad_input(
        &["derive", "--file", missing.to_str().unwrap(), "--wrt", "x"],
        "cannot read",
    );
    let r = run_with(&["derive", "-", "--wrt", "x"], "", Duration::from_secs(60));
    bad_run(r, &["derive", "-"], "the expression is empty");
}

#[test]
fn expression_may_start_with_a_minus() {
    assert_eq!(ok(&["derive", "-x'*x", "--wrt", "x", "--format", "expr"]), "-2*x\n");
}

#[test]
fn symmetric_variable_gets_the_symmetrized_gradient() {
    let out = ok(&[
        "derive",
        "x'*S*y",
        "--wrt",
        "S",
        "--decl",
        "S: symmetric(n)",
        "--format",
        "text",
    ]);
    assert!(out.contains("(G + Gᵀ)/2"), "{out}");
    let dir = scratch("symmetric");
    let values = write(&dir, "v.json", r#"{"S": [[2, 1], [1, 3]], "x": [1, 0], "y": [0, 1]}"#);
    let j = eval_json("x'*S*y", &values, &["--decl", "S: symmetric(2)", "--wrt", "S"]);
    assert_eq!(j["derivatives"]["S"], json!([[0.0, 0.5], [0.5, 0.0]]));
}

// ---------------------------------------------------------------------------------------
// eval
// ---------------------------------------------------------------------------------------

#[test]
fn eval_repeat_and_batched_points() {
    let dir = scratch("eval-batch");
    let one = write(&dir, "one.json", r#"{"x": [1, 2], "A": [[1, 2], [3, 4]]}"#);
    let r = run(&["eval", "x'*A*x", "--at", &one, "--wrt", "x", "--json", "--repeat", "5"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        parse_json(&r.stdout),
        json!({"value": 27.0, "derivatives": {"x": [12.0, 21.0]}})
    );
    assert!(r.stderr.starts_with("timing: 4 evaluations, median "), "{r:?}");
    // x with a leading batch axis: three points at once, results gain the axis.
    let many = write(
        &dir,
        "many.json",
        r#"{"x": [[1, 2], [0, 0], [1, 0]], "A": [[1, 2], [3, 4]]}"#,
    );
    let got = eval_json("x'*A*x", &many, &["--wrt", "x", "--order", "2"]);
    let h = json!([[2.0, 5.0], [5.0, 8.0]]);
    assert_eq!(got, json!({"value": [27.0, 0.0, 1.0], "derivatives": {"x": [h, h, h]}}));
    let got = eval_json("x'*A*x", &many, &["--wrt", "x"]);
    assert_eq!(got["derivatives"]["x"], json!([[12.0, 21.0], [0.0, 0.0], [2.0, 5.0]]));
    // --repeat 0 is a usage error.
    let r = run(&["eval", "x'*A*x", "--at", &one, "--repeat", "0"]);
    assert_eq!(r.code, Some(2), "{r:?}");
}

#[test]
fn eval_json_contract_with_a_values_file() {
    let dir = scratch("eval-json");
    let values = write(&dir, "v.json", r#"{"a": 2, "x": [1, 2], "A": [[1, 2], [3, 4]]}"#);
    let r = run(&[
        "eval", "a*x'*A*x", "--at", &values, "--wrt", "x", "--wrt", "A", "--wrt", "a", "--json",
    ]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stderr, "");
    assert_eq!(r.stdout.lines().count(), 1, "{r:?}");
    // Scalars are numbers, vectors arrays, matrices arrays of rows.
    let want = json!({
        "value": 54.0,
        "derivatives": {"x": [24.0, 42.0], "A": [[2.0, 4.0], [4.0, 8.0]], "a": 27.0},
    });
    assert_eq!(parse_json(&r.stdout), want);
    // Without --wrt: no derivatives. A vector-valued function: its Jacobian is a matrix.
    assert_eq!(
        eval_json("A*x", &values, &[]),
        json!({"value": [5.0, 11.0], "derivatives": {}})
    );
    assert_eq!(
        eval_json("A*x", &values, &["--wrt", "x"]),
        json!({"value": [5.0, 11.0], "derivatives": {"x": [[1.0, 2.0], [3.0, 4.0]]}})
    );
    // Second derivatives: the Hessian under the variable's name, a mixed one under both.
    assert_eq!(
        eval_json("x'*A*x", &values, &["--wrt", "x", "--order", "2"]),
        json!({"value": 27.0, "derivatives": {"x": [[2.0, 5.0], [5.0, 8.0]]}})
    );
    assert_eq!(
        eval_json("a*x'*A*x", &values, &["--wrt", "x", "--wrt", "a", "--order", "2"]),
        json!({"value": 54.0, "derivatives": {"x,a": [12.0, 21.0]}})
    );
}

#[test]
fn eval_table_output() {
    let dir = scratch("eval-table");
    let values = write(&dir, "v.json", r#"{"x": [1, 2], "A": [[1, 2], [3, 4]]}"#);
    let out = ok(&["eval", "x'*A*x", "--at", &values, "--wrt", "x"]);
    assert_eq!(out, "f = 27.000000\n∂f/∂x = [12.000000, 21.000000]\n");
}

#[test]
fn eval_headline_matches_between_declared_and_value_shapes() {
    let dir = scratch("eval-headline");
    let values = write(&dir, "v.json", headline_values().to_string());
    let declared = eval_json(HEADLINE, &values, &["--decl", HEADLINE_DECL, "--wrt", "x"]);
    let undeclared = eval_json(HEADLINE, &values, &["--wrt", "x"]);
    assert_close(&declared["value"], &undeclared["value"]);
    assert_close(&declared["derivatives"]["x"], &undeclared["derivatives"]["x"]);
    assert_eq!(flat(&declared["derivatives"]["x"]).len(), 100);
}

/// The bytes of a `.npy` file (format 1.0, little-endian float64).
fn npy(shape: &[usize], data: &[f64], fortran: bool) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let order = if fortran { "True" } else { "False" };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': {order}, 'shape': {shape_text}, }}");
    // Magic (6) + version (2) + length (2) + header, padded to a multiple of 64, ending in \n.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[test]
fn eval_reads_npy_values() {
    let dir = scratch("npy");
    let a = write(&dir, "a.npy", npy(&[], &[2.0], false));
    let x = write(&dir, "x.npy", npy(&[2], &[1.0, 2.0], false));
    let m = write(&dir, "A.npy", npy(&[2, 2], &[1.0, 2.0, 3.0, 4.0], false));
    // The same matrix stored column by column.
    let mf = write(&dir, "Af.npy", npy(&[2, 2], &[1.0, 3.0, 2.0, 4.0], true));
    let want = json!({
        "value": 54.0,
        "derivatives": {"x": [24.0, 42.0], "A": [[2.0, 4.0], [4.0, 8.0]], "a": 27.0},
    });
    for matrix in [&m, &mf] {
        let out = ok(&[
            "eval",
            "a*x'*A*x",
            "--at",
            &format!("a={a}"),
            "--at",
            &format!("x={x}"),
            "--at",
            &format!("A={matrix}"),
            "--wrt",
            "x",
            "--wrt",
            "A",
            "--wrt",
            "a",
            "--json",
        ]);
        assert_eq!(parse_json(&out), want, "{matrix}");
    }
    // .npy values and a JSON file together.
    let rest = write(&dir, "rest.json", r#"{"a": 2, "x": [1, 2]}"#);
    let out = ok(&[
        "eval",
        "a*x'*A*x",
        "--at",
        &rest,
        "--at",
        &format!("A={m}"),
        "--wrt",
        "a",
        "--json",
    ]);
    assert_eq!(parse_json(&out), json!({"value": 54.0, "derivatives": {"a": 27.0}}));
}

#[test]
fn eval_values_errors() {
    let dir = scratch("values-errors");
    let expr = "x'*A*x";
    let missing = dir.join("missing.json");
    bad_input(
        &["eval", expr, "--at", missing.to_str().unwrap()],
        "cannot read values file",
    );
    let p = write(&dir, "not-json.json", "x = [1, 2]");
    bad_input(&["eval", expr, "--at", &p], "is not valid JSON");
    let p = write(&dir, "array.json", "[1, 2]");
    bad_input(&["eval", expr, "--at", &p], "not a JSON object");
    let p = write(&dir, "missing-var.json", r#"{"x": [1, 2]}"#);
    bad_input(&["eval", expr, "--at", &p], "no value given for `A`");
    let p = write(&dir, "string.json", r#"{"x": [1, "2"], "A": [[1, 2], [3, 4]]}"#);
    bad_input(&["eval", expr, "--at", &p], "`x[1]` is a string, not a number");
    let p = write(&dir, "ragged.json", r#"{"x": [1, 2], "A": [[1, 2], [3]]}"#);
    bad_input(&["eval", expr, "--at", &p], "rows must have equal length");
    // NaN is not JSON; a number beyond f64 is, but is not finite.
    let p = write(&dir, "nan.json", r#"{"x": [1, NaN], "A": [[1, 2], [3, 4]]}"#);
    bad_input(&["eval", expr, "--at", &p], "is not valid JSON");
    let p = write(&dir, "huge.json", r#"{"x": [1, 1e999], "A": [[1, 2], [3, 4]]}"#);
    bad_input(&["eval", expr, "--at", &p], "too large for a 64-bit float");
    // Wrong shapes: against a declaration, and between two values.
    let p = write(&dir, "short.json", r#"{"x": [1, 2]}"#);
    bad_input(
        &["eval", "x'*x", "--decl", "x: vector(3)", "--at", &p],
        "`x` should have shape 3",
    );
    let p = write(&dir, "mismatch.json", r#"{"x": [1, 2, 3], "A": [[1, 2], [3, 4]]}"#);
    let err = bad_input(&["eval", expr, "--at", &p], "shape mismatch");
    assert!(
        err.contains("2×2 matrix") && err.contains("length 3"),
        "both shapes are shown: {err}"
    );
    let p = write(&dir, "nonsym.json", r#"{"S": [[1, 2], [3, 4]]}"#);
    bad_input(
        &["eval", "tr(S)", "--decl", "S: symmetric(2)", "--at", &p],
        "declared symmetric",
    );
    let p = write(&dir, "x.json", r#"{"x": [1, 2]}"#);
    bad_input(&["eval", "x'*x", "--at", &p, "--dim", "n=two"], "is not a whole number");
}

#[test]
fn eval_warns_about_values_the_expression_does_not_use() {
    // A misspelt name should not pass silently.
    let dir = scratch("unused-value");
    let p = write(&dir, "v.json", r#"{"x": [1, 2], "A": [[1, 2], [3, 4]], "zz": 1}"#);
    let r = run(&["eval", "x'*A*x", "--at", &p, "--json"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(parse_json(&r.stdout), json!({"value": 27.0, "derivatives": {}}));
    assert!(r.stderr.contains("warning: `zz` is not used"), "{r:?}");
}

#[test]
fn eval_binds_declared_symbolic_dims_from_undeclared_values() {
    // `S` is declared n×n; `x` is not declared and takes its shape from its value.
    let dir = scratch("symbolic-dims");
    let p = write(&dir, "v.json", r#"{"S": [[1, 2], [2, 4]], "x": [1, 2]}"#);
    let j = eval_json("x'*S*x", &p, &["--decl", "S: symmetric(n)", "--wrt", "S"]);
    assert_eq!(
        j,
        json!({"value": 25.0, "derivatives": {"S": [[1.0, 2.0], [2.0, 4.0]]}})
    );
}

#[test]
fn eval_numeric_errors() {
    let dir = scratch("numeric");
    let p = write(&dir, "singular.json", r#"{"A": [[1, 2], [2, 4]]}"#);
    bad_input(&["eval", "sum(inv(A))", "--at", &p], "singular");
    bad_input(&["eval", "sum(inv(A))", "--at", &p, "--wrt", "A", "--json"], "singular");
    let p = write(&dir, "negative.json", r#"{"x": [1, -2]}"#);
    bad_input(
        &["eval", "sum(log(x))", "--at", &p, "--wrt", "x"],
        "log of a negative number",
    );
}

#[test]
fn non_differentiable_point_warns_and_succeeds() {
    let dir = scratch("kink");
    let p = write(&dir, "v.json", r#"{"x": [1, 0, -2]}"#);
    let r = run(&["eval", "sum(abs(x))", "--at", &p, "--wrt", "x", "--json"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stderr.starts_with("warning: not differentiable at this point"),
        "{r:?}"
    );
    // sign(0) = 0.
    assert_eq!(
        parse_json(&r.stdout),
        json!({"value": 3.0, "derivatives": {"x": [1.0, 0.0, -1.0]}})
    );
    // relu'(0) = 0.
    let j = eval_json("sum(relu(x))", &p, &["--wrt", "x"]);
    assert_eq!(j["derivatives"]["x"], json!([1.0, 0.0, 0.0]));
    // The norm at 0: 0·∞ = 0.
    let p = write(&dir, "zero.json", r#"{"x": [0, 0]}"#);
    let r = run(&["eval", "norm2(x)", "--at", &p, "--wrt", "x", "--json"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stderr.contains("0·∞ = 0"), "{r:?}");
    assert_eq!(
        parse_json(&r.stdout),
        json!({"value": 0.0, "derivatives": {"x": [0.0, 0.0]}})
    );
}

// ---------------------------------------------------------------------------------------
// check
// ---------------------------------------------------------------------------------------

#[test]
fn check_headline_passes_at_the_ends_of_its_range() {
    for r in ["r=1", "r=50", "r=95"] {
        let out = ok(&headline("check", &["--dim", r]));
        assert!(
            out.lines().last().unwrap().starts_with("PASS: worst relative error"),
            "{r}: {out}"
        );
        assert!(out.contains(&format!("  {r} ")), "{r}: {out}");
    }
}

#[test]
fn check_fails_with_exit_1_when_the_tolerance_cannot_be_met() {
    // Finite differences are never exact, so a tolerance of 1e-30 cannot pass.
    let r = run(&headline("check", &["--trials", "1", "--tolerance", "1e-30"]));
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stdout
            .lines()
            .last()
            .unwrap()
            .starts_with("FAIL: worst relative error"),
        "{r:?}"
    );
}

#[test]
fn check_rejects_a_dim_outside_its_declared_range() {
    for r in ["r=96", "r=0"] {
        bad_input(&headline("check", &["--dim", r]), "outside its declared range");
    }
}

#[test]
fn check_rejects_an_unknown_dim() {
    bad_input(&headline("check", &["--dim", "q=5"]), "no dimension `q`");
}

// ---------------------------------------------------------------------------------------
// errors: exit code 2, a message and a hint, never a crash
// ---------------------------------------------------------------------------------------

#[test]
fn syntax_errors() {
    let e = bad_input(
        &["derive", "x+*y", "--wrt", "x"],
        "expected an expression after `+`, found `*`",
    );
    assert!(e.contains("x+*y"), "the source is shown: {e}");
    bad_input(&["derive", "(x", "--wrt", "x"], "unclosed `(`");
    bad_input(&["derive", "2x", "--wrt", "x"], "write `2*x` for a product");
    bad_input(&["derive", "x × y", "--wrt", "x"], "unexpected character `×`");
    bad_input(&["derive", "sin", "--wrt", "x"], "`sin` is a function");
    bad_input(
        &["derive", "[1 2; 3]", "--wrt", "x"],
        "row 2 has 1 entry but row 1 has 2 entries",
    );
    bad_input(
        &["derive", "x", "--wrt", "x", "--decl", "x: vectr(3)"],
        "did you mean `vector`?",
    );
    bad_input(
        &["derive", "x", "--wrt", "x", "--decl", "x: vector(3); x: scalar"],
        "`x` is declared twice",
    );
}

#[test]
fn unknown_function_suggests_the_nearest() {
    let e = bad_input(&["derive", "sinn(x)", "--wrt", "x"], "unknown function `sinn`");
    assert!(e.contains("did you mean `sin`?"), "{e}");
}

/// Errors that say what went wrong but not what to do about it. All are collected
/// before failing, so the list shows every one still missing a hint.
#[test]
fn every_error_has_a_hint() {
    let dir = scratch("hints");
    let e = write(&dir, "e.mc", "x'*x");
    let broken = write(&dir, "broken.npy", b"\x93NUMPY garbage");
    let t3 = write(&dir, "t.json", r#"{"T": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]}"#);
    let x4 = write(&dir, "x4.json", r#"{"x": [1, 2, 3, 4]}"#);
    let npy_arg = format!("x={broken}");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["derive", "x", "--file", &e, "--wrt", "x"], "not both"),
        (
            vec!["derive", "sum(A, B)", "--wrt", "A"],
            "`sum` takes 1 argument, got 2",
        ),
        (
            vec!["derive", "x'*x", "--wrt", "x", "--order", "0"],
            "--order must be at least 1",
        ),
        (
            vec!["derive", "x'*A*x", "--wrt", "A", "--order", "3"],
            "order 3 and more",
        ),
        (vec!["eval", "sum(x)", "--at", &npy_arg], "not a valid .npy file"),
        (vec!["eval", "sum(T)", "--at", &t3], "`T` has 3 axes"),
        (
            vec!["eval", "x'*x", "--decl", "n: dim in 1..3; x: vector(n)", "--at", &x4],
            "outside its declared range",
        ),
    ];
    let mut missing = Vec::new();
    for (args, message) in &cases {
        let r = run(args);
        assert_eq!(r.code, Some(2), "matcalc {args:?}\n{r:?}");
        assert!(
            r.stderr.contains(message),
            "matcalc {args:?}: expected {message:?}\n{r:?}"
        );
        if !r.stderr.contains("help:") {
            missing.push(format!("matcalc {args:?}: {message}"));
        }
    }
    assert!(missing.is_empty(), "errors without a hint:\n{}", missing.join("\n"));
}

#[test]
fn unknown_wrt_name() {
    let e = bad_input(
        &["derive", "x'*A*x", "--wrt", "z"],
        "`z` does not occur in the expression",
    );
    assert!(e.contains("x, A"), "the variables are listed: {e}");
    let e = bad_input(
        &["derive", HEADLINE, "--wrt", "w1", "--decl", HEADLINE_DECL],
        "`w1` does not occur",
    );
    assert!(e.contains("did you mean `W1`?"), "{e}");
}

#[test]
fn shape_mismatch_shows_both_shapes() {
    let e = bad_input(
        &["derive", "A*x", "--wrt", "x", "--decl", "A: matrix(3, 4); x: vector(5)"],
        "shape mismatch in a product",
    );
    assert!(e.contains("this is a 3×4 matrix"), "{e}");
    assert!(e.contains("this is a column vector of length 5"), "{e}");
    let e = bad_input(&["derive", "x*y", "--wrt", "x"], "shape mismatch in a product");
    assert!(e.contains("x'*y"), "the hint offers the inner product: {e}");
    bad_input(&["derive", "x^2", "--wrt", "x"], "shape mismatch in `^`");
    bad_input(&["derive", "tr(x)", "--wrt", "x"], "tr needs a square matrix");
}

#[test]
fn second_derivative_of_a_non_scalar_is_refused() {
    bad_input(
        &["derive", "A*x", "--wrt", "x", "--order", "2"],
        "derivatives of order 2 need a scalar expression",
    );
}

#[test]
fn command_line_mistakes_exit_2() {
    for args in [
        &["derive", "x"][..],
        &["derive", "x", "--wrt", "x", "--bogus"],
        &["derive", "x", "--wrt", "x", "--format", "pdf"],
        &["frobnicate"],
    ] {
        let r = run(args);
        assert_eq!(r.code, Some(2), "{args:?}: {r:?}");
        assert!(!r.stderr.is_empty(), "{args:?}: {r:?}");
    }
    assert!(ok(&["--version"]).starts_with("matcalc "));
    assert!(ok(&["derive", "--help"]).contains("--wrt"));
}

#[test]
fn nesting_100_000_deep_is_refused_quickly_with_a_short_message() {
    let dir = scratch("deep");
    let n = 100_000;
    let deep = format!("{}x{}", "(".repeat(n), ")".repeat(n));
    let path = write(&dir, "deep.mc", &deep);
    let r = run(&["derive", "--file", &path, "--wrt", "x"]);
    assert!(r.elapsed < Duration::from_secs(5), "{r:?}");
    let err = bad_run(r, &["derive", "--file", "deep.mc"], "nesting too deep");
    // The message shows the neighbourhood of the error, not the whole 200 kB line.
    assert!(err.len() < 20_000, "the error message is {} bytes long", err.len());
    // The same from the command line (one argument may hold at most 128 KiB, so
    // 50 000 levels there) and from standard input.
    let shallower = format!("{}x{}", "(".repeat(50_000), ")".repeat(50_000));
    bad_input(&["derive", &shallower, "--wrt", "x"], "nesting too deep");
    let r = run_with(&["derive", "-", "--wrt", "x"], &deep, Duration::from_secs(60));
    bad_run(r, &["derive", "-"], "nesting too deep");
}

#[test]
fn deep_but_allowed_nesting_works() {
    let expr = format!("{}x{}", "sin(".repeat(1000), ")".repeat(1000));
    let out = ok(&[
        "derive",
        &expr,
        "--wrt",
        "x",
        "--decl",
        "x: scalar",
        "--form",
        "cascade",
    ]);
    assert!(out.contains("∂f/∂x = "), "{out}");
}

#[test]
fn ten_megabyte_expression_finishes_in_seconds() {
    let dir = scratch("big");
    let big = vec!["x"; (5 << 20) + 1].join("+");
    assert!(big.len() >= 10 << 20);
    let path = write(&dir, "big.mc", &big);
    let r = run(&["derive", "--file", &path, "--wrt", "x"]);
    assert!(r.elapsed < Duration::from_secs(5), "took {:?}", r.elapsed);
    bad_run(r, &["derive", "--file", "big.mc"], "expression too large");
}

// ---------------------------------------------------------------------------------------
// derivatives with no matrix form (tensors of order 3 and 4)
// ---------------------------------------------------------------------------------------

#[test]
fn tensor_derivatives_print_in_index_notation() {
    let out = ok(&["derive", "A*x", "--wrt", "A"]);
    assert!(
        out.contains("[tensor: ∂f[output axes]/∂A[axes], output axes first (n×n×m)]"),
        "{out}"
    );
    bad_input(&["derive", "A*x", "--wrt", "A", "--format", "expr"], "no matrix form");
}

#[test]
fn zero_tensor_derivatives_do_not_crash() {
    // The Hessian of x'Ax by A is the zero tensor of order 4; the Jacobian of a matrix
    // by a vector it does not depend on is a zero tensor of order 3.
    for args in [
        &["derive", "x'*A*x", "--wrt", "A", "--order", "2"][..],
        &["derive", "x'*A*x", "--wrt", "A", "--order", "2", "--format", "json"],
        &["derive", "sum(x)", "--wrt", "x", "--order", "3"],
        &["derive", "A", "--wrt", "x", "--decl", "x: vector(3)"],
    ] {
        let r = run(args);
        assert_eq!(r.code, Some(0), "matcalc {args:?}\n{r:?}");
    }
}

#[test]
fn sum_of_tensor_derivatives_does_not_crash() {
    let r = run(&["derive", "A*x + B*A*y", "--wrt", "A"]);
    assert_eq!(r.code, Some(0), "{r:?}");
}

#[test]
fn jacobian_of_diag_times_vector_has_a_matrix_form() {
    // diag(x)*y = x.*y, whose Jacobian by x is diag(y): an n×n matrix.
    assert_eq!(ok(&["derive", "x.*y", "--wrt", "x", "--format", "expr"]), "diag(y)\n");
    assert_eq!(
        ok(&["derive", "diag(x)*y", "--wrt", "x", "--format", "expr"]),
        "diag(y)\n"
    );
}

#[test]
fn derivative_order_beyond_the_tensor_limit_is_an_error_not_a_panic() {
    // The eighth derivative of a scalar by a vector is an order-8 tensor; building it
    // needs intermediate tensors of more axes than the IR allows.
    for k in ["8", "12"] {
        let r = run(&["derive", "sum(exp(x))", "--wrt", "x", "--order", k]);
        assert_eq!(r.code, Some(2), "--order {k}: {r:?}");
        assert!(
            r.stderr.contains("order") && r.stderr.contains("help:"),
            "--order {k}: {r:?}"
        );
    }
}

#[test]
fn explain_prints_the_derivation_then_the_result() {
    let out = ok(&["derive", HEADLINE, "--wrt", "x", "--decl", HEADLINE_DECL, "--explain"]);
    // The result as `derive` prints it comes first, then the derivation.
    let result = out.find("∂f/∂x = −2 W1ᵀ (sin(W1 x)").expect(&out);
    let notation = out.find("Notation").expect(&out);
    assert!(result < notation, "{out}");
    for step in [
        "identities used:",
        "C : AB = CBᵀ : A = AᵀC : B",
        "a = W1 x",
        "⇒ da = W1 dx",
        "The differential, back-substituted",
        "df = 2 k : dk",
        "(substitute dk)",
        "⇒ ∂f/∂x = −2 W1ᵀ (b ⊙ (W2ᵀ (k ⊙ h)))",
        "In the original variables",
    ] {
        assert!(out.contains(step), "missing `{step}`:\n{out}");
    }
}

#[test]
fn explain_names_override_and_formats() {
    let names = "a,s,y,b,c,z";
    let out = ok(&[
        "derive",
        HEADLINE,
        "--wrt",
        "x",
        "--decl",
        HEADLINE_DECL,
        "--explain",
        "--names",
        names,
    ]);
    assert!(
        out.contains("s = sin(a), y = cos(a)") && out.contains("⇒ dy = −s ⊙ da"),
        "{out}"
    );
    let tex = ok(&[
        "derive",
        HEADLINE,
        "--wrt",
        "x",
        "--decl",
        HEADLINE_DECL,
        "--explain",
        "--format",
        "latex",
    ]);
    assert!(
        tex.starts_with("\\begin{aligned}") && tex.trim_end().ends_with("\\end{aligned}"),
        "{tex}"
    );
    assert!(tex.contains("\\mathrm{d}x"), "{tex}");
    let md = ok(&[
        "derive",
        HEADLINE,
        "--wrt",
        "x",
        "--decl",
        HEADLINE_DECL,
        "--explain",
        "--format",
        "markdown",
    ]);
    assert!(
        md.contains("### Intermediates") && md.contains("$$\n\\begin{aligned}"),
        "{md}"
    );
    // A Jacobian ends in `df = J dx`, a Hessian's chain in `H dx`.
    let jac = ok(&["derive", "W*sin(x)", "--wrt", "x", "--explain"]);
    assert!(
        jac.contains("= W (a ⊙ dx)") && jac.contains("= W diag(a) dx") && jac.contains("⇒ ∂f/∂x = W diag(a)"),
        "{jac}"
    );
    let hess = ok(&["derive", "x'*A*x", "--wrt", "x", "--order", "2", "--explain"]);
    assert!(
        hess.contains("d(∂f/∂x) = (A + Aᵀ) dx") && hess.contains("⇒ ∂²f/∂x² = A + Aᵀ"),
        "{hess}"
    );
}

#[test]
fn explain_refuses_formats_it_has_not() {
    bad_input(
        &["derive", "x'*x", "--wrt", "x", "--explain", "--format", "json"],
        "--explain prints",
    );
    bad_input(
        &["derive", "x'*x", "--wrt", "x", "--format", "markdown"],
        "--format markdown goes with --explain",
    );
}
