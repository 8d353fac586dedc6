//! What only the CLI prints: errors (miette), the `eval` and `check` tables. Derivations
//! (text, LaTeX, JSON) come from the library's `matcalc::report`.

use matcalc::error::{Error, ErrorKind, Origin};
use matcalc::eval::check::CheckReport;
use matcalc::eval::Tensor;
use matcalc::Derivative;
use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};
use std::fmt;

#[derive(Debug)]
struct Diag {
    message: String,
    hint: Option<String>,
    source: NamedSource<String>,
    labels: Vec<LabeledSpan>,
    code: &'static str,
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diag {}

impl Diagnostic for Diag {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.hint.as_ref().map(|h| Box::new(h.clone()) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        if self.labels.is_empty() {
            None
        } else {
            Some(&self.source)
        }
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.labels.clone().into_iter()))
        }
    }
}

fn code(k: ErrorKind) -> &'static str {
    match k {
        ErrorKind::Syntax => "matcalc::syntax",
        ErrorKind::Name => "matcalc::name",
        ErrorKind::Shape => "matcalc::shape",
        ErrorKind::Usage => "matcalc::usage",
        ErrorKind::Value => "matcalc::value",
        ErrorKind::Numeric => "matcalc::numeric",
        ErrorKind::Limit => "matcalc::limit",
    }
}

/// Print an error with its source text underlined (to stderr).
pub fn print_error(e: &Error, expr: &str, decls: &str) {
    let origin = e.labels.first().map(|l| l.origin).unwrap_or_default();
    let (name, text) = match origin {
        Origin::Expr => ("expression", expr),
        Origin::Decls => ("declarations", decls),
    };
    // Long inputs: show a window around the primary span only.
    const WINDOW: usize = 80;
    let (shown, offset) = match e.labels.first() {
        Some(l) if text.len() > 4 * WINDOW => {
            let floor = |mut i: usize| {
                while !text.is_char_boundary(i) {
                    i -= 1;
                }
                i
            };
            let start = floor((l.span.start as usize).saturating_sub(WINDOW).min(text.len()));
            let end = floor(((l.span.start as usize) + WINDOW).min(text.len()));
            let pre = if start > 0 { "…" } else { "" };
            let post = if end < text.len() { "…" } else { "" };
            (
                format!("{pre}{}{post}", &text[start..end]),
                start as isize - pre.len() as isize,
            )
        }
        _ => (text.to_string(), 0),
    };
    let labels: Vec<LabeledSpan> = e
        .labels
        .iter()
        .filter(|l| l.origin == origin)
        .filter_map(|l| {
            let s = l.span.start as isize - offset;
            let t = (l.span.end as isize - offset).min(shown.len() as isize);
            (s >= 0 && s <= t && (t as usize) <= shown.len())
                .then(|| LabeledSpan::new(Some(l.message.clone()), s as usize, (t - s) as usize))
        })
        .collect();
    let d = Diag {
        message: e.message.clone(),
        hint: e.hint.clone(),
        source: NamedSource::new(name, shown),
        labels,
        code: code(e.kind),
    };
    let handler = miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor());
    let mut out = String::new();
    match handler.render_report(&mut out, &d) {
        Ok(()) => eprint!("{out}"),
        Err(_) => eprintln!("error: {e}"),
    }
}

fn fmt_tensor(t: &Tensor) -> String {
    let num = |v: f64| format!("{v:.6}");
    match t.shape() {
        [] => num(t.data()[0]),
        [_] => format!("[{}]", t.data().iter().map(|&v| num(v)).collect::<Vec<_>>().join(", ")),
        [_, c] => {
            let rows: Vec<String> = t
                .data()
                .chunks((*c).max(1))
                .map(|r| format!("  [{}]", r.iter().map(|&v| num(v)).collect::<Vec<_>>().join(", ")))
                .collect();
            format!("[\n{}\n]", rows.join(",\n"))
        }
        _ => matcalc::eval::values::tensor_to_json(t).to_string(),
    }
}

/// `eval` without `--json`.
pub fn value_table(value: &Tensor, derivs: &[(String, Tensor)], ds: &[Derivative]) -> String {
    let mut out = format!("f = {}\n", fmt_tensor(value));
    for ((k, t), d) in derivs.iter().zip(ds) {
        let name = if d.wrt.len() == 1 {
            format!("∂f/∂{k}")
        } else {
            format!(
                "∂^{}f/{}",
                d.wrt.len(),
                d.wrt.iter().map(|w| format!("∂{w}")).collect::<String>()
            )
        };
        out.push_str(&format!("{name} = {}\n", fmt_tensor(t)));
    }
    out
}

/// `check` output.
pub fn check_text(r: &CheckReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<14} {:>5}  {:<24} {:<9} {:>10}\n",
        "derivative", "trial", "dims", "test", "rel. error"
    ));
    for l in &r.lines {
        out.push_str(&format!(
            "{:<14} {:>5}  {:<24} {:<9} {:>10.2e}\n",
            l.what, l.trial, l.dims, l.kind, l.error
        ));
    }
    for w in &r.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out.push_str(&format!(
        "{}: worst relative error {:.2e} (tolerance {:.0e}, {} comparisons)\n",
        if r.passed { "PASS" } else { "FAIL" },
        r.worst,
        r.tolerance,
        r.lines.len()
    ));
    out
}
