//! Everything the CLI prints: errors (miette), derivations, tables, JSON.

use matcalc::error::{Error, ErrorKind, Origin};
use matcalc::eval::check::CheckReport;
use matcalc::eval::Tensor;
use matcalc::ir::Graph;
use matcalc::render::mexpr::M;
use matcalc::render::print::{Flavour, Style};
use matcalc::render::{self, Form};
use matcalc::{Derivative, Problem};
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

/// Whether a rendered result contains index notation (a tensor with no matrix form).
pub fn has_index(m: &M) -> bool {
    match m {
        M::Index(_) => true,
        M::Add(v) | M::Prod(v) | M::Had(v) | M::Call(_, v) => v.iter().any(has_index),
        M::Div(a, b) => has_index(a) || has_index(b),
        M::T(a) | M::Pow(a, _) | M::Scalar(a) => has_index(a),
        _ => false,
    }
}

fn shape_list(g: &Graph, id: matcalc::ir::Id) -> Vec<String> {
    g.shape(id).iter().map(|&d| g.dim_name(d)).collect()
}

/// What kind of derivative, and its layout, in words.
pub fn layout(p: &Problem, d: &Derivative) -> (String, String) {
    let g = &p.graph;
    let fo = g.order(p.root);
    let x = &d.wrt[0];
    let xo = g.vars[g.var_index(x).unwrap()].shape.len();
    let shape = g.shape_name(g.shape(d.id));
    if d.wrt.len() == 2 {
        let y = &d.wrt[1];
        if d.wrt[0] == d.wrt[1] {
            return ("hessian".into(), format!("Hessian: H[i,j] = ∂²f/∂{x}ᵢ∂{x}ⱼ ({shape})"));
        }
        return (
            "mixed".into(),
            format!("mixed second derivative: H[i,j] = ∂²f/∂{x}ᵢ∂{y}ⱼ ({shape})"),
        );
    }
    if d.wrt.len() > 2 {
        return (
            "tensor".into(),
            format!("derivative of order {}: output axes first ({shape})", d.wrt.len()),
        );
    }
    match (fo, xo) {
        (0, _) => {
            let sym = if g.vars[g.var_index(x).unwrap()].symmetric {
                "; symmetric variable: the gradient restricted to symmetric matrices, (G + Gᵀ)/2"
            } else {
                ""
            };
            ("gradient".into(), format!("gradient: same shape as {x} ({shape}){sym}"))
        }
        (1, 0 | 1) => ("jacobian".into(), format!("Jacobian: J[i,j] = ∂fᵢ/∂{x}ⱼ ({shape})")),
        _ => (
            "tensor".into(),
            format!("tensor: ∂f[output axes]/∂{x}[axes], output axes first ({shape})"),
        ),
    }
}

/// `derive` output in text or LaTeX.
pub fn derive_text(p: &Problem, ds: &[Derivative], form: Form, style: &Style, reserved: &[String]) -> String {
    let g = &p.graph;
    let latex = style.flavour == Flavour::Latex;
    let mut out = String::new();
    let f = render::recover(g, &[p.root], Form::Nested, None, reserved);
    let (_, fl) = f.lines(style);
    let ids: Vec<_> = ds.iter().map(|d| d.id).collect();
    let r = render::recover(g, &ids, form, Some(p.root), reserved);
    let (defs, results) = r.lines(style);
    if latex {
        out.push_str("\\begin{aligned}\n");
        out.push_str(&format!("f &= {} \\\\\n", fl[0]));
        for d in &defs {
            let (l, rhs) = d.split_once(" = ").unwrap();
            out.push_str(&format!("{l} &= {rhs} \\\\\n"));
        }
        for (k, (d, res)) in ds.iter().zip(&results).enumerate() {
            let end = if k + 1 == ds.len() { "" } else { " \\\\" };
            out.push_str(&format!("{} &= {res}{end}\n", d.label(style)));
        }
        out.push_str("\\end{aligned}\n");
        return out;
    }
    out.push_str(&format!("f = {}\n", fl[0]));
    if !p.assumed.is_empty() {
        out.push_str(&format!("assumed (not declared): {}\n", p.assumed.join("; ")));
    }
    if !defs.is_empty() {
        out.push_str("where\n");
        for d in &defs {
            out.push_str(&format!("  {d}\n"));
        }
    }
    for (d, res) in ds.iter().zip(&results) {
        match p.tensor_line(d, res) {
            Some(line) => out.push_str(&format!("{line}\n")),
            None => out.push_str(&format!("{} = {res}\n", d.label(style))),
        }
        out.push_str(&format!("  [{}]\n", layout(p, d).1));
    }
    out
}

/// `derive --format json`.
pub fn derive_json(p: &Problem, ds: &[Derivative], reserved: &[String]) -> String {
    let g = &p.graph;
    let one = |id, form| render::recover(g, &[id], form, Some(p.root), reserved);
    let f = render::recover(g, &[p.root], Form::Nested, None, reserved);
    let fj = serde_json::json!({
        "expr": f.lines(&Style::EXPR).1[0],
        "text": f.lines(&Style::TEXT).1[0],
        "latex": f.lines(&Style::LATEX).1[0],
        "shape": shape_list(g, p.root),
    });
    let vars: serde_json::Map<String, serde_json::Value> = g
        .vars
        .iter()
        .map(|v| (v.name.clone(), serde_json::json!({"shape": v.shape.iter().map(|&d| g.dim_name(d)).collect::<Vec<_>>(), "symmetric": v.symmetric})))
        .collect();
    let derivs: Vec<serde_json::Value> = ds
        .iter()
        .map(|d| {
            let nested = one(d.id, Form::Nested);
            let forms = |form| {
                let r = one(d.id, form);
                let (defs, res) = r.lines(&Style::TEXT);
                let (ldefs, lres) = r.lines(&Style::LATEX);
                serde_json::json!({"definitions": defs, "result": res[0], "latex_definitions": ldefs, "latex": lres[0]})
            };
            let (kind, lay) = layout(p, d);
            let expr = if has_index(&nested.results[0]) {
                serde_json::Value::Null
            } else {
                nested.lines(&Style::EXPR).1[0].clone().into()
            };
            serde_json::json!({
                "wrt": d.wrt,
                "kind": kind,
                "layout": lay,
                "shape": shape_list(g, d.id),
                "expr": expr,
                "text": nested.lines(&Style::TEXT).1[0],
                "latex": nested.lines(&Style::LATEX).1[0],
                "cascade": forms(Form::Cascade),
                "diag": forms(Form::Diag),
            })
        })
        .collect();
    let dims: Vec<serde_json::Value> = g
        .dims
        .iter()
        .map(|d| serde_json::json!({"name": d.name, "range": d.range, "assumed": d.assumed}))
        .collect();
    serde_json::json!({"function": fj, "variables": vars, "dims": dims, "assumed": p.assumed, "derivatives": derivs})
        .to_string()
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
pub fn value_table(value: &Tensor, keys: &[String], derivs: &[Tensor], ds: &[Derivative]) -> String {
    let mut out = format!("f = {}\n", fmt_tensor(value));
    for ((k, t), d) in keys.iter().zip(derivs).zip(ds) {
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
