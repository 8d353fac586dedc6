//! Every golden case (`tests/cases/*.mc`) through the web API: `api::derive`
//! answers, its text agrees with the case's expected `text` section, and every
//! piece of MathML it returns (function, each form's display, definitions,
//! results, labels) is well-formed MathML.

use matcalc::api::{self, DeriveRequest, Formula, ProblemInput};
use std::path::PathBuf;

struct Case {
    name: String,
    expr: String,
    decls: String,
    wrt: Vec<String>,
    order: usize,
    text: String,
}

fn cases() -> Vec<Case> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/cases");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mc"))
        .collect();
    files.sort();
    files.iter().map(|p| read_case(p)).collect()
}

fn read_case(path: &PathBuf) -> Case {
    let text = std::fs::read_to_string(path).unwrap();
    let (header, body) = text.split_once("\n--- ").unwrap_or((&text, ""));
    let mut c = Case {
        name: path.file_name().unwrap().to_string_lossy().into(),
        expr: String::new(),
        decls: String::new(),
        wrt: Vec::new(),
        order: 1,
        text: String::new(),
    };
    let mut decls = Vec::new();
    for line in header.lines() {
        match line.split_once(':').map(|(k, v)| (k.trim(), v.trim())) {
            Some(("expr", v)) => c.expr = v.into(),
            Some(("decl", v)) => decls.push(v.to_string()),
            Some(("wrt", v)) => c.wrt.extend(v.split(',').map(|w| w.trim().to_string())),
            Some(("order", v)) => c.order = v.parse().unwrap(),
            _ => {}
        }
    }
    c.decls = decls.join("; ");
    let sections = format!("--- {body}");
    if let Some(t) = sections
        .split("\n--- ")
        .chain(std::iter::once(""))
        .find_map(|s| s.trim_start_matches("--- ").strip_prefix("text\n").map(str::to_string))
    {
        c.text = t;
    }
    c
}

fn well_formed(what: &str, s: &str) {
    let doc = roxmltree::Document::parse(s).unwrap_or_else(|e| panic!("{what}: not well-formed ({e}): {s}"));
    assert_eq!(doc.root_element().tag_name().name(), "math", "{what}");
}

fn formula(what: &str, f: &Formula) {
    well_formed(what, &f.mathml);
    assert!(!f.text.is_empty() && !f.latex.is_empty(), "{what}");
}

#[test]
fn every_case_through_the_api() {
    let cases = cases();
    assert!(cases.len() > 100, "found only {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let req = DeriveRequest {
            input: ProblemInput {
                expr: c.expr.clone(),
                decls: c.decls.clone(),
                latex: false,
            },
            wrt: c.wrt.clone(),
            order: c.order,
            form: api::FormName::Nested,
            code: false,
        };
        let r = match api::derive(&req) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: {e:?}", c.name));
                continue;
            }
        };
        formula(&c.name, &r.parsed.function.formula);
        let forms = [
            ("nested", r.forms.nested.as_ref()),
            ("cascade", Some(&r.forms.cascade)),
            ("diag", Some(&r.forms.diag)),
        ];
        for (name, block) in forms {
            let Some(b) = block else { continue };
            let what = format!("{} {name}", c.name);
            well_formed(&what, &b.mathml);
            b.results.iter().for_each(|f| formula(&what, f));
            b.definitions.iter().for_each(|d| formula(&what, &d.formula));
        }
        for d in &r.derivatives {
            well_formed(&c.name, &format!("<math>{}</math>", d.label.mathml));
        }
        // The API's nested text is the CLI's, less the `assumed` line, which the API
        // returns on its own.
        if let Some(nested) = &r.forms.nested {
            let expected: String = c
                .text
                .lines()
                .filter(|l| !l.starts_with("assumed (not declared)"))
                .map(|l| format!("{l}\n"))
                .collect();
            if nested.text.trim_end() != expected.trim_end() {
                failures.push(format!(
                    "{}: text differs:\n{}\n--- expected\n{}",
                    c.name, nested.text, expected
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
