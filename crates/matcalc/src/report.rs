//! Reports of a derivation as text: what `matcalc derive` prints (text, LaTeX,
//! JSON) and what the web API returns in its text and LaTeX fields. Front ends
//! call these; they only print the strings.

use crate::ir::{Graph, Id};
use crate::render::print::{Flavour, Style};
use crate::render::{self, Form};
use crate::{Derivative, Problem};

/// Options for [`derive_text`].
#[derive(Clone, Copy, Debug)]
pub struct TextOptions {
    /// Add the `assumed (not declared)` line (text style only).
    pub assumed: bool,
    /// Add a `[layout]` note under each derivative (text style only).
    pub layout: bool,
}

impl Default for TextOptions {
    /// As the CLI prints: with both notes.
    fn default() -> Self {
        TextOptions {
            assumed: true,
            layout: true,
        }
    }
}

/// The dimension names of a node's shape.
pub fn shape_list(g: &Graph, id: Id) -> Vec<String> {
    g.shape(id).iter().map(|&d| g.dim_name(d)).collect()
}

/// What kind of derivative (`gradient`, `jacobian`, `hessian`, `mixed`,
/// `tensor`), and its layout in words.
pub fn layout(p: &Problem, d: &Derivative) -> (String, String) {
    let g = &p.graph;
    let fo = g.order(p.root);
    let x = &d.wrt[0];
    let xv = g.var_index(x).map(|i| &g.vars[i]);
    let xo = xv.map_or(0, |v| v.shape.len());
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
            let sym = if xv.is_some_and(|v| v.symmetric) {
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

/// The derivation in text or LaTeX: `f = …`, the `where` lines of the form,
/// one line per derivative (LaTeX: an `aligned` environment).
pub fn derive_text(p: &Problem, ds: &[Derivative], form: Form, style: &Style, opts: &TextOptions) -> String {
    let g = &p.graph;
    let reserved = p.reserved_names();
    let mut out = String::new();
    let f = render::recover(g, &[p.root], Form::Nested, None, &reserved);
    let (_, fl) = f.lines(style);
    let ids: Vec<_> = ds.iter().map(|d| d.id).collect();
    let r = render::recover(g, &ids, form, Some(p.root), &reserved);
    let (defs, results) = r.lines(style);
    if style.flavour == Flavour::Latex {
        out.push_str("\\begin{aligned}\n");
        out.push_str(&format!("f &= {} \\\\\n", fl[0]));
        for d in &defs {
            let (l, rhs) = d.split_once(" = ").unwrap_or((d, ""));
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
    if opts.assumed && !p.assumed.is_empty() {
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
            Some(line) => {
                out.push_str(&format!("{line}\n"));
                if let Some(k) = render::kron::kronecker(&p.graph, d.id, p.graph.order(p.root), style) {
                    let of = |w: &str| match p.graph.var_index(w).map(|v| p.graph.vars[v].shape.len()) {
                        Some(2) => format!("vec({w})"),
                        _ => w.to_string(),
                    };
                    let f = if p.graph.order(p.root) == 2 { "vec(f)" } else { "f" };
                    let x = d.wrt.iter().map(|w| of(w)).collect::<Vec<_>>().join(", ");
                    out.push_str(&format!("  in vec form: ∂{f}/∂{x} = {k}   (vec stacks columns)\n"));
                }
            }
            None => out.push_str(&format!("{} = {res}\n", d.label(style))),
        }
        if opts.layout {
            out.push_str(&format!("  [{}]\n", layout(p, d).1));
        }
    }
    out
}

/// `derive --format json`: the function, variables, dimensions and every
/// derivative in the input language, text and LaTeX, nested, cascade and Diag.
pub fn derive_json(p: &Problem, ds: &[Derivative]) -> String {
    let g = &p.graph;
    let reserved = p.reserved_names();
    let one = |id, form| render::recover(g, &[id], form, Some(p.root), &reserved);
    let f = render::recover(g, &[p.root], Form::Nested, None, &reserved);
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
            let expr = if nested.results[0].has_index() {
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
