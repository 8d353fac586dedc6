//! The data-driven suite: every `tests/cases/*.mc` file at the workspace root.
//!
//! A case file is a header of directives, then the expected outputs:
//!
//! ```text
//! # least squares            (comments: notes, assumptions)
//! expr: norm2(A*x - b)^2     (required)
//! decl: A: matrix(m, n); b: vector(m)   (optional, repeatable)
//! wrt: x                     (required; repeatable or comma-separated)
//! order: 1                   (default 1)
//! dims: m=3 n=2              (optional: sizes for the random trials)
//! --- expr
//! 2*A'*(A*x - b)
//! --- text
//! ...
//! ```
//!
//! Sections, all produced by the engine: `expr` (the input language, one line
//! per derivative), `text` (Unicode, nested), `latex`, `cascade` (named
//! intermediates) and `diag` (the cascade with `Diag` matrices).
//!
//! For every case the test
//! * checks each derivative against finite differences
//!   ([`matcalc::eval::check::check`]) with every symbolic dimension 1, then 2
//!   (clamped into declared ranges), then at random sizes (the `dims:` values
//!   pinned) for several seeds;
//! * parses the printed `expr` line back with the same declarations (plus the
//!   assumed ones) and checks that it evaluates to the engine's derivative
//!   (relative error 1e-9); the same for the function as printed (`f = …`);
//!   a derivative of order ≤ 2 printed in index notation is a failure;
//! * checks that the LaTeX is well formed: braces and `\left`/`\right`
//!   balanced, no double superscripts or subscripts (`X^{-1}^\top`);
//! * compares the sections with the file. With `MATCALC_BLESS=1` it rewrites
//!   them instead (the header is kept verbatim).
//!
//! All failures are collected, then reported together.

mod common;
use common::*;
use matcalc::eval::check::{check, sample_dims, sample_values, CheckOptions};
use matcalc::eval::interp::{bind_dims, evaluate};
use matcalc::eval::Tensor;
use matcalc::ir::{Dim, Id};
use matcalc::render::print::Style;
use matcalc::render::{self, Form};
use matcalc::{Derivative, ErrorKind, Problem};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The expected sections, in the order they are written.
const SECTIONS: [&str; 5] = ["expr", "text", "latex", "cascade", "diag"];

/// Seeds of the random-size checks (each with [`RANDOM_TRIALS`] points).
const RANDOM_SEEDS: [u64; 3] = [1, 2, 3];
const RANDOM_TRIALS: usize = 3;

/// Seeds of the round-trip comparisons.
const ROUND_TRIP_SEEDS: [u64; 2] = [11, 12];
const ROUND_TRIP_TOLERANCE: f64 = 1e-9;

/// The text (or LaTeX) report of the derivatives in a form, like `matcalc derive`
/// without its layout notes.
fn report(p: &Problem, ds: &[Derivative], form: Form, style: &Style) -> String {
    let opts = matcalc::report::TextOptions {
        assumed: true,
        layout: false,
    };
    let mut out = matcalc::report::derive_text(p, ds, form, style, &opts);
    out.truncate(out.trim_end().len());
    out
}

fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            let _ = writeln!(out, "      {}", a[i]);
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            let _ = writeln!(out, "    - {}", a[i]);
            i += 1;
        } else {
            let _ = writeln!(out, "    + {}", b[j]);
            j += 1;
        }
    }
    out
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

/// One run of the numeric check.
struct CheckConfig {
    what: String,
    seed: u64,
    trials: usize,
    dims: Vec<(String, usize)>,
}

/// The numeric check runs: every symbolic dimension 1, then 2, then random.
fn check_configs(p: &Problem, case: &Case) -> Vec<CheckConfig> {
    let all = |v: u64| -> Vec<(String, usize)> {
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
    };
    let mut out = vec![
        CheckConfig {
            what: "dims=1".into(),
            seed: 1,
            trials: 1,
            dims: all(1),
        },
        CheckConfig {
            what: "dims=2".into(),
            seed: 2,
            trials: 1,
            dims: all(2),
        },
    ];
    for seed in RANDOM_SEEDS {
        out.push(CheckConfig {
            what: format!("random dims, seed {seed}"),
            seed,
            trials: RANDOM_TRIALS,
            dims: case.dims.clone(),
        });
    }
    out
}

/// Evaluate the printed expression `text` (reparsed) and the engine's node `id`
/// at the same random points.
fn round_trip(p: &Problem, id: Id, text: &str, decls: &str) -> Result<(), String> {
    let q = Problem::new(text, decls).map_err(|e| format!("does not parse back: {e}"))?;
    for seed in ROUND_TRIP_SEEDS {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut attempt = 0;
        let (dims, vals, want) = loop {
            let dims = sample_dims(&p.graph, &[], &mut rng);
            let vals = sample_values(&p.graph, p.root, &dims, &mut rng);
            match evaluate(&p.graph, &[id], p.root, &vals, &dims) {
                Ok(mut e) => break (dims, vals, e.values.remove(0)),
                Err(e) if e.kind == ErrorKind::Numeric && attempt < 20 => attempt += 1,
                Err(e) => return Err(format!("the engine's node does not evaluate: {e}")),
            }
        };
        // Variables by name: the reparsed problem numbers them differently.
        let qvals: Vec<Option<Tensor>> = q
            .graph
            .vars
            .iter()
            .map(|v| p.graph.var_index(&v.name).and_then(|i| vals[i].clone()))
            .collect();
        let explicit: Vec<(String, usize)> = q
            .graph
            .dims
            .iter()
            .filter_map(|qd| {
                let i = p.graph.dims.iter().position(|pd| pd.name == qd.name)?;
                Some((qd.name.clone(), dims[i]?))
            })
            .collect();
        let mut qdims =
            bind_dims(&q.graph, &qvals, &explicit).map_err(|e| format!("reparsed: cannot bind dimensions: {e}"))?;
        // A printed `vector(1)` or `matrix(2)` alone has no size of its own: it
        // takes it from where it stands, here the derivative's shape.
        for (&d, &n) in q.graph.shape(q.root).iter().zip(want.shape()) {
            if let Dim::Sym(s) = d {
                qdims[s as usize].get_or_insert(n);
            }
        }
        let got = evaluate(&q.graph, &[q.root], q.root, &qvals, &qdims)
            .map_err(|e| format!("reparsed: does not evaluate: {e}"))?
            .values
            .remove(0);
        if got.shape() != want.shape() {
            return Err(format!(
                "reparsed value has shape {:?}, the engine's node {:?} (seed {seed})",
                got.shape(),
                want.shape()
            ));
        }
        let err = rel_err(&want, &got);
        if err.is_nan() || err > ROUND_TRIP_TOLERANCE {
            return Err(format!(
                "reparsed value differs: relative error {err:.2e} (seed {seed})"
            ));
        }
    }
    Ok(())
}

/// Run one case: its failures, and whether its file was rewritten.
fn run_case(case: &Case, bless: bool) -> (Vec<String>, bool) {
    let mut failures = Vec::new();
    let decls = case.decls();
    let base = match Problem::new(&case.expr, &decls) {
        Ok(p) => p,
        Err(e) => return (vec![format!("does not parse: {e}")], false),
    };
    let mut p = base.clone();
    let ds = match p.derive(&case.wrt, case.order) {
        Ok(ds) => ds,
        Err(e) => return (vec![format!("derive failed: {e}")], false),
    };

    // Numbers.
    for CheckConfig {
        what,
        seed,
        trials,
        dims,
    } in check_configs(&base, case)
    {
        let opts = CheckOptions {
            seed,
            trials,
            dims,
            order: case.order,
            ..CheckOptions::default()
        };
        match check(&mut base.clone(), &case.wrt, &opts) {
            Ok(r) if r.lines.is_empty() => failures.push(format!("numeric check ({what}): no comparisons made")),
            Ok(r) if r.passed => {}
            Ok(r) => {
                let worst = r
                    .lines
                    .iter()
                    .filter(|l| l.error.is_nan() || l.error > r.tolerance)
                    .map(|l| format!("{} trial {} [{}] {}: {:.2e}", l.what, l.trial, l.dims, l.kind, l.error))
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("; ");
                failures.push(format!("numeric check FAILED ({what}): worst {:.2e}: {worst}", r.worst));
            }
            Err(e) => failures.push(format!("numeric check error ({what}): {e}")),
        }
    }

    // Outputs.
    let reserved = p.reserved_names();
    let ids: Vec<_> = ds.iter().map(|d| d.id).collect();
    let nested = render::recover(&p.graph, &ids, Form::Nested, Some(p.root), &reserved);
    let (_, expr_lines) = nested.lines(&Style::EXPR);
    let latex = report(&p, &ds, Form::Nested, &Style::LATEX);
    let actual: Vec<(String, String)> = vec![
        ("expr".into(), expr_lines.join("\n")),
        ("text".into(), report(&p, &ds, Form::Nested, &Style::TEXT)),
        ("latex".into(), latex.clone()),
        ("cascade".into(), report(&p, &ds, Form::Cascade, &Style::TEXT)),
        ("diag".into(), report(&p, &ds, Form::Diag, &Style::TEXT)),
    ];
    debug_assert_eq!(actual.len(), SECTIONS.len());

    if let Err(e) = latex_balanced(&latex) {
        failures.push(format!("LaTeX malformed: {e}"));
    }

    // Round trip of the printed expressions.
    let mut rt_decls = case.decls.clone();
    rt_decls.extend(p.assumed.iter().cloned());
    let rt_decls = rt_decls.join("; ");
    // The function as printed (`f = …` in every section) must mean the input.
    let f = render::recover(&p.graph, &[p.root], Form::Nested, None, &reserved);
    let (_, f_expr) = f.lines(&Style::EXPR);
    if !f.results[0].has_index() {
        if let Err(e) = round_trip(&p, p.root, &f_expr[0], &rt_decls) {
            failures.push(format!("f: round trip of `{}`: {e}", f_expr[0]));
        }
    }
    for ((d, m), text) in ds.iter().zip(&nested.results).zip(&expr_lines) {
        if m.has_index() {
            if p.graph.order(d.id) <= 2 {
                failures.push(format!(
                    "{}: index notation for a derivative of order {} (a matrix form exists): {text}",
                    d.label(&Style::TEXT),
                    p.graph.order(d.id)
                ));
            }
            continue;
        }
        if let Err(e) = round_trip(&p, d.id, text, &rt_decls) {
            failures.push(format!("{}: round trip of `{text}`: {e}", d.label(&Style::TEXT)));
        }
    }

    // Snapshots.
    let mut rewritten = false;
    let expected = write_case(&case.header, &case.sections);
    let wanted = write_case(&case.header, &actual);
    if expected != wanted {
        if bless {
            match std::fs::write(&case.path, &wanted) {
                Ok(()) => rewritten = true,
                Err(e) => failures.push(format!("cannot write: {e}")),
            }
        } else {
            let mut msg = String::from("output differs from the file (MATCALC_BLESS=1 to accept):\n");
            for (name, body) in &actual {
                match case.sections.iter().find(|(n, _)| n == name) {
                    Some((_, old)) if old == body => {}
                    Some((_, old)) => {
                        let _ = write!(msg, "  --- {name}\n{}", diff(old, body));
                    }
                    None => {
                        let _ = write!(msg, "  --- {name} (missing)\n{}", diff("", body));
                    }
                }
            }
            for (name, _) in &case.sections {
                if !SECTIONS.contains(&name.as_str()) {
                    let _ = writeln!(msg, "  --- {name}: unknown section");
                }
            }
            failures.push(msg.trim_end().to_string());
        }
    }
    (failures, rewritten)
}

/// What running one case file gave.
struct Outcome {
    name: String,
    failures: Vec<String>,
    rewritten: bool,
    time: Duration,
}

#[test]
fn cases() {
    let bless = std::env::var("MATCALC_BLESS").is_ok_and(|v| v == "1");
    let files = case_files();
    assert!(!files.is_empty(), "no case files in tests/cases");
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism()
        .map_or(4, |n| n.get())
        .min(files.len());
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = files.get(i) else { break };
                let t0 = Instant::now();
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let outcome = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read: {e}"))
                    .and_then(|text| parse_case(path, &text).map_err(|e| format!("bad case file: {e}")))
                    .map(|case| {
                        let case_name = case.name();
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(&case, bless)))
                            .unwrap_or_else(|e| {
                                let msg = e
                                    .downcast_ref::<String>()
                                    .cloned()
                                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                                    .unwrap_or_default();
                                (vec![format!("PANIC in {case_name}: {msg}")], false)
                            })
                    });
                let (failures, rewritten) = outcome.unwrap_or_else(|e| (vec![e], false));
                let time = t0.elapsed();
                results.lock().unwrap().push(Outcome {
                    name,
                    failures,
                    rewritten,
                    time,
                });
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by(|a, b| a.name.cmp(&b.name));
    let mut slow: Vec<&Outcome> = results.iter().collect();
    slow.sort_by_key(|o| std::cmp::Reverse(o.time));
    eprintln!(
        "{} cases in {:.1?}; slowest: {}",
        results.len(),
        start.elapsed(),
        slow.iter()
            .take(5)
            .map(|o| format!("{} {:.1?}", o.name, o.time))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let blessed: Vec<&str> = results
        .iter()
        .filter(|o| o.rewritten)
        .map(|o| o.name.as_str())
        .collect();
    if !blessed.is_empty() {
        eprintln!("blessed {} file(s): {}", blessed.len(), blessed.join(", "));
    }
    let failed: Vec<&Outcome> = results.iter().filter(|o| !o.failures.is_empty()).collect();
    if !failed.is_empty() {
        let mut msg = String::new();
        for o in &failed {
            let _ = writeln!(msg, "\n== tests/cases/{}", o.name);
            for f in &o.failures {
                let _ = writeln!(msg, "  {f}");
            }
        }
        panic!(
            "{} of {} cases failed:{msg}\n{} of {} cases failed (see above)",
            failed.len(),
            results.len(),
            failed.len(),
            results.len()
        );
    }
}

#[test]
fn latex_checks() {
    assert!(latex_balanced("\\frac{a}{b} \\left(x\\right)^{2}").is_ok());
    assert!(latex_balanced("W_{1}^\\top x^{2} \\{a\\}").is_ok());
    assert!(latex_balanced("\\left(x").is_err());
    assert!(latex_balanced("{x}}").is_err());
    assert!(latex_balanced("\\left({x\\right)}").is_err());
    assert!(latex_balanced("X^{-1}^\\top").is_err());
    assert!(latex_balanced("x_1_2").is_err());
}

#[test]
fn case_file_round_trip() {
    let text = concat!(
        "# note\nexpr: x'*x\ndecl: x: vector(n)\nwrt: x, y\nwrt: z\norder: 2\ndims: n=3 m=4\n",
        "--- expr\n2*x\n\n--- text\na\nb\n"
    );
    let c = parse_case(Path::new("t.mc"), text).unwrap();
    assert_eq!(c.expr, "x'*x");
    assert_eq!(c.wrt, ["x", "y", "z"]);
    assert_eq!(c.order, 2);
    assert_eq!(c.dims, [("n".to_string(), 3), ("m".to_string(), 4)]);
    assert_eq!(c.sections[0], ("expr".to_string(), "2*x".to_string()));
    assert_eq!(c.sections[1], ("text".to_string(), "a\nb".to_string()));
    let written = write_case(&c.header, &c.sections);
    assert_eq!(written, text.replace("2*x\n\n", "2*x\n"));
    assert!(parse_case(Path::new("t.mc"), "expr: x\n").is_err());
    assert!(parse_case(Path::new("t.mc"), "expr: x\nwrt: x\nbogus: 1\n").is_err());
    assert_eq!(diff("a\nb\nc", "a\nB\nc"), "      a\n    - b\n    + B\n      c\n");
}

/// Every case through the web API: `api::derive` answers, its nested text is the
/// `text` section (less the `assumed` line, which the API returns on its own), and
/// every piece of MathML it returns is well-formed MathML.
#[test]
fn every_case_through_the_api() {
    use matcalc::api::{self, DeriveRequest, Formula, ProblemInput};
    fn well_formed(what: &str, s: &str) {
        let doc = roxmltree::Document::parse(s).unwrap_or_else(|e| panic!("{what}: not well-formed ({e}): {s}"));
        assert_eq!(doc.root_element().tag_name().name(), "math", "{what}");
    }
    fn formula(what: &str, f: &Formula) {
        well_formed(what, &f.mathml);
        assert!(!f.text.is_empty() && !f.latex.is_empty(), "{what}");
    }
    let files = case_files();
    let mut failures = Vec::new();
    for path in &files {
        let case = parse_case(path, &std::fs::read_to_string(path).unwrap()).unwrap();
        let name = case.name();
        let req = DeriveRequest {
            input: ProblemInput {
                expr: case.expr.clone(),
                decls: case.decls(),
                latex: false,
            },
            wrt: case.wrt.clone(),
            order: case.order,
            form: api::FormName::Nested,
            code: false,
        };
        let r = match api::derive(&req) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{name}: {e:?}"));
                continue;
            }
        };
        formula(&name, &r.parsed.function.formula);
        let forms = [
            ("nested", r.forms.nested.as_ref()),
            ("cascade", Some(&r.forms.cascade)),
            ("diag", Some(&r.forms.diag)),
        ];
        for (form, block) in forms {
            let Some(b) = block else { continue };
            let what = format!("{name} {form}");
            well_formed(&what, &b.mathml);
            b.results.iter().for_each(|f| formula(&what, f));
            b.definitions.iter().for_each(|d| formula(&what, &d.formula));
        }
        for d in &r.derivatives {
            well_formed(&name, &format!("<math>{}</math>", d.label.mathml));
        }
        let expected: String = case
            .sections
            .iter()
            .find(|(s, _)| s == "text")
            .map(|(_, t)| {
                t.lines()
                    .filter(|l| !l.starts_with("assumed (not declared)"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        match &r.forms.nested {
            Some(n) if n.text.trim_end() == expected.trim_end() => {}
            Some(n) => failures.push(format!("{name}: text differs:\n{}--- expected\n{expected}", n.text)),
            None => failures.push(format!("{name}: no nested form")),
        }
    }
    assert!(files.len() > 100, "found only {} cases", files.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
