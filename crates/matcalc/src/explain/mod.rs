//! Explanations: the step-by-step derivation a good teacher writes, with
//! differentials and the Frobenius product `A : B = tr(AᵀB)`.
//!
//! An explanation is built from the same IR and the same rule table as the
//! result ([`crate::diff::pull_back`]):
//!
//! 1. The function's nodes worth a name become the *intermediates* `a = W1 x,
//!    b = cos(a), …`. Each gets a placeholder variable for its differential
//!    (`da`), and its differential in terms of its operands' differentials is the
//!    reverse sweep from the node, seeded with the identity and stopped at the
//!    other intermediates, contracted with their placeholders: `db = −s ⊙ da`.
//! 2. For a scalar function the differential `df = Σ Gᵢ : dvᵢ` is
//!    back-substituted: the latest intermediate `v` is replaced by its
//!    differential (`G : (c ⊙ db)`), then the operator moves across `:` — the
//!    sweep from `v` seeded with `G` — giving `(c ⊙ G) : db`. It ends with
//!    `G : dx ⇒ ∂f/∂x = G`.
//! 3. For a vector or matrix function (and for a Hessian, the derivative of the
//!    gradient) the differential is substituted forward instead until only `dx`
//!    is left: `df = J dx ⇒ ∂f/∂x = J`.
//!
//! Every line is an IR expression in the variables and the placeholders, so
//! [`Explanation::verify`] evaluates each side of every `=` at random points.

pub mod rules;
mod text;
mod verify;

pub use rules::{Identity, Rule, DIFF_MARK};
pub use text::Format;
pub use verify::{Verification, VerifiedLine};

use crate::diff;
use crate::error::{Error, ErrorKind, Result};
use crate::ir::{Graph, Id, Labels, Node};
use crate::render::mexpr::M;
use crate::render::print::{self, Flavour, Style};
use crate::{Derivative, Problem};
use rustc_hash::{FxHashMap, FxHashSet};

/// Options for [`explain`].
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Names for the intermediates, used in order before the automatic ones.
    pub names: Vec<String>,
}

/// A named intermediate and its differential.
#[derive(Clone, Debug)]
pub struct Intermediate {
    /// The node.
    pub node: Id,
    /// Its name.
    pub name: String,
    /// The placeholder variable for its differential.
    pub diff_var: Id,
    /// Its differential: for a scalar, `Σ Gᵢ : dvᵢ` (pairs); else one linear expression.
    pub differential: Differential,
    /// The rules used, in order, without repeats.
    pub rules: Vec<Rule>,
    /// Derivative factors named where they first appear (`s = sin(a)`).
    pub factors: Vec<(String, Id)>,
}

/// A differential: the right-hand side of a line `d… = …`.
#[derive(Clone, Debug)]
pub enum Differential {
    /// `Σ Gᵢ : dvᵢ` (a scalar's differential), as (G, dv) pairs.
    Frobenius(Vec<(Id, Id)>),
    /// An expression linear in the placeholders.
    Linear(Id),
    /// `J dx`: a derivative applied to a placeholder, with the value node.
    Applied(Vec<(Id, Id)>, Id),
}

/// Why a line follows from the previous one.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    /// The differential of the expression itself, by these rules.
    Start(Vec<Rule>),
    /// An intermediate's differential substituted (its name).
    Substitute(String),
    /// Operators moved across `:` by these identities.
    Move(Vec<Identity>),
    /// Terms in the same differential collected.
    Collect,
    /// The variable is symmetric: `G : dX = ½(G + Gᵀ) : dX`.
    Symmetric,
    /// The derivative written as printed (simplified).
    Simplify,
    /// The linear expression written as the derivative applied to `dx`.
    Apply,
}

/// One line of a chain: `= rhs` and why.
#[derive(Clone, Debug)]
pub struct Line {
    /// The right-hand side.
    pub rhs: Differential,
    /// Its justification.
    pub reason: Reason,
}

/// One chain of equal quantities: `d(of) = … = … ⇒ result`.
#[derive(Clone, Debug)]
pub struct Chain {
    /// The node differentiated (the function, or a derivative for higher orders).
    pub of: Id,
    /// The derivative `of` is (None for the function itself).
    pub of_derivative: Option<Derivative>,
    /// The lines; the first starts the chain.
    pub lines: Vec<Line>,
    /// The derivatives read off at the end.
    pub results: Vec<Derivative>,
}

/// A derivation, ready to print and to verify.
#[derive(Clone, Debug)]
pub struct Explanation {
    /// The graph: the problem's, plus placeholders and the lines' nodes.
    pub graph: Graph,
    /// The function.
    pub root: Id,
    /// Intermediates in dependency order.
    pub intermediates: Vec<Intermediate>,
    /// The differentiation variables (indices into `graph.vars`) and their placeholders.
    pub wrt: Vec<(usize, Id)>,
    /// The chains: one for a first derivative, one more per further order.
    pub chains: Vec<Chain>,
    /// The final derivatives, as [`Problem::derive`] gives them.
    pub derivatives: Vec<Derivative>,
    /// Names the problem uses (variables, dimensions, `f`).
    reserved: Vec<String>,
}

/// Most intermediates an explanation names.
pub const MAX_INTERMEDIATES: usize = 400;

/// Explain the derivatives `ds` of `p` (as returned by `p.derive(wrt, order)`).
pub fn explain(p: &Problem, wrt: &[String], order: usize, ds: &[Derivative], opts: &Options) -> Result<Explanation> {
    Builder::new(p, wrt, order, ds, opts)?.build()
}

struct Builder<'a> {
    g: Graph,
    root: Id,
    wrt_idx: Vec<usize>,
    wrt_names: Vec<String>,
    order: usize,
    ds: &'a [Derivative],
    opts: &'a Options,
    reserved: Vec<String>,
    /// Named nodes (intermediates), and the placeholders of every leaf (intermediates and variables).
    named: FxHashSet<Id>,
    placeholder: FxHashMap<Id, Id>,
    /// Topological position of every node of the chains' roots.
    position: FxHashMap<Id, usize>,
    dep: Vec<bool>,
}

impl<'a> Builder<'a> {
    fn new(p: &Problem, wrt: &[String], order: usize, ds: &'a [Derivative], opts: &'a Options) -> Result<Self> {
        let wrt_idx: Vec<usize> = wrt.iter().map(|w| p.var_index(w)).collect::<Result<_>>()?;
        let mut wrt_names: Vec<String> = Vec::new();
        for w in wrt {
            if !wrt_names.contains(w) {
                wrt_names.push(w.clone());
            }
        }
        Ok(Builder {
            g: p.graph.clone(),
            root: p.root,
            wrt_idx,
            wrt_names,
            order,
            ds,
            opts,
            reserved: p.reserved_names(),
            named: FxHashSet::default(),
            placeholder: FxHashMap::default(),
            position: FxHashMap::default(),
            dep: Vec::new(),
        })
    }

    fn build(mut self) -> Result<Explanation> {
        // The chain roots: f, then each derivative but the last.
        let seq: Vec<usize> = if self.wrt_idx.len() == 1 {
            vec![self.wrt_idx[0]; self.order]
        } else if self.order == 1 {
            vec![]
        } else {
            self.wrt_idx.clone()
        };
        let mut distinct: Vec<usize> = Vec::new();
        for &v in &self.wrt_idx {
            if !distinct.contains(&v) {
                distinct.push(v);
            }
        }
        let mut roots = vec![self.root];
        let mut of_derivs: Vec<Option<Derivative>> = vec![None];
        if self.order > 1 {
            let mut cur = self.root;
            for k in 0..self.order - 1 {
                cur = diff::derivatives(&mut self.g, cur, &[seq[k]])[0];
                roots.push(cur);
                of_derivs.push(Some(Derivative {
                    wrt: seq[..=k].iter().map(|&v| self.g.vars[v].name.clone()).collect(),
                    id: cur,
                }));
            }
        }
        // Differentials are total: with respect to every variable differentiated by.
        self.dep = self.g.depends_on(&roots, &distinct);
        let order = self.g.topo_order(&roots);
        for (k, &id) in order.iter().enumerate() {
            self.position.insert(id, k);
        }
        let mut inter: Vec<Id> = Vec::new();
        for &id in &order {
            if self.dep[id.index()] && !roots.contains(&id) && worth_a_name(&self.g, id) {
                inter.push(id);
                self.named.insert(id);
            }
        }
        if inter.len() > MAX_INTERMEDIATES {
            return Err(Error::new(
                ErrorKind::Limit,
                format!(
                    "the derivation has {} intermediates; explanations stop at {MAX_INTERMEDIATES}",
                    inter.len()
                ),
            )
            .hint("explain a smaller expression, or use --form cascade without --explain"));
        }
        // Placeholders: variables first, then intermediates (renamed once names are chosen).
        let mut wrt = Vec::new();
        for &v in &distinct {
            let info = self.g.vars[v].clone();
            let x = self.g.var(&info.name, info.shape.clone(), info.symmetric);
            let dx = self
                .g
                .var(&format!("{DIFF_MARK}{}", info.name), info.shape, info.symmetric);
            self.placeholder.insert(x, dx);
            wrt.push((v, dx));
        }
        let mut intermediates = Vec::new();
        for (k, &v) in inter.iter().enumerate() {
            let shape = self.g.shape(v).to_vec();
            let dv = self
                .g
                .var(&format!("{DIFF_MARK}\u{1}{k}"), shape, self.g.is_symmetric(v));
            self.placeholder.insert(v, dv);
            intermediates.push(Intermediate {
                node: v,
                name: String::new(),
                diff_var: dv,
                differential: Differential::Linear(dv),
                rules: Vec::new(),
                factors: Vec::new(),
            });
        }
        for it in intermediates.iter_mut() {
            let (d, rules) = self.differential(it.node);
            it.differential = d;
            it.rules = rules;
        }
        // Names in reading order: the derivative factors an intermediate's differential
        // introduces, then the intermediate (s = sin(a), y = cos(a) ⇒ dy = −s ⊙ da).
        let mut seen: FxHashSet<Id> = self.named.clone();
        let mut factor_lists = Vec::new();
        let mut needed = inter.len();
        for it in &intermediates {
            let fs = factor_nodes(&self.g, &it.differential, &seen);
            seen.extend(fs.iter().copied());
            needed += fs.len();
            factor_lists.push(fs);
        }
        let mut names = self.choose_names(needed).into_iter();
        for (it, fs) in intermediates.iter_mut().zip(factor_lists) {
            // The textbook's order: s = sin(a), y = cos(a) ⇒ dy = −s ⊙ da.
            for id in fs {
                it.factors.push((names.next().unwrap_or_default(), id));
            }
            it.name = names.next().unwrap_or_default();
            if let Node::Var(i) = *self.g.node(it.diff_var) {
                self.g.vars[i as usize].name = format!("{DIFF_MARK}{}", it.name);
            }
        }
        let mut chains = Vec::new();
        for (k, &of) in roots.iter().enumerate() {
            let last = k + 1 == roots.len();
            let targets: Vec<Derivative> = if last {
                self.ds.to_vec()
            } else {
                vec![of_derivs[k + 1]
                    .clone()
                    .expect("derivative roots come with their labels")]
            };
            let chain = if self.g.order(of) == 0 {
                self.reverse_chain(of, &targets)?
            } else {
                self.forward_chain(of, &targets)?
            };
            chains.push(Chain {
                of,
                of_derivative: of_derivs[k].clone(),
                lines: chain,
                results: targets,
            });
        }
        Ok(Explanation {
            graph: self.g,
            root: self.root,
            intermediates,
            wrt,
            chains,
            derivatives: self.ds.to_vec(),
            reserved: self.reserved,
        })
    }

    /// Names for intermediates: the user's, then a, b, c, … avoiding the problem's names.
    fn choose_names(&self, n: usize) -> Vec<String> {
        let taken = |s: &str, reserved: &[String]| {
            reserved.iter().any(|r| r == s || *r == format!("d{s}")) || ["d", "e", "f", "i", "l", "o"].contains(&s)
        };
        let mut out: Vec<String> = self
            .opts
            .names
            .iter()
            .filter(|s| !taken(s, &self.reserved))
            .cloned()
            .collect();
        let pool = "abcghkmpqrstuvwyz".chars().map(|c| c.to_string());
        for s in pool {
            if out.len() >= n {
                break;
            }
            if !taken(&s, &self.reserved) && !out.contains(&s) {
                out.push(s);
            }
        }
        let mut k = 1;
        while out.len() < n {
            let s = format!("t{k}");
            if !taken(&s, &self.reserved) && !out.contains(&s) {
                out.push(s);
            }
            k += 1;
        }
        out
    }

    /// The sweep from `v` seeded with `seed` (`p` output axes) down to the leaves.
    fn sweep(&mut self, v: Id, seed: Id, p: usize) -> Vec<(Id, Id)> {
        let named = std::mem::take(&mut self.named);
        let leaf = |g: &Graph, id: Id| named.contains(&id) || matches!(g.node(id), Node::Var(_));
        let out = diff::sweep(&mut self.g, v, seed, p, &self.dep, leaf);
        self.named = named;
        out
    }

    /// The rules used in `v`'s own part of the graph (down to the leaves).
    fn rules_at(&self, v: Id) -> Vec<Rule> {
        let mut out = Vec::new();
        let mut stack = vec![v];
        let mut seen = FxHashSet::default();
        while let Some(id) = stack.pop() {
            if !seen.insert(id) || !self.dep.get(id.index()).copied().unwrap_or(false) {
                continue;
            }
            if id != v && (self.named.contains(&id) || matches!(self.g.node(id), Node::Var(_))) {
                continue;
            }
            if let Some(r) = Rule::of(&self.g, id) {
                if !out.contains(&r) {
                    out.push(r);
                }
            }
            self.g.node(id).for_each_child(|c| stack.push(c));
        }
        out
    }

    /// The differential of `v` in terms of its leaves' placeholders.
    fn differential(&mut self, v: Id) -> (Differential, Vec<Rule>) {
        let p = self.g.order(v);
        let seed = diff::identity_seed(&mut self.g, v);
        let adj = self.sweep(v, seed, p);
        let rules = self.rules_at(v);
        if p == 0 {
            let pairs = adj.into_iter().map(|(leaf, a)| (a, self.placeholder[&leaf])).collect();
            return (Differential::Frobenius(pairs), rules);
        }
        let mut terms = Vec::new();
        for (leaf, a) in adj {
            let dc = self.placeholder[&leaf];
            terms.push(apply(&mut self.g, a, dc, p));
        }
        let sum = if terms.is_empty() {
            let shape = self.g.shape(v).to_vec();
            self.g.zeros(shape)
        } else {
            self.g.add(&terms)
        };
        (Differential::Linear(sum), rules)
    }

    /// Back-substitution for a scalar: `df = Σ G : dv`, latest intermediate first.
    fn reverse_chain(&mut self, f: Id, targets: &[Derivative]) -> Result<Vec<Line>> {
        let (start, rules) = self.differential(f);
        let Differential::Frobenius(mut terms) = start else {
            unreachable!("a scalar's differential is a Frobenius sum")
        };
        // Terms are (G, placeholder); find the intermediate of a placeholder.
        let of_placeholder: FxHashMap<Id, Id> = self.placeholder.iter().map(|(&n, &p)| (p, n)).collect();
        let mut lines = vec![Line {
            rhs: Differential::Frobenius(terms.clone()),
            reason: Reason::Start(rules),
        }];
        loop {
            // The latest intermediate still present.
            let pick = terms
                .iter()
                .enumerate()
                .filter(|(_, (_, dv))| self.named.contains(&of_placeholder[dv]))
                .max_by_key(|(_, (_, dv))| self.position.get(&of_placeholder[dv]).copied().unwrap_or(0))
                .map(|(k, _)| k);
            let Some(k) = pick else { break };
            let (gv, dv) = terms[k];
            let v = of_placeholder[&dv];
            // Substitute dv.
            let (dif, rules) = self.differential(v);
            let Differential::Linear(dexpr) = dif else {
                // A scalar intermediate: G · (Σ Hᵢ : dcᵢ) = Σ (G Hᵢ) : dcᵢ.
                let Differential::Frobenius(pairs) = dif else {
                    unreachable!()
                };
                let name = self.name_of(v);
                let moved: Vec<(Id, Id)> = pairs.iter().map(|&(h, dc)| (self.g.times(gv, h), dc)).collect();
                let mut with: Vec<(Id, Id)> = terms.clone();
                with.splice(k..=k, moved);
                lines.push(Line {
                    rhs: Differential::Frobenius(with.clone()),
                    reason: Reason::Substitute(name),
                });
                terms = self.collect(with, &mut lines);
                continue;
            };
            let name = self.name_of(v);
            let mut substituted = terms.clone();
            substituted[k] = (gv, dexpr);
            lines.push(Line {
                rhs: Differential::Frobenius(substituted),
                reason: Reason::Substitute(name),
            });
            // Move the operators across `:`.
            debug_assert_eq!(self.g.order(v), self.g.order(gv));
            let pulled = self.sweep(v, gv, 0);
            let ids: Vec<Identity> = {
                let mut ids: Vec<Identity> = rules.iter().map(|r| r.identity()).collect();
                ids.sort();
                ids.dedup();
                ids
            };
            let moved: Vec<(Id, Id)> = pulled
                .into_iter()
                .map(|(leaf, a)| (a, self.placeholder[&leaf]))
                .collect();
            let mut with = terms.clone();
            with.splice(k..=k, moved);
            lines.push(Line {
                rhs: Differential::Frobenius(with.clone()),
                reason: Reason::Move(ids),
            });
            terms = self.collect(with, &mut lines);
        }
        // Symmetric variables: only the symmetric part of G counts.
        let mut sym_terms = terms.clone();
        let mut any_sym = false;
        for t in sym_terms.iter_mut() {
            let Node::Var(i) = *self.g.node(t.1) else { continue };
            if self.g.vars[i as usize].symmetric && self.g.order(t.0) == 2 {
                let gt = self.g.transpose(t.0);
                let s = self.g.add(&[t.0, gt]);
                t.0 = self.g.scale(0.5, s);
                any_sym = true;
            }
        }
        if any_sym {
            lines.push(Line {
                rhs: Differential::Frobenius(sym_terms.clone()),
                reason: Reason::Symmetric,
            });
        }
        // The derivatives as printed, if the chain reached another form of them (terms in
        // other variables' differentials stay: a mixed derivative's chain is a total differential).
        let printed: Vec<(Id, Id)> = self.printed_terms(targets);
        let finals: Vec<(Id, Id)> = sym_terms
            .iter()
            .map(|&(gv, dx)| printed.iter().find(|p| p.1 == dx).map_or((gv, dx), |&(d, _)| (d, dx)))
            .collect();
        if finals != sym_terms {
            lines.push(Line {
                rhs: Differential::Frobenius(finals),
                reason: Reason::Simplify,
            });
        }
        Ok(lines)
    }

    /// (derivative, placeholder) for each target, for scalar functions.
    fn printed_terms(&self, targets: &[Derivative]) -> Vec<(Id, Id)> {
        targets
            .iter()
            .filter_map(|d| {
                let w = d.wrt.last()?;
                let v = self.g.var_index(w)?;
                let dx = self.wrt_placeholder(v)?;
                Some((d.id, dx))
            })
            .collect()
    }

    fn wrt_placeholder(&self, v: usize) -> Option<Id> {
        self.placeholder
            .iter()
            .find(|(n, _)| matches!(self.g.node(**n), Node::Var(i) if *i as usize == v))
            .map(|(_, &p)| p)
    }

    /// Merge terms on the same differential, recording a line if any merged.
    fn collect(&mut self, terms: Vec<(Id, Id)>, lines: &mut Vec<Line>) -> Vec<(Id, Id)> {
        let mut out: Vec<(Id, Vec<Id>)> = Vec::new();
        for (gv, dv) in &terms {
            match out.iter_mut().find(|(d, _)| d == dv) {
                Some((_, gs)) => gs.push(*gv),
                None => out.push((*dv, vec![*gv])),
            }
        }
        if out.len() == terms.len() {
            return terms;
        }
        let merged: Vec<(Id, Id)> = out.into_iter().map(|(dv, gs)| (self.g.add(&gs), dv)).collect();
        lines.push(Line {
            rhs: Differential::Frobenius(merged.clone()),
            reason: Reason::Collect,
        });
        merged
    }

    fn name_of(&self, v: Id) -> String {
        let dv = self.placeholder[&v];
        match self.g.node(dv) {
            Node::Var(i) => self.g.vars[*i as usize]
                .name
                .strip_prefix(DIFF_MARK)
                .unwrap_or_default()
                .to_string(),
            _ => String::new(),
        }
    }

    /// Forward substitution for a vector or matrix: `df = …` until only `dx` is left.
    fn forward_chain(&mut self, f: Id, targets: &[Derivative]) -> Result<Vec<Line>> {
        let (start, rules) = self.differential(f);
        let Differential::Linear(mut cur) = start else {
            unreachable!("a non-scalar's differential is linear")
        };
        let of_placeholder: FxHashMap<Id, Id> = self.placeholder.iter().map(|(&n, &p)| (p, n)).collect();
        let mut lines = vec![Line {
            rhs: Differential::Linear(cur),
            reason: Reason::Start(rules),
        }];
        let mut steps = 0;
        loop {
            let present: Vec<Id> = self
                .g
                .topo_order(&[cur])
                .into_iter()
                .filter(|id| of_placeholder.get(id).is_some_and(|n| self.named.contains(n)))
                .collect();
            let Some(&dv) = present
                .iter()
                .max_by_key(|dv| self.position.get(&of_placeholder[dv]).copied().unwrap_or(0))
            else {
                break;
            };
            steps += 1;
            if steps > MAX_INTERMEDIATES {
                return Err(Error::new(ErrorKind::Limit, "the derivation does not terminate")
                    .hint("this is a bug in matcalc; please report the expression"));
            }
            let v = of_placeholder[&dv];
            let (dif, _) = self.differential(v);
            let dexpr = match dif {
                Differential::Linear(e) => e,
                Differential::Frobenius(pairs) => {
                    // A scalar's differential as an expression: Σ ⟨G, dc⟩.
                    let mut ts = Vec::new();
                    for (a, dc) in pairs {
                        let q = self.g.order(dc);
                        let l = Labels::range(0, q);
                        ts.push(self.g.mul(a, dc, l, l, Labels::range(0, 0)));
                    }
                    if ts.is_empty() {
                        self.g.constant(0.0)
                    } else {
                        self.g.add(&ts)
                    }
                }
                Differential::Applied(..) => unreachable!(),
            };
            let mut map = FxHashMap::default();
            map.insert(dv, dexpr);
            cur = substitute(&mut self.g, cur, &map);
            let name = self.name_of(v);
            lines.push(Line {
                rhs: Differential::Linear(cur),
                reason: Reason::Substitute(name),
            });
        }
        // `J dx`, when the derivative has a matrix form.
        let p = self.g.order(f);
        let mut applied = Vec::new();
        let mut terms = Vec::new();
        for d in targets {
            let Some(v) = d.wrt.last().and_then(|w| self.g.var_index(w)) else {
                continue;
            };
            let Some(dx) = self.wrt_placeholder(v) else { continue };
            let q = self.g.order(dx);
            if p + q > 2 {
                applied.clear();
                break;
            }
            applied.push((d.id, dx));
            terms.push(self.g.mul(
                d.id,
                dx,
                Labels::range(0, p + q),
                Labels::range(p as u8, q),
                Labels::range(0, p),
            ));
        }
        // With several variables but one target (a mixed derivative) the sum is partial.
        let complete = targets.len() == self.wrt_names.len() || self.wrt_names.len() == 1;
        if !applied.is_empty() && complete {
            let value = if terms.len() == 1 { terms[0] } else { self.g.add(&terms) };
            lines.push(Line {
                rhs: Differential::Applied(applied, value),
                reason: Reason::Apply,
            });
        }
        Ok(lines)
    }
}

/// `Σ_s a[o, s] dc[s]`: a derivative (`p` output axes) applied to a differential,
/// distributed over a sum so each term simplifies on its own (`δδ + δδᵀ` applied to
/// `dA` is `dA + dAᵀ`, not a contraction with a sum of identity tensors).
fn apply(g: &mut Graph, a: Id, dc: Id, p: usize) -> Id {
    if let Node::Add(ts) = g.node(a).clone() {
        let parts: Vec<Id> = ts.iter().map(|&t| apply(g, t, dc, p)).collect();
        return g.add(&parts);
    }
    let q = g.order(dc);
    g.mul(
        a,
        dc,
        Labels::range(0, p + q),
        Labels::range(p as u8, q),
        Labels::range(0, p),
    )
}

/// Whether an intermediate is worth naming in a derivation.
fn worth_a_name(g: &Graph, id: Id) -> bool {
    if g.order(id) > 2 {
        return false;
    }
    match g.node(id) {
        Node::Var(_) | Node::Const(_) | Node::Fill(..) | Node::Literal(..) | Node::Delta(_) => false,
        Node::Reindex(_, i, o) if i.len() == o.len() => false,
        // Squares are read with what sums them: ‖z‖² = z : z.
        Node::Pow(_, e) if e.get() == 2.0 => false,
        Node::Mul(a, b, s1, s2, _)
            if (s1.is_empty() && g.const_value(*a).is_some()) || (s2.is_empty() && g.const_value(*b).is_some()) =>
        {
            false
        }
        _ => true,
    }
}

/// Function applications in a differential that deserve a name (`sin(a)` in `db = −sin(a) ⊙ da`).
fn factor_nodes(g: &Graph, d: &Differential, seen: &FxHashSet<Id>) -> Vec<Id> {
    let roots: Vec<Id> = match d {
        Differential::Frobenius(p) | Differential::Applied(p, _) => p.iter().map(|x| x.0).collect(),
        Differential::Linear(e) => vec![*e],
    };
    let mut out = Vec::new();
    for id in g.topo_order(&roots) {
        let function = matches!(
            g.node(id),
            Node::Map(..) | Node::Inv(_) | Node::Softmax(_) | Node::Det(_) | Node::LogDet(_)
        );
        if function && !seen.contains(&id) && !out.contains(&id) && g.order(id) <= 2 {
            out.push(id);
        }
    }
    out
}

/// `e` with the nodes in `map` replaced, rebuilt through the smart constructors.
pub fn substitute(g: &mut Graph, e: Id, map: &FxHashMap<Id, Id>) -> Id {
    let order = g.topo_order(&[e]);
    let mut new: FxHashMap<Id, Id> = FxHashMap::default();
    for id in order {
        if let Some(&r) = map.get(&id) {
            new.insert(id, r);
            continue;
        }
        let node = g.node(id).clone();
        let mut changed = false;
        node.for_each_child(|c| changed |= new.get(&c).is_some_and(|n| *n != c));
        if !changed {
            new.insert(id, id);
            continue;
        }
        let m = |c: &Id| new[c];
        let r = match node {
            Node::Add(ts) => {
                let ts: Vec<Id> = ts.iter().map(m).collect();
                g.add(&ts)
            }
            Node::Mul(a, b, s1, s2, s3) => g.mul(m(&a), m(&b), s1, s2, s3),
            Node::Reindex(a, ia, out) => g.reindex(m(&a), ia, out),
            Node::Map(f, a) => g.map(f, m(&a)),
            Node::Pow(a, p) => g.pow(m(&a), p.get()),
            Node::Inv(a) => g.inv(m(&a)),
            Node::Det(a) => g.det(m(&a)),
            Node::LogDet(a) => g.logdet(m(&a)),
            Node::LogSumExp(a) => g.logsumexp(m(&a)),
            Node::Softmax(a) => g.softmax(m(&a)),
            Node::Var(_) | Node::Const(_) | Node::Fill(..) | Node::Literal(..) | Node::Delta(_) => id,
        };
        new.insert(id, r);
    }
    new[&e]
}

/// Whether the right side `D` of `G : D` is written in parentheses: a sum, an
/// elementwise product or quotient, a negated product, or a product holding one
/// (`2 z : (c ⊙ db)`, `G : (−b dX b)`).
pub(crate) fn rhs_grouped(m: &M) -> bool {
    match m {
        M::Add(_) | M::Had(_) | M::Div(..) => true,
        M::Prod(fs) => {
            matches!(fs.first(), Some(M::Num(c)) if *c < 0.0) || fs.iter().any(|f| matches!(f, M::Had(_) | M::Div(..)))
        }
        _ => false,
    }
}

/// A number times an elementwise product, the left side written `2 (k ⊙ h) : dg`.
pub(crate) fn scaled_elementwise(m: &M) -> Option<(&M, &M)> {
    match m {
        M::Prod(fs) if fs.len() == 2 && matches!(fs[0], M::Num(_)) && matches!(fs[1], M::Had(_) | M::Div(..)) => {
            Some((&fs[0], &fs[1]))
        }
        _ => None,
    }
}

/// `(s)`, `\left(s\right)` in LaTeX.
fn wrap_always(s: String, style: &Style) -> String {
    if style.flavour == Flavour::Latex {
        format!("\\left({s}\\right)")
    } else {
        format!("({s})")
    }
}

/// `G₁ : D₁ + G₂ : D₂ + …`, with signs pulled to the front of each term.
pub(crate) fn frobenius_sum(parts: &[(M, M)], style: &Style) -> String {
    if parts.is_empty() {
        return "0".into();
    }
    let colon = if style.flavour == Flavour::Latex {
        " \\mathbin{:} "
    } else {
        " : "
    };
    let mut out = String::new();
    for (k, (gm, dm)) in parts.iter().enumerate() {
        let gs = print::print(gm, style);
        let ds = print::print(dm, style);
        let wrap = |s: String, m: &M| {
            if rhs_grouped(m) {
                wrap_always(s, style)
            } else {
                s
            }
        };
        // 2 (g ⊙ k) : dc, not 2 g ⊙ k : dc.
        let gs = if let Some((c, rest)) = scaled_elementwise(gm) {
            let c = print::print(c, style);
            let c = if c == style.minus.to_string() + "1" {
                style.minus.to_string()
            } else {
                c + " "
            };
            let rest = print::print(rest, style);
            let rest = wrap_always(rest, style);
            format!("{c}{rest}")
        } else if matches!(gm, M::Add(_) | M::Had(_)) {
            wrap(gs, gm)
        } else {
            gs
        };
        let ds = wrap(ds, dm);
        let (neg, gs) = match gs.strip_prefix(style.minus) {
            Some(rest) if !matches!(gm, M::Add(_)) => (true, rest.trim_start().to_string()),
            _ => (false, gs),
        };
        match (k, neg) {
            (0, true) => out.push_str(style.minus),
            (0, false) => {}
            (_, true) => {
                out.push(' ');
                out.push_str(style.minus);
                out.push(' ');
            }
            (_, false) => out.push_str(" + "),
        }
        out.push_str(&gs);
        out.push_str(colon);
        out.push_str(&ds);
    }
    out
}
