//! Printing an explanation as Unicode text, LaTeX (one `aligned` block) or Markdown.

use super::rules::{differential_symbol, Identity, Rule, DIFF_MARK};
use super::{frobenius_sum, scaled_elementwise, Differential, Explanation, Line, Reason};
use crate::ir::{Id, Node};
use crate::render::mexpr::{self, Recover, M};
use crate::render::print::{self, Flavour, Style};
use crate::render::{self, Form};

/// Output formats of an explanation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Unicode text.
    Text,
    /// LaTeX: one `aligned` block (KaTeX and LaTeX).
    Latex,
    /// Markdown with `$…$` math.
    Markdown,
    /// An HTML table, one row per line, each formula a MathML `<math>` element
    /// (browsers render MathML natively; the table aligns the columns).
    Html,
}

/// One printed row: the left side (`a`, `df`, or empty for `=` continuations),
/// the right side, and the note.
struct Row {
    lhs: String,
    rhs: String,
    note: String,
}

struct Printer<'e> {
    e: &'e Explanation,
    r: Recover<'e>,
    style: Style,
}

impl<'e> Printer<'e> {
    fn new(e: &'e Explanation, style: Style) -> Self {
        let mut r = Recover::new(&e.graph);
        for it in &e.intermediates {
            r.names.insert(it.node, it.name.clone());
            for (n, id) in &it.factors {
                r.names.insert(*id, n.clone());
            }
        }
        Printer { e, r, style }
    }

    fn m(&mut self, id: Id) -> M {
        self.r.convert(id)
    }

    fn expr(&mut self, id: Id) -> String {
        let m = self.m(id);
        self.print_m(&m)
    }

    fn print_m(&self, m: &M) -> String {
        print::print(m, &self.style)
    }

    fn latex(&self) -> bool {
        self.style.flavour == Flavour::Latex
    }

    fn differential(&mut self, d: &Differential) -> String {
        match d {
            Differential::Frobenius(pairs) => {
                let parts: Vec<(M, M)> = pairs.iter().map(|&(g, dv)| (self.m(g), self.m(dv))).collect();
                frobenius_sum(&parts, &self.style)
            }
            Differential::Linear(e) => self.expr(*e),
            Differential::Applied(pairs, _) => {
                let terms: Vec<M> = pairs
                    .iter()
                    .map(|&(j, dx)| mexpr::prod(self.m(j), self.m(dx)))
                    .collect();
                let m = if terms.len() == 1 {
                    terms[0].clone()
                } else {
                    M::Add(terms)
                };
                self.print_m(&m)
            }
        }
    }

    fn text(&self, s: &str) -> String {
        if self.latex() {
            format!("\\text{{{s}}}")
        } else {
            s.to_string()
        }
    }

    fn reason(&mut self, r: &Reason) -> String {
        match r {
            Reason::Start(rules) => rules.iter().map(|r| r.name()).collect::<Vec<_>>().join(", "),
            Reason::Substitute(n) => {
                let dn = print::print(&M::Name(format!("{DIFF_MARK}{n}")), &self.style);
                if self.latex() {
                    format!("substitute ${dn}$")
                } else {
                    format!("substitute {dn}")
                }
            }
            Reason::Move(ids) => {
                let f: Vec<String> = ids.iter().map(|i| i.formula(&self.style)).collect();
                if self.latex() {
                    format!(
                        "by {}",
                        f.iter().map(|s| format!("${s}$")).collect::<Vec<_>>().join(", ")
                    )
                } else {
                    format!("by {}", f.join(", "))
                }
            }
            Reason::Collect => "collect like terms".into(),
            Reason::Symmetric if self.latex() => {
                "the variable is symmetric: $G \\mathbin{:} \\mathrm{d}X = \\tfrac12(G + G^\\top) \\mathbin{:} \\mathrm{d}X$".into()
            }
            Reason::Symmetric => "the variable is symmetric: G : dX = ½(G + Gᵀ) : dX".into(),
            Reason::Simplify => "simplified".into(),
            Reason::Apply => "as a derivative applied to the differential".into(),
        }
    }

    /// A note, as it goes in the output (`\text{…}` in LaTeX, math kept as math).
    fn note(&self, s: &str) -> String {
        if s.is_empty() {
            return String::new();
        }
        if self.latex() {
            // `$…$` marks math inside a note.
            let mut out = String::new();
            for (k, part) in s.split('$').enumerate() {
                if k % 2 == 1 {
                    out.push_str(part);
                } else if !part.is_empty() {
                    out.push_str(&format!("\\text{{{}}}", escape_text(part)));
                }
            }
            out
        } else {
            s.to_string()
        }
    }

    fn d_of(&mut self, k: usize) -> String {
        let d = differential_symbol(&self.style);
        let c = &self.e.chains[k];
        match &c.of_derivative {
            None => {
                if self.latex() {
                    format!("{d} f")
                } else {
                    format!("{d}f")
                }
            }
            Some(dv) => {
                let l = dv.label(&self.style);
                if self.latex() {
                    format!("{d}\\left({l}\\right)")
                } else {
                    format!("{d}({l})")
                }
            }
        }
    }

    fn chain_rows(&mut self, k: usize) -> Vec<Row> {
        let mut rows = Vec::new();
        let lhs = self.d_of(k);
        let lines: Vec<Line> = self.e.chains[k].lines.clone();
        for (i, line) in lines.iter().enumerate() {
            let rhs = self.differential(&line.rhs);
            // A step that changes nothing visible (a rule with no effect on the notation) is not shown.
            if rows.last().is_some_and(|r: &Row| r.rhs == rhs) {
                continue;
            }
            let reason = self.reason(&line.reason);
            rows.push(Row {
                lhs: if i == 0 { lhs.clone() } else { String::new() },
                rhs,
                note: reason,
            });
        }
        rows
    }

    fn results(&mut self, k: usize) -> Vec<String> {
        let results = self.e.chains[k].results.clone();
        results
            .iter()
            .map(|d| {
                let label = d.label(&self.style);
                let m = self.m(d.id);
                match m {
                    M::Index(s) => format!("{label}: {}", self.print_m(&M::Index(s))),
                    m => format!("{label} = {}", self.print_m(&m)),
                }
            })
            .collect()
    }

    fn rules_used(&self) -> Vec<Rule> {
        let mut out: Vec<Rule> = Vec::new();
        for it in &self.e.intermediates {
            for r in &it.rules {
                if !out.contains(r) {
                    out.push(*r);
                }
            }
        }
        for c in &self.e.chains {
            for l in &c.lines {
                if let Reason::Start(rs) = &l.reason {
                    for r in rs {
                        if !out.contains(r) {
                            out.push(*r);
                        }
                    }
                }
            }
        }
        out
    }

    fn identities_used(&self) -> Vec<Identity> {
        let mut out: Vec<Identity> = Vec::new();
        for c in &self.e.chains {
            for l in &c.lines {
                if let Reason::Move(ids) = &l.reason {
                    for i in ids {
                        if !out.contains(i) {
                            out.push(*i);
                        }
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// The intermediates: (definition row, differential row, factor definitions).
    fn intermediate_rows(&mut self) -> Vec<(String, String, String, String)> {
        let its = self.e.intermediates.clone();
        its.iter()
            .map(|it| {
                let name = self.print_m(&M::Name(it.name.clone()));
                let def = self.r.convert_def(it.node);
                let def = self.print_m(&def);
                let dname = self.print_m(&M::Name(format!("{DIFF_MARK}{}", it.name)));
                let diff = self.differential(&it.differential);
                let mut defs = Vec::new();
                for (n, id) in &it.factors {
                    let def = self.r.convert_def(*id);
                    defs.push(format!(
                        "{} = {}",
                        self.print_m(&M::Name(n.clone())),
                        self.print_m(&def)
                    ));
                }
                defs.push(format!("{name} = {def}"));
                let rules: Vec<String> = it.rules.iter().map(|r| r.name()).collect();
                let sep = if self.latex() { ",\\quad " } else { ", " };
                (defs.join(sep), dname, diff, rules.join(", "))
            })
            .collect()
    }

    fn final_forms(&mut self) -> Vec<String> {
        let e = self.e;
        let ids: Vec<Id> = e.derivatives.iter().map(|d| d.id).collect();
        let mut out = Vec::new();
        let primal = Some(e.root);
        if render::expanded_size(&e.graph, &ids) <= 20_000 {
            let r = render::recover(&e.graph, &ids, Form::Nested, primal, &e.reserved);
            for (d, m) in e.derivatives.iter().zip(&r.results) {
                if !matches!(m, M::Index(_)) {
                    out.push(format!("{} = {}", d.label(&self.style), self.print_m(m)));
                }
            }
        }
        // The Diag form, in the derivation's own names.
        let mut r = Recover::new(&e.graph);
        r.names = self.r.names.clone();
        r.diag_form = true;
        r.primal = e.graph.topo_order(&[e.root]).into_iter().collect();
        let res: Vec<M> = ids.iter().map(|&id| r.convert(id)).collect();
        if !r.diag_defs.is_empty() && res.iter().all(|m| !matches!(m, M::Index(_))) {
            let defs: Vec<String> = r
                .diag_defs
                .iter()
                .map(|(cap, v)| {
                    let (cap, v) = (self.print_m(&M::Name(cap.clone())), self.print_m(&M::Name(v.clone())));
                    if self.latex() {
                        format!("{cap} = \\operatorname{{Diag}}({v})")
                    } else {
                        format!("{cap} = Diag({v})")
                    }
                })
                .collect();
            let sep = if self.latex() { ",\\quad " } else { ", " };
            for (d, m) in e.derivatives.iter().zip(&res) {
                out.push(format!(
                    "{} = {}  where {}",
                    d.label(&self.style),
                    self.print_m(m),
                    defs.join(sep)
                ));
            }
        }
        out
    }
}

fn escape_text(s: &str) -> String {
    s.replace('\\', "\\textbackslash ")
        .replace('{', "\\{")
        .replace('}', "\\}")
        .replace('_', "\\_")
        .replace('&', "\\&")
        .replace('#', "\\#")
        .replace('%', "\\%")
        .replace('^', "\\^{}")
        .replace('½', "1/2")
        .replace('ᵀ', "^T")
}

impl Explanation {
    /// The derivation in a format.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => self.render_text(),
            Format::Latex => self.render_latex(),
            Format::Markdown => self.render_markdown(),
            Format::Html => self.render_html(),
        }
    }

    fn render_text(&self) -> String {
        let mut p = Printer::new(self, Style::TEXT);
        let mut out = String::new();
        out.push_str("Notation\n");
        out.push_str("  A ⊙ B   Hadamard (elementwise) product\n");
        out.push_str("  A : B   Frobenius product, A : B = tr(AᵀB) = Σᵢⱼ AᵢⱼBᵢⱼ\n");
        let ids = p.identities_used();
        if !ids.is_empty() {
            out.push_str("  identities used:\n");
            for i in ids {
                out.push_str(&format!("    {}\n", i.formula(&p.style)));
            }
        }
        let rules = p.rules_used();
        if !rules.is_empty() {
            out.push_str("  rules used:\n");
            for r in rules {
                out.push_str(&format!("    {}: {}\n", r.name(), r.formula(&p.style)));
            }
        }
        let its = p.intermediate_rows();
        if !its.is_empty() {
            out.push_str("\nIntermediates and their differentials\n");
            let w1 = its.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
            let w2 = its
                .iter()
                .map(|r| r.1.chars().count() + r.2.chars().count() + 5)
                .max()
                .unwrap_or(0)
                .min(60);
            for (def, dn, rhs, rules) in &its {
                let d = format!("⇒ {dn} = {rhs}");
                out.push_str(&format!("  {def:<w1$}   {d:<w2$}   ({rules})\n"));
            }
        }
        for k in 0..self.chains.len() {
            let scalar = self.graph.order(self.chains[k].of) == 0;
            out.push('\n');
            out.push_str(match (k, scalar) {
                (0, true) => "The differential, back-substituted\n",
                (0, false) => "The differential, substituted forward\n",
                (_, _) => "The differential of the derivative, substituted forward\n",
            });
            if k == 0 {
                let f = p.expr(self.root);
                out.push_str(&format!("  f = {f}\n"));
            }
            let rows = p.chain_rows(k);
            let wl = rows.iter().map(|r| r.lhs.chars().count()).max().unwrap_or(0);
            let wr = rows.iter().map(|r| r.rhs.chars().count()).max().unwrap_or(0).min(70);
            for r in rows {
                let rhs = format!("{} {}", "=", r.rhs);
                out.push_str(&format!("  {:<wl$} {rhs:<w$}   ({})\n", r.lhs, r.note, w = wr + 2));
            }
            for res in p.results(k) {
                out.push_str(&format!("  ⇒ {res}\n"));
            }
        }
        let forms = p.final_forms();
        if !forms.is_empty() {
            out.push_str("\nIn the original variables\n");
            for f in forms {
                out.push_str(&format!("  {f}\n"));
            }
        }
        out
    }

    fn latex_rows(&self) -> Vec<String> {
        let mut p = Printer::new(self, Style::LATEX);
        let mut rows = Vec::new();
        let t = |p: &Printer, s: &str| p.text(s);
        rows.push(format!(
            "&{} A \\odot B {},\\quad A \\mathbin{{:}} B = \\operatorname{{tr}}(A^\\top B) {}",
            t(&p, "Notation: "),
            t(&p, " Hadamard product"),
            t(&p, " Frobenius product")
        ));
        for i in p.identities_used() {
            rows.push(format!("&\\quad {}", i.formula(&p.style)));
        }
        for r in p.rules_used() {
            rows.push(format!(
                "&\\quad {}\\ {}",
                t(&p, &format!("{}:", r.name())),
                r.formula(&p.style)
            ));
        }
        let its = p.intermediate_rows();
        if !its.is_empty() {
            rows.push(format!("&{}", t(&p, "Intermediates and their differentials:")));
            for (def, dn, rhs, rules) in its {
                rows.push(format!(
                    "&{def} &&\\Rightarrow {dn} = {rhs} && {}",
                    p.text(&format!("({rules})"))
                ));
            }
        }
        for k in 0..self.chains.len() {
            let head = if self.graph.order(self.chains[k].of) == 0 {
                "The differential, back-substituted:"
            } else {
                "The differential, substituted forward:"
            };
            rows.push(format!("&{}", t(&p, head)));
            if k == 0 {
                let f = p.expr(self.root);
                rows.push(format!("f &= {f}"));
            }
            for r in p.chain_rows(k) {
                let note = p.note(&r.note);
                rows.push(format!("{} &= {} && {}", r.lhs, r.rhs, note));
            }
            for res in p.results(k) {
                rows.push(format!("&\\Rightarrow {res}"));
            }
        }
        rows
    }

    fn render_latex(&self) -> String {
        let rows = self.latex_rows();
        format!("\\begin{{aligned}}\n{}\n\\end{{aligned}}\n", rows.join(" \\\\\n"))
    }

    fn render_markdown(&self) -> String {
        let mut p = Printer::new(self, Style::LATEX);
        let mut out = String::new();
        out.push_str("### Notation\n\n");
        out.push_str("- $A \\odot B$: Hadamard (elementwise) product\n");
        out.push_str("- $A \\mathbin{:} B = \\operatorname{tr}(A^\\top B)$: Frobenius product\n");
        for i in p.identities_used() {
            out.push_str(&format!("- identity: ${}$\n", i.formula(&p.style)));
        }
        for r in p.rules_used() {
            out.push_str(&format!("- {}: ${}$\n", r.name(), r.formula(&p.style)));
        }
        let its = p.intermediate_rows();
        if !its.is_empty() {
            out.push_str("\n### Intermediates and their differentials\n\n");
            for (def, dn, rhs, rules) in its {
                out.push_str(&format!("- ${def} \\;\\Rightarrow\\; {dn} = {rhs}$ ({rules})\n"));
            }
        }
        for k in 0..self.chains.len() {
            out.push_str("\n### The differential\n\n$$\n\\begin{aligned}\n");
            let mut rows = Vec::new();
            if k == 0 {
                rows.push(format!("f &= {}", p.expr(self.root)));
            }
            for r in p.chain_rows(k) {
                let note = p.note(&r.note);
                rows.push(format!("{} &= {} && {}", r.lhs, r.rhs, note));
            }
            out.push_str(&rows.join(" \\\\\n"));
            out.push_str("\n\\end{aligned}\n$$\n\n");
            for res in p.results(k) {
                out.push_str(&format!("$$\\Rightarrow {res}$$\n"));
            }
        }
        out
    }

    fn render_html(&self) -> String {
        use crate::render::mathml as ml;
        let mut p = Printer::new(self, Style::TEXT);
        let mut rows = Vec::new();
        let math = |m: String| {
            if m.is_empty() {
                m
            } else {
                format!("<math xmlns=\"http://www.w3.org/1998/Math/MathML\">{m}</math>")
            }
        };
        let three = |a: String, b: String, note: &str| {
            format!(
                "<tr><td class=\"lhs\">{}</td><td class=\"rhs\">{}</td><td class=\"why\">{}</td></tr>",
                math(a),
                math(b),
                ml::escape(note)
            )
        };
        let heading = |t: &str| format!("<tr><th colspan=\"3\">{}</th></tr>", ml::escape(t));
        let its = self.intermediates.clone();
        if !its.is_empty() {
            rows.push(heading("Intermediates and their differentials"));
        }
        for it in &its {
            let mut defs = Vec::new();
            for (n, id) in &it.factors {
                let d = p.r.convert_def(*id);
                defs.push(ml::mrow(&[ml::name(n), ml::mo("="), ml::expr(&d)]));
            }
            let d = p.r.convert_def(it.node);
            defs.push(ml::mrow(&[ml::name(&it.name), ml::mo("="), ml::expr(&d)]));
            let mut parts = Vec::new();
            for (k, d) in defs.into_iter().enumerate() {
                if k > 0 {
                    parts.push(ml::mo(","));
                }
                parts.push(d);
            }
            let lhs = ml::mrow(&parts);
            let dn = ml::name(&format!("{DIFF_MARK}{}", it.name));
            let rhs = ml::mrow(&[
                ml::mo("⇒"),
                dn,
                ml::mo("="),
                self.mathml_differential(&mut p, &it.differential),
            ]);
            let rules: Vec<String> = it.rules.iter().map(|r| r.name()).collect();
            rows.push(three(lhs, rhs, &rules.join(", ")));
        }
        for k in 0..self.chains.len() {
            rows.push(heading(if self.graph.order(self.chains[k].of) == 0 {
                "The differential, back-substituted"
            } else {
                "The differential, substituted forward"
            }));
            if k == 0 {
                let f = p.m(self.root);
                rows.push(three(ml::name("f"), ml::mrow(&[ml::mo("="), ml::expr(&f)]), ""));
            }
            let lines = self.chains[k].lines.clone();
            let mut last = String::new();
            for (i, line) in lines.iter().enumerate() {
                let rhs = self.mathml_differential(&mut p, &line.rhs);
                if rhs == last {
                    continue;
                }
                last = rhs.clone();
                let lhs = if i == 0 {
                    match &self.chains[k].of_derivative {
                        None => ml::mrow(&[ml::mi_upright("d"), ml::name("f")]),
                        Some(dv) => ml::mrow(&[ml::mi_upright("d"), ml::fenced("(", ml::label(dv, None), ")")]),
                    }
                } else {
                    String::new()
                };
                let note = p.reason(&line.reason);
                rows.push(three(lhs, ml::mrow(&[ml::mo("="), rhs]), &note));
            }
            for d in self.chains[k].results.clone() {
                let m = p.m(d.id);
                let body = match &m {
                    M::Index(s) => ml::mtext(s),
                    m => ml::expr(m),
                };
                rows.push(three(
                    String::new(),
                    ml::mrow(&[ml::mo("⇒"), ml::label(&d, None), ml::mo("="), body]),
                    "",
                ));
            }
        }
        format!("<table class=\"derivation\">{}</table>", rows.concat())
    }

    fn mathml_differential(&self, p: &mut Printer, d: &Differential) -> String {
        use crate::render::mathml as ml;
        let wrap = |m: &M| {
            let s = ml::expr(m);
            let compound = super::rhs_grouped(m);
            if compound {
                ml::fenced("(", s, ")")
            } else {
                s
            }
        };
        match d {
            Differential::Frobenius(pairs) if pairs.is_empty() => ml::expr(&M::Num(0.0)),
            Differential::Frobenius(pairs) => {
                let mut parts = Vec::new();
                for (k, &(g, dv)) in pairs.iter().enumerate() {
                    if k > 0 {
                        parts.push(ml::mo("+"));
                    }
                    let (gm, dm) = (p.m(g), p.m(dv));
                    // 2 (k ⊙ h) : dg
                    let gs = if let Some((c, rest)) = scaled_elementwise(&gm) {
                        ml::mrow(&[ml::expr(c), ml::fenced("(", ml::expr(rest), ")")])
                    } else if matches!(gm, M::Add(_) | M::Had(_)) {
                        ml::fenced("(", ml::expr(&gm), ")")
                    } else {
                        ml::expr(&gm)
                    };
                    parts.push(gs);
                    parts.push(ml::mo(":"));
                    parts.push(wrap(&dm));
                }
                ml::mrow(&parts)
            }
            Differential::Linear(e) => {
                let m = p.m(*e);
                ml::expr(&m)
            }
            Differential::Applied(pairs, _) => {
                let terms: Vec<M> = pairs.iter().map(|&(j, dx)| mexpr::prod(p.m(j), p.m(dx))).collect();
                let m = if terms.len() == 1 {
                    terms[0].clone()
                } else {
                    M::Add(terms)
                };
                ml::expr(&m)
            }
        }
    }

    /// The names of the intermediates, in order (for tests and front ends).
    pub fn names(&self) -> Vec<String> {
        self.intermediates.iter().map(|i| i.name.clone()).collect()
    }

    /// Whether a node is one of the differential placeholders.
    pub fn is_placeholder(&self, id: Id) -> bool {
        matches!(self.graph.node(id), Node::Var(i) if self.graph.vars[*i as usize].name.starts_with(DIFF_MARK))
    }
}
