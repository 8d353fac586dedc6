//! Explanations (`derive --explain`): for every case of the suite the derivation is
//! built, every line of it is evaluated at random points (each `=` must hold, the
//! first line must match central differences, the result read off must equal the
//! derivative the engine prints), and its LaTeX must render in KaTeX.

mod common;

use common::{case_files, latex_balanced, parse_case};
use matcalc::explain::{explain, Format, Options};
use matcalc::Problem;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const SEEDS: [u64; 2] = [1, 2];

#[test]
fn every_case_is_explained_and_every_line_verified() {
    let mut failures = Vec::new();
    let mut latex = Vec::new();
    let mut count = 0;
    for path in case_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let case = parse_case(&path, &text).unwrap();
        let name = case.name();
        let mut p = Problem::new(&case.expr, &case.decls()).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let ds = p
            .derive(&case.wrt, case.order)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let e = match explain(&p, &case.wrt, case.order, &ds, &Options::default()) {
            Ok(e) => e,
            Err(err) => {
                failures.push(format!("{name}: no explanation: {}", err.message));
                continue;
            }
        };
        count += 1;
        for seed in SEEDS {
            match e.verify(seed, &case.dims) {
                Ok(v) if v.skipped.is_some() => {
                    failures.push(format!("{name} (seed {seed}): skipped: {}", v.skipped.unwrap()))
                }
                Ok(v) if v.passed => {}
                Ok(v) => {
                    let bad: Vec<String> = v
                        .lines
                        .iter()
                        .filter(|l| !l.ok)
                        .map(|l| format!("{} (error {:.1e})", l.what, l.error))
                        .collect();
                    failures.push(format!(
                        "{name} (seed {seed}): {}\n{}",
                        bad.join(", "),
                        e.render(Format::Text)
                    ));
                }
                Err(err) => failures.push(format!("{name} (seed {seed}): {}", err.message)),
            }
        }
        let tex = e.render(Format::Latex);
        if let Err(m) = latex_balanced(&tex) {
            failures.push(format!("{name}: LaTeX: {m}\n{tex}"));
        }
        latex.push(tex);
        let html = e.render(Format::Html);
        if let Err(err) = roxmltree::Document::parse(&html) {
            failures.push(format!("{name}: HTML/MathML not well-formed: {err}"));
        }
        let md = e.render(Format::Markdown);
        assert!(md.contains("### "), "{name}: markdown has no headings");
    }
    assert!(
        failures.is_empty(),
        "{} of {count} explanations failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(count >= 150, "only {count} cases explained");
    katex_renders(&latex);
}

/// Render every block with KaTeX (node + tests/katex, installed by scripts/test.sh).
/// Skipped with a message when KaTeX is not installed, unless MATCALC_REQUIRE_KATEX=1.
fn katex_renders(blocks: &[String]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/katex");
    let required = std::env::var("MATCALC_REQUIRE_KATEX").is_ok_and(|v| v == "1");
    if !dir.join("node_modules/katex").exists() {
        assert!(!required, "KaTeX is not installed: run `npm ci` in {}", dir.display());
        eprintln!("skipping the KaTeX check: run `npm ci` in {}", dir.display());
        return;
    }
    let mut child = Command::new("node")
        .arg("check.mjs")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs");
    let input = serde_json::to_string(blocks).unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "KaTeX failed:\n{report}");
    assert!(report.contains(&format!("{0}/{0} rendered", blocks.len())), "{report}");
}

/// The headline example's derivation follows the textbook one step for step.
#[test]
fn headline_matches_the_textbook() {
    let mut p = Problem::new(
        "norm2(sin(W2*cos(W1*x)))^2",
        "W1: matrix(r, 100); W2: matrix(100, r); r: dim in 1..95",
    )
    .unwrap();
    let wrt = vec!["x".to_string()];
    let ds = p.derive(&wrt, 1).unwrap();
    let opts = Options {
        names: ["a", "s", "y", "b", "c", "z"].map(String::from).to_vec(),
    };
    let e = explain(&p, &wrt, 1, &ds, &opts).unwrap();
    let text = e.render(Format::Text);
    // The textbook's cascade and differentials (its names: a, s, y, b, c, z).
    let expected = [
        "a = W1 x",
        "da = W1 dx",
        "s = sin(a)",
        "y = cos(a)",
        "⇒ dy = −s ⊙ da",
        "b = W2 y",
        "db = W2 dy",
        "c = cos(b)",
        "z = sin(b)",
        "⇒ dz = c ⊙ db",
        "f = ‖z‖²",
        "df = 2 z : dz",
        "= 2 z : (c ⊙ db)",
        "= 2 (z ⊙ c) : db",
        "= 2 (z ⊙ c) : W2 dy",
        "= 2 W2ᵀ (z ⊙ c) : dy",
        "= 2 W2ᵀ (z ⊙ c) : (−s ⊙ da)",
        "= −2 (s ⊙ (W2ᵀ (z ⊙ c))) : da",
        "= −2 (s ⊙ (W2ᵀ (z ⊙ c))) : W1 dx",
        "= −2 W1ᵀ (s ⊙ (W2ᵀ (z ⊙ c))) : dx",
        "⇒ ∂f/∂x = −2 W1ᵀ (s ⊙ (W2ᵀ (z ⊙ c)))",
    ];
    let mut at = 0;
    for step in expected {
        match text[at..].find(step) {
            Some(k) => at += k + step.len(),
            None => panic!("missing (in order) `{step}` in\n{text}"),
        }
    }
    for rule in [
        "C : AB = CBᵀ : A = AᵀC : B",
        "A : (B ⊙ C) = (A ⊙ B) : C",
        "d cos(X) = −sin(X) ⊙ dX",
    ] {
        assert!(text.contains(rule), "missing `{rule}` in\n{text}");
    }
    let v = e.verify(7, &[("r".to_string(), 5)]).unwrap();
    assert!(v.passed, "{v:?}");
    // Every equality of the chain was checked: 1 start + 2 per intermediate + the result.
    assert_eq!(
        v.lines.iter().filter(|l| l.what.starts_with("chain")).count(),
        1 + 2 * 4 + 1
    );
}

/// A wrong line is caught: verification is not vacuous.
#[test]
fn a_corrupted_line_fails_verification() {
    let mut p = Problem::new("norm2(sin(W*x))^2", "W: matrix(m, n)").unwrap();
    let wrt = vec!["x".to_string()];
    let ds = p.derive(&wrt, 1).unwrap();
    let mut e = explain(&p, &wrt, 1, &ds, &Options::default()).unwrap();
    assert!(e.verify(3, &[]).unwrap().passed);
    // Drop a factor 2 from the middle of the chain.
    let chain = &mut e.chains[0];
    let k = chain.lines.len() / 2;
    if let matcalc::explain::Differential::Frobenius(pairs) = &mut chain.lines[k].rhs {
        let g0 = pairs[0].0;
        pairs[0].0 = e.graph.scale(0.5, g0);
    } else {
        panic!("a scalar's chain is Frobenius");
    }
    let v = e.verify(3, &[]).unwrap();
    assert!(!v.passed);
    assert!(
        v.lines
            .iter()
            .any(|l| !l.ok && l.what == format!("chain 1, line {}", k + 1)),
        "{v:?}"
    );
}
