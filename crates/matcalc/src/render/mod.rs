//! Rendering: matrix-notation recovery ([`mexpr`]) and printers ([`print`]), in
//! nested, cascade and Diag forms.

pub mod kron;
pub mod mathml;
pub mod mexpr;
pub mod print;

use crate::ir::{Graph, Id, Node};
use mexpr::{Recover, M};
use print::Style;
use rustc_hash::FxHashMap;

/// How much of the result is named.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Form {
    /// One expression.
    #[default]
    Nested,
    /// Named intermediates, like a textbook: `a = W1 x, s = sin(a), …`.
    Cascade,
    /// The cascade with Hadamard scalings written as `Diag` matrices.
    Diag,
}

/// A rendered result in matrix notation.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// Named intermediates in dependency order: `name = definition`.
    pub definitions: Vec<(String, M)>,
    /// Diag matrices used: (capital name, vector name).
    pub diag_defs: Vec<(String, String)>,
    /// One expression per root.
    pub results: Vec<M>,
}

impl Rendered {
    /// Print the intermediates and the results in a style.
    pub fn lines(&self, style: &Style) -> (Vec<String>, Vec<String>) {
        let mut defs: Vec<String> = self
            .definitions
            .iter()
            .map(|(n, m)| format!("{} = {}", name(n, style), print::print(m, style)))
            .collect();
        for (cap, v) in &self.diag_defs {
            let d = match style.flavour {
                print::Flavour::Latex => format!("{} = \\operatorname{{Diag}}({})", name(cap, style), name(v, style)),
                _ => format!("{cap} = Diag({v})"),
            };
            defs.push(d);
        }
        (defs, self.results.iter().map(|m| print::print(m, style)).collect())
    }
}

fn name(n: &str, style: &Style) -> String {
    print::print(&M::Name(n.to_string()), style)
}

/// Whether a node is worth a name of its own in the cascade.
fn nameable(g: &Graph, id: Id) -> bool {
    if g.order(id) > 2 {
        return false;
    }
    match g.node(id) {
        Node::Var(_) | Node::Const(_) | Node::Fill(..) | Node::Literal(..) | Node::Delta(_) => false,
        Node::Reindex(_, i, o) if i.len() == o.len() => false,
        Node::Mul(a, _, s1, s2, s3) if s1.is_empty() && s2 == s3 && g.const_value(*a).is_some() => false,
        _ => true,
    }
}

/// Choose names for the cascade: function applications of the original
/// expression and every subexpression used more than once.
fn choose_names(g: &Graph, roots: &[Id], reserved: &[String]) -> Vec<(Id, String)> {
    let order = g.topo_order(roots);
    let mut parents: FxHashMap<Id, usize> = FxHashMap::default();
    for &id in &order {
        g.node(id).for_each_child(|c| *parents.entry(c).or_default() += 1);
    }
    // Looking through transposes and scalings: the inner node is what is shared.
    let candidates = [
        "a", "b", "c", "d", "f", "g", "h", "k", "m", "p", "q", "r", "s", "t", "u", "v", "w", "y", "z",
    ];
    let mut pool = candidates
        .iter()
        .map(|s| s.to_string())
        .filter(|s| !reserved.iter().any(|r| r.eq_ignore_ascii_case(s)))
        .collect::<Vec<_>>()
        .into_iter();
    let mut counter = 0;
    let mut next_name = move || {
        pool.next().unwrap_or_else(|| loop {
            counter += 1;
            let n = format!("t{counter}");
            if !reserved.contains(&n) {
                break n;
            }
        })
    };
    let mut names = Vec::new();
    for &id in &order {
        if roots.contains(&id) || !nameable(g, id) {
            continue;
        }
        let shared = parents.get(&id).copied().unwrap_or(0) >= 2;
        let function = matches!(
            g.node(id),
            Node::Map(..) | Node::Inv(_) | Node::Softmax(_) | Node::Det(_) | Node::LogDet(_)
        );
        if shared || function {
            names.push((id, next_name()));
        }
    }
    names
}

/// Recover matrix notation for `roots` in the given form. `reserved` are names
/// the intermediates must avoid (variables, dimensions).
pub fn recover(g: &Graph, roots: &[Id], form: Form, primal: Option<Id>, reserved: &[String]) -> Rendered {
    let mut r = Recover::new(g);
    let mut definitions = Vec::new();
    if form != Form::Nested {
        r.diag_form = form == Form::Diag;
        r.primal = primal
            .map(|p| g.topo_order(&[p]))
            .unwrap_or_default()
            .into_iter()
            .collect();
        let chosen = choose_names(g, roots, reserved);
        for (id, n) in &chosen {
            let m = r.convert_def(*id);
            definitions.push((n.clone(), m));
            r.names.insert(*id, n.clone());
        }
    }
    let results = roots.iter().map(|&id| r.convert(id)).collect();
    Rendered {
        definitions,
        diag_defs: r.diag_defs,
        results,
    }
}

/// One node as a nested expression in the input language.
pub fn nested_expr(g: &Graph, id: Id) -> String {
    let mut r = Recover::new(g);
    let m = r.convert(id);
    print::print(&m, &Style::EXPR)
}

/// How many nodes the nested (fully expanded) form of `roots` would have,
/// saturating; shared subexpressions count once per use.
pub fn expanded_size(g: &Graph, roots: &[Id]) -> u64 {
    let order = g.topo_order(roots);
    let mut size: FxHashMap<Id, u64> = FxHashMap::default();
    for &id in &order {
        let mut s = 1u64;
        g.node(id).for_each_child(|c| s = s.saturating_add(size[&c]));
        size.insert(id, s);
    }
    roots.iter().fold(0u64, |a, r| a.saturating_add(size[r]))
}

/// Largest nested form printed before asking for the cascade form.
pub const MAX_NESTED: u64 = 2_000_000;
