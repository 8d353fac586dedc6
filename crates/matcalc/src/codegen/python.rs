//! NumPy, JAX and PyTorch modules.
//!
//! Named temporaries are the nodes used more than once and the expensive ones
//! (products that sum over an index, reductions, inverses, determinants,
//! softmax, log-sum-exp, literals); everything else is inlined into one
//! expression. Plain matrix products use `@` and `.T`, other products
//! `einsum`.

use super::{classify, exponent_literal, float_literal, label_str, output_base, prec, Expr, Names, Product, Spec};
use crate::ir::{Dim, Func, Id, Labels, Node};
use rustc_hash::FxHashMap;
use std::fmt::Write as _;

/// Which Python array library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Numpy,
    Jax,
    Torch,
}

const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
    "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal",
    "not", "or", "pass", "raise", "return", "try", "while", "with", "yield", "match", "case", "type",
];

/// Names the module uses itself: modules, helpers, builtins used by `check_grad`.
const MODULE_NAMES: &[&str] = &[
    "np",
    "jnp",
    "jax",
    "torch",
    "itertools",
    "f_and_grad",
    "check_grad",
    "ARGUMENTS",
    "DERIVATIVES",
    "SYMMETRIC",
    "_sigmoid",
    "_softplus",
    "_step",
    "_logsumexp",
    "_softmax",
    "_to_numpy",
    "abs",
    "dict",
    "float",
    "int",
    "isinstance",
    "len",
    "max",
    "min",
    "print",
    "range",
    "reversed",
    "sum",
    "tuple",
    "zip",
    "eps",
    "seed",
    "_rng",
    "_args",
    "_derivs",
    "_errors",
    "_key",
    "_wrt",
    "_k",
    "_h",
    "_dirs",
    "_d",
    "_exact",
    "_approx",
    "_signs",
    "_shifted",
    "_s",
    "_w",
    "_scale",
    "_value",
    "_floor",
];

impl Backend {
    fn ns(self) -> &'static str {
        match self {
            Backend::Numpy => "np",
            Backend::Jax => "jnp",
            Backend::Torch => "torch",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Backend::Numpy => "NumPy",
            Backend::Jax => "JAX",
            Backend::Torch => "PyTorch",
        }
    }

    /// `dtype=…` for constructors (JAX and NumPy default to float64 here).
    fn dtype_kw(self) -> &'static str {
        match self {
            Backend::Torch => ", dtype=torch.float64",
            _ => "",
        }
    }
}

struct Gen<'s, 'g> {
    spec: &'s Spec<'g>,
    be: Backend,
    /// Expressions of the nodes visited so far (a name for named nodes).
    exprs: FxHashMap<Id, Expr>,
    /// Python names of variables and dimensions.
    var_names: Vec<String>,
    dim_names: Vec<String>,
    body: Vec<String>,
    /// Helpers used.
    helpers: Vec<&'static str>,
}

/// The generated module.
pub(crate) fn generate(spec: &Spec, be: Backend) -> String {
    let g = spec.g;
    let mut reserved: Vec<&str> = KEYWORDS.to_vec();
    reserved.extend_from_slice(MODULE_NAMES);
    let mut names = Names::new(&reserved);
    let var_names: Vec<String> = g.vars.iter().map(|v| names.claim(&v.name)).collect();
    let dim_names: Vec<String> = g.dims.iter().map(|d| names.claim(&d.name)).collect();
    let mut gen = Gen {
        spec,
        be,
        exprs: FxHashMap::default(),
        var_names,
        dim_names,
        body: Vec::new(),
        helpers: Vec::new(),
    };
    gen.prologue();
    // Output names.
    let mut out_names: FxHashMap<Id, String> = FxHashMap::default();
    let mut outputs: Vec<(String, String)> = Vec::new(); // (key, python name)
    let value_name = names.claim("value");
    out_names.insert(spec.root, value_name.clone());
    for d in &spec.derivs {
        let base: String = output_base(d)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let n = names.claim(&base);
        outputs.push((d.key.clone(), n.clone()));
        out_names.entry(d.id).or_insert(n);
    }
    let mut counter = 0;
    for &id in &spec.order {
        let e = gen.node_expr(id);
        let named_out = out_names.get(&id).cloned();
        let e = if let Some(n) = named_out {
            let e = gen.root_wrap(id, e);
            gen.body.push(format!("{n} = {}", e.text));
            Expr::atom(n)
        } else if gen.worth_a_name(id) {
            let n = names.temp(&mut counter);
            gen.body.push(format!("{n} = {}", e.text));
            Expr::atom(n)
        } else {
            e
        };
        gen.exprs.insert(id, e);
    }
    // Outputs that are the same node as an earlier output.
    for d in &spec.derivs {
        let (_, n) = outputs.iter().find(|(k, _)| *k == d.key).expect("output");
        if out_names[&d.id] != *n {
            gen.body.push(format!("{n} = {}", out_names[&d.id]));
        }
    }
    let map: Vec<String> = outputs.iter().map(|(k, n)| format!("{k:?}: {n}")).collect();
    gen.body.push(format!("return {value_name}, {{{}}}", map.join(", ")));
    gen.module()
}

impl Gen<'_, '_> {
    fn ns(&self) -> &'static str {
        self.be.ns()
    }

    fn dim(&self, d: Dim) -> String {
        match d {
            Dim::Fixed(n) => n.to_string(),
            Dim::Sym(s) => self.dim_names[s as usize].clone(),
        }
    }

    fn shape_tuple(&self, shape: &[Dim]) -> String {
        match shape {
            [d] => format!("({},)", self.dim(*d)),
            _ => format!(
                "({})",
                shape.iter().map(|&d| self.dim(d)).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    fn use_helper(&mut self, h: &'static str) -> &'static str {
        if !self.helpers.contains(&h) {
            self.helpers.push(h);
        }
        h
    }

    /// Argument conversion and shape checks.
    fn prologue(&mut self) {
        let g = self.spec.g;
        let ns = self.ns();
        let mut bound = vec![false; g.dims.len()];
        for &s in &self.spec.free_dims {
            bound[s as usize] = true;
        }
        for &v in &self.spec.args {
            let var = &g.vars[v];
            let n = self.var_names[v].clone();
            let conv = match self.be {
                Backend::Numpy => format!("np.asarray({n}, dtype=np.float64)"),
                Backend::Jax => format!("jnp.asarray({n}, dtype=jnp.float64)"),
                Backend::Torch => format!("torch.as_tensor({n}, dtype=torch.float64)"),
            };
            self.body.push(format!("{n} = {conv}"));
            let k = var.shape.len();
            let what = match k {
                0 => "a scalar".to_string(),
                1 => "a vector".to_string(),
                2 => "a matrix".to_string(),
                _ => format!("an order-{k} tensor"),
            };
            let expect: Vec<String> = var.shape.iter().map(|&d| g.dim_name(d)).collect();
            let expect = format!("({})", expect.join(", "));
            self.body.push(format!(
                "assert {n}.ndim == {k}, f\"{} must be {what} {expect}, got shape {{tuple({n}.shape)}}\"",
                var.name
            ));
            for (axis, &d) in var.shape.iter().enumerate() {
                match d {
                    Dim::Sym(s) if !bound[s as usize] => {
                        bound[s as usize] = true;
                        self.body
                            .push(format!("{} = {n}.shape[{axis}]", self.dim_names[s as usize]));
                    }
                    _ => {
                        let want = self.dim(d);
                        let note = match d {
                            Dim::Sym(_) => format!(" ({} = {{{want}}})", g.dim_name(d)),
                            Dim::Fixed(_) => String::new(),
                        };
                        self.body.push(format!(
                            "assert {n}.shape[{axis}] == {want}, f\"{} must have shape {expect}, got {{tuple({n}.shape)}}{note}\"",
                            var.name,
                        ));
                    }
                }
            }
            if var.symmetric {
                match self.be {
                    // Values are not concrete under jax.jit; JAX trusts the caller.
                    Backend::Jax => {}
                    _ => self.body.push(format!(
                        "assert {ns}.allclose({n}, {n}.T, rtol=1e-9, atol=1e-9), \"{} must be symmetric\"",
                        var.name
                    )),
                }
            }
        }
        for (i, d) in g.dims.iter().enumerate() {
            let (Some((lo, hi)), true) = (d.range, bound[i]) else {
                continue;
            };
            let n = &self.dim_names[i];
            self.body.push(format!(
                "assert {lo} <= {n} <= {hi}, f\"dimension {} = {{{n}}} is outside its range {lo}..{hi}\"",
                d.name
            ));
        }
    }

    /// Whether a node gets a temporary of its own.
    fn worth_a_name(&self, id: Id) -> bool {
        let g = self.spec.g;
        let node = g.node(id);
        match node {
            Node::Var(_) | Node::Const(_) => return false,
            // Cheap to build again; a fill in a sum is written as a number.
            Node::Fill(..) | Node::Delta(_) => return false,
            _ => {}
        }
        if self.spec.uses(id) >= 2 {
            return true;
        }
        match node {
            Node::Mul(_, _, s1, s2, s3) => {
                // Products that sum over an index (@, einsum, trace).
                s1.iter().chain(s2.iter()).any(|l| !s3.contains(l))
            }
            Node::Reindex(_, i, o) => i.len() != o.len(),
            Node::Literal(..)
            | Node::Inv(_)
            | Node::Det(_)
            | Node::LogDet(_)
            | Node::LogSumExp(_)
            | Node::Softmax(_) => true,
            _ => false,
        }
    }

    /// Outputs are arrays: a bare constant becomes one.
    fn root_wrap(&self, id: Id, e: Expr) -> Expr {
        match self.spec.g.node(id) {
            Node::Const(_) => match self.be {
                Backend::Numpy => Expr::atom(format!("np.asarray({})", e.text)),
                Backend::Jax => Expr::atom(format!("jnp.asarray({})", e.text)),
                Backend::Torch => Expr::atom(format!("torch.tensor({}, dtype=torch.float64)", e.text)),
            },
            _ => e,
        }
    }

    fn float(&self, v: f64) -> Expr {
        match float_literal(v) {
            Some(s) if v < 0.0 => Expr::new(s, prec::UNARY),
            Some(s) => Expr::atom(s),
            None => Expr::atom(format!(
                "float(\"{}\")",
                if v.is_nan() {
                    "nan"
                } else if v > 0.0 {
                    "inf"
                } else {
                    "-inf"
                }
            )),
        }
    }

    fn get(&self, id: Id) -> Expr {
        self.exprs[&id].clone()
    }

    fn call(&self, f: &str, args: &[&Expr]) -> Expr {
        let a: Vec<String> = args.iter().map(|e| e.text.clone()).collect();
        Expr::atom(format!("{f}({})", a.join(", ")))
    }

    fn transpose(&self, e: &Expr) -> Expr {
        Expr::atom(format!("{}.T", e.at(prec::ATOM)))
    }

    fn node_expr(&mut self, id: Id) -> Expr {
        let g = self.spec.g;
        let ns = self.ns();
        match g.node(id).clone() {
            Node::Var(v) => Expr::atom(self.var_names[v as usize].clone()),
            Node::Const(c) => self.float(c.get()),
            Node::Fill(c, sh) => {
                let shape = self.shape_tuple(&sh);
                let dt = self.be.dtype_kw();
                match c.get() {
                    0.0 => Expr::atom(format!("{ns}.zeros({shape}{dt})")),
                    1.0 => Expr::atom(format!("{ns}.ones({shape}{dt})")),
                    v => Expr::atom(format!("{ns}.full({shape}, {}{dt})", self.float(v).text)),
                }
            }
            Node::Literal(data, sh) => {
                let vals: Vec<f64> = data.iter().map(|v| v.get()).collect();
                let fixed: Option<Vec<usize>> = sh
                    .iter()
                    .map(|d| match d {
                        Dim::Fixed(n) => Some(*n as usize),
                        Dim::Sym(_) => None,
                    })
                    .collect();
                let lit = match &fixed {
                    Some(dims) => self.nested_list(&vals, dims),
                    None => self.nested_list(&vals, &[vals.len()]),
                };
                let arr = match self.be {
                    Backend::Numpy => format!("np.array({lit})"),
                    Backend::Jax => format!("jnp.array({lit})"),
                    Backend::Torch => format!("torch.tensor({lit}, dtype=torch.float64)"),
                };
                match fixed {
                    Some(_) => Expr::atom(arr),
                    None => Expr::atom(format!("{arr}.reshape({})", self.shape_tuple(&sh))),
                }
            }
            Node::Delta(d) => Expr::atom(format!("{ns}.eye({}{})", self.dim(d), self.be.dtype_kw())),
            Node::Add(ts) => self.add_expr(&ts),
            Node::Mul(a, b, s1, s2, s3) => self.mul_expr(a, b, s1, s2, s3),
            Node::Reindex(a, ia, out) => {
                let e = self.get(a);
                self.reindex(&e, &ia, &out)
            }
            Node::Map(f, a) => {
                let x = self.get(a);
                self.map_expr(f, &x)
            }
            Node::Pow(a, p) => {
                let x = self.get(a);
                let p = p.get();
                if p == 0.5 {
                    self.call(&format!("{ns}.sqrt"), &[&x])
                } else if p == -1.0 {
                    Expr::new(format!("1.0 / {}", x.at(prec::MUL + 1)), prec::MUL)
                } else {
                    Expr::new(format!("{} ** {}", x.at(prec::ATOM), exponent_literal(p)), prec::POW)
                }
            }
            Node::Inv(a) => {
                let x = self.get(a);
                self.call(&format!("{ns}.linalg.inv"), &[&x])
            }
            Node::Det(a) => {
                let x = self.get(a);
                self.call(&format!("{ns}.linalg.det"), &[&x])
            }
            Node::LogDet(a) => {
                let x = self.get(a);
                Expr::atom(format!("{ns}.linalg.slogdet({})[1]", x.text))
            }
            Node::LogSumExp(a) => {
                let x = self.get(a);
                let h = self.use_helper("_logsumexp");
                self.call(h, &[&x])
            }
            Node::Softmax(a) => {
                let x = self.get(a);
                let h = self.use_helper("_softmax");
                self.call(h, &[&x])
            }
        }
    }

    fn nested_list(&self, vals: &[f64], dims: &[usize]) -> String {
        if dims.len() <= 1 {
            let items: Vec<String> = vals.iter().map(|&v| self.float(v).text).collect();
            return format!("[{}]", items.join(", "));
        }
        let chunk = dims[1..].iter().product::<usize>().max(1);
        let rows: Vec<String> = vals.chunks(chunk).map(|c| self.nested_list(c, &dims[1..])).collect();
        format!("[{}]", rows.join(", "))
    }

    /// A sum, with negated terms as subtractions and fills as scalars.
    fn add_expr(&mut self, ts: &[Id]) -> Expr {
        let g = self.spec.g;
        let mut text = String::new();
        for (k, &t) in ts.iter().enumerate() {
            let (neg, e) = match g.node(t) {
                Node::Fill(c, _) | Node::Const(c) => {
                    let v = c.get();
                    (v < 0.0, self.float(v.abs()))
                }
                Node::Mul(c, x, s1, s2, s3)
                    if s1.is_empty() && s2 == s3 && g.const_value(*c).is_some_and(|v| v < 0.0) && !self.named(t) =>
                {
                    let v = -g.const_value(*c).expect("constant");
                    let x = self.get(*x);
                    if v == 1.0 {
                        (true, x)
                    } else {
                        (
                            true,
                            Expr::new(format!("{} * {}", self.float(v).text, x.at(prec::MUL + 1)), prec::MUL),
                        )
                    }
                }
                _ => (false, self.get(t)),
            };
            match (k, neg) {
                (0, false) => text.push_str(&e.at(prec::ADD)),
                (0, true) => text.push_str(&format!("-{}", e.at(prec::UNARY))),
                (_, false) => text.push_str(&format!(" + {}", e.at(prec::ADD + 1))),
                (_, true) => text.push_str(&format!(" - {}", e.at(prec::ADD + 1))),
            }
        }
        Expr::new(text, prec::ADD)
    }

    /// Whether a node's expression is already a name (not inlined).
    fn named(&self, id: Id) -> bool {
        self.spec.uses(id) >= 2 || self.worth_a_name(id) || self.spec.is_root(id)
    }

    fn times(&self, a: &Expr, b: &Expr) -> Expr {
        Expr::new(format!("{} * {}", a.at(prec::MUL), b.at(prec::MUL + 1)), prec::MUL)
    }

    fn mul_expr(&mut self, a: Id, b: Id, s1: Labels, s2: Labels, s3: Labels) -> Expr {
        let g = self.spec.g;
        let ns = self.ns();
        match classify(g, a, b, &s1, &s2, &s3) {
            Product::Scaling { scalar, other, from } => {
                let x = self.get(other);
                let x = self.reindex(&x, &from, &s3);
                match g.const_value(scalar) {
                    Some(-1.0) => Expr::new(format!("-{}", x.at(prec::UNARY)), prec::UNARY),
                    _ => {
                        let s = self.get(scalar);
                        self.times(&s, &x)
                    }
                }
            }
            Product::Hadamard => {
                let (x, y) = (self.get(a), self.get(b));
                self.times(&x, &y)
            }
            Product::Trace(x) => {
                let x = self.get(x);
                self.call(&format!("{ns}.trace"), &[&x])
            }
            Product::DiagOf(x) => {
                let x = self.get(x);
                match self.be {
                    Backend::Torch => self.call("torch.diagonal", &[&x]),
                    _ => self.call(&format!("{ns}.diag"), &[&x]),
                }
            }
            Product::DiagMatrix(x) => {
                let x = self.get(x);
                self.call(&format!("{ns}.diag"), &[&x])
            }
            Product::Outer(x, y) => {
                let (x, y) = (self.get(x), self.get(y));
                self.call(&format!("{ns}.outer"), &[&x, &y])
            }
            Product::MatMul(l, r) => {
                let mut x = self.get(l.id);
                if l.transposed {
                    x = self.transpose(&x);
                }
                let mut y = self.get(r.id);
                if r.transposed {
                    y = self.transpose(&y);
                }
                let left = if x.prec == prec::MUL {
                    format!("({})", x.text)
                } else {
                    x.at(prec::MATMUL)
                };
                Expr::new(format!("{left} @ {}", y.at(prec::MUL + 1)), prec::MATMUL)
            }
            Product::Broadcast => {
                let x = self.get(a);
                let y = self.get(b);
                let x = self.broadcast_to(&x, &s1, &s3);
                let y = self.broadcast_to(&y, &s2, &s3);
                self.times(&x, &y)
            }
            Product::Einsum => {
                let spec = format!("\"{},{}->{}\"", label_str(&s1), label_str(&s2), label_str(&s3));
                let (x, y) = (self.get(a), self.get(b));
                Expr::atom(format!("{ns}.einsum({spec}, {}, {})", x.text, y.text))
            }
        }
    }

    /// Permute `x` (labelled `from`) into the order of `to` and insert unit
    /// axes for the labels it lacks, so that broadcasting lines it up.
    fn broadcast_to(&self, x: &Expr, from: &[u8], to: &[u8]) -> Expr {
        let mut sorted: Vec<u8> = from.to_vec();
        sorted.sort_by_key(|l| to.iter().position(|m| m == l));
        let x = if sorted != from {
            self.reindex(x, from, &sorted)
        } else {
            x.clone()
        };
        let Some(first) = to.iter().position(|l| from.contains(l)) else {
            return x;
        };
        let mut idx: Vec<&str> = to[first..]
            .iter()
            .map(|l| if from.contains(l) { ":" } else { "None" })
            .collect();
        while idx.last() == Some(&":") {
            idx.pop();
        }
        if idx.is_empty() {
            return x;
        }
        Expr::atom(format!("{}[{}]", x.at(prec::ATOM), idx.join(", ")))
    }

    /// `out[o] = Σ x[i]`: a transpose, permutation or sum.
    fn reindex(&self, x: &Expr, ia: &[u8], out: &[u8]) -> Expr {
        if ia == out {
            return x.clone();
        }
        let ns = self.ns();
        let summed: Vec<usize> = (0..ia.len()).filter(|&p| !out.contains(&ia[p])).collect();
        let mut e = x.clone();
        let mut kept: Vec<u8> = ia.to_vec();
        if !summed.is_empty() {
            let axes = if summed.len() == ia.len() {
                String::new()
            } else if summed.len() == 1 {
                let kw = if self.be == Backend::Torch { "dim" } else { "axis" };
                format!(", {kw}={}", summed[0])
            } else {
                let kw = if self.be == Backend::Torch { "dim" } else { "axis" };
                let a: Vec<String> = summed.iter().map(|p| p.to_string()).collect();
                format!(", {kw}=({})", a.join(", "))
            };
            e = Expr::atom(format!("{ns}.sum({}{axes})", e.text));
            kept.retain(|l| out.contains(l));
        }
        if kept.as_slice() == out {
            return e;
        }
        if out.len() == 2 {
            return self.transpose(&e);
        }
        let perm: Vec<String> = out
            .iter()
            .map(|l| kept.iter().position(|m| m == l).expect("label").to_string())
            .collect();
        match self.be {
            Backend::Torch => Expr::atom(format!("{}.permute({})", e.at(prec::ATOM), perm.join(", "))),
            _ => Expr::atom(format!("{ns}.transpose({}, ({}))", e.text, perm.join(", "))),
        }
    }

    fn map_expr(&mut self, f: Func, x: &Expr) -> Expr {
        let ns = self.ns();
        let torch = self.be == Backend::Torch;
        let name = match f {
            Func::Sin => "sin",
            Func::Cos => "cos",
            Func::Tan => "tan",
            Func::Asin if torch => "asin",
            Func::Acos if torch => "acos",
            Func::Atan if torch => "atan",
            Func::Asin => "arcsin",
            Func::Acos => "arccos",
            Func::Atan => "arctan",
            Func::Exp => "exp",
            Func::Log => "log",
            Func::Abs => "abs",
            Func::Sign => "sign",
            Func::Tanh => "tanh",
            Func::Sigmoid if torch => "sigmoid",
            Func::Sigmoid => {
                let h = self.use_helper("_sigmoid");
                return self.call(h, &[x]);
            }
            Func::Softplus => {
                let h = self.use_helper("_softplus");
                return self.call(h, &[x]);
            }
            Func::Step => {
                let h = self.use_helper("_step");
                return self.call(h, &[x]);
            }
            Func::Relu if torch => return Expr::atom(format!("torch.clamp({}, min=0.0)", x.text)),
            Func::Relu => return Expr::atom(format!("{ns}.maximum({}, 0.0)", x.text)),
        };
        self.call(&format!("{ns}.{name}"), &[x])
    }

    fn helper_text(&self, h: &str) -> String {
        let ns = self.ns();
        let torch = self.be == Backend::Torch;
        let relu = |x: &str| {
            if torch {
                format!("torch.clamp({x}, min=0.0)")
            } else {
                format!("{ns}.maximum({x}, 0.0)")
            }
        };
        match h {
            "_sigmoid" => format!(
                "def _sigmoid(x):\n    \"\"\"The logistic function, without overflow for large |x|.\"\"\"\n    e = {ns}.exp(-{ns}.abs(x))\n    return {ns}.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))\n"
            ),
            "_softplus" => format!(
                "def _softplus(x):\n    \"\"\"log(1 + exp(x)), without overflow.\"\"\"\n    return {} + {ns}.log1p({ns}.exp(-{ns}.abs(x)))\n",
                relu("x")
            ),
            "_step" => {
                let cast = match self.be {
                    Backend::Numpy => "np.asarray(x > 0, dtype=np.float64)",
                    Backend::Jax => "(x > 0).astype(jnp.float64)",
                    Backend::Torch => "(x > 0).to(torch.float64)",
                };
                format!("def _step(x):\n    \"\"\"Heaviside step: 1 where x > 0, else 0 (the derivative of relu).\"\"\"\n    return {cast}\n")
            }
            "_logsumexp" => format!(
                "def _logsumexp(x):\n    \"\"\"log Σ exp(x) over all entries, shifted by the maximum for stability.\"\"\"\n    m = {ns}.max(x)\n    return m + {ns}.log({ns}.sum({ns}.exp(x - m)))\n"
            ),
            "_softmax" => format!(
                "def _softmax(x):\n    \"\"\"exp(x) / Σ exp(x) over all entries, shifted by the maximum for stability.\"\"\"\n    e = {ns}.exp(x - {ns}.max(x))\n    return e / {ns}.sum(e)\n"
            ),
            _ => unreachable!("unknown helper {h}"),
        }
    }

    fn module(&self) -> String {
        let spec = self.spec;
        let g = spec.g;
        let be = self.be;
        let mut s = String::new();
        let arg_names: Vec<String> = spec.args.iter().map(|&v| self.var_names[v].clone()).collect();
        let free: Vec<String> = spec
            .free_dims
            .iter()
            .map(|&d| self.dim_names[d as usize].clone())
            .collect();
        let mut params = arg_names.clone();
        params.extend(free.iter().cloned());
        let params = params.join(", ");
        let decls = spec.declarations();
        let keys: Vec<String> = spec.derivs.iter().map(|d| format!("{:?}", d.key)).collect();
        let _ = writeln!(
            s,
            "\"\"\"f and its derivatives, generated by matcalc for {}.",
            be.title()
        );
        let _ = writeln!(s);
        let _ = writeln!(s, "    f = {}", spec.expr);
        if !decls.is_empty() {
            let _ = writeln!(s, "    {}", decls.join("; "));
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "f_and_grad({params}) returns (value, derivatives): value is f, derivatives a dict\n\
             with the keys {} (a mixed second derivative d2f/dxdy is keyed \"x,y\").\n\
             Arguments are the variables in order of first appearance in the expression\n\
             (array-likes, converted to float64); their shapes are checked and the symbolic\n\
             dimensions bound from them{}.",
            keys.join(", "),
            if free.is_empty() {
                String::new()
            } else {
                format!("; the sizes {} follow the variables", free.join(", "))
            }
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "Conventions: vectors are 1-D arrays. The gradient of a scalar f by X has X's shape;\n\
             a derivative of an order-p tensor by an order-q tensor has p + q axes, the\n\
             function's first (a Jacobian is J[i, j] = df_i/dx_j). Symmetric matrix variables\n\
             get the symmetric gradient (G + G^T)/2."
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "check_grad({params}) compares every derivative with central finite differences in\n\
             random directions and returns the relative errors."
        );
        if be == Backend::Jax {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "Importing this module switches JAX to 64-bit floats (jax_enable_x64). f_and_grad\n\
                 can be wrapped in jax.jit{};\nthe shape checks then run once, when it is traced.",
                if free.is_empty() {
                    String::new()
                } else {
                    format!(" (with {} as static arguments)", free.join(", "))
                }
            );
        }
        let _ = writeln!(s, "\"\"\"");
        s.push_str("import itertools\n\n");
        match be {
            Backend::Numpy => s.push_str("import numpy as np\n"),
            Backend::Jax => s.push_str(
                "import jax\nimport numpy as np\n\njax.config.update(\"jax_enable_x64\", True)\nimport jax.numpy as jnp  # noqa: E402\n",
            ),
            Backend::Torch => s.push_str("import numpy as np\nimport torch\n"),
        }
        s.push('\n');
        let arg_keys: Vec<String> = spec.args.iter().map(|&v| format!("{:?}", g.vars[v].name)).collect();
        let _ = writeln!(s, "ARGUMENTS = ({})", tuple_items(&arg_keys));
        let dmap: Vec<String> = spec
            .derivs
            .iter()
            .map(|d| {
                let w: Vec<String> = d.wrt.iter().map(|w| format!("{w:?}")).collect();
                format!("{:?}: ({})", d.key, tuple_items(&w))
            })
            .collect();
        let _ = writeln!(s, "DERIVATIVES = {{{}}}", dmap.join(", "));
        let sym: Vec<String> = g
            .vars
            .iter()
            .filter(|v| v.symmetric)
            .map(|v| format!("{:?}", v.name))
            .collect();
        let _ = writeln!(s, "SYMMETRIC = ({})", tuple_items(&sym));
        s.push_str("\n\n");
        for h in &self.helpers {
            s.push_str(&self.helper_text(h));
            s.push_str("\n\n");
        }
        let _ = writeln!(s, "def f_and_grad({params}):");
        let _ = writeln!(
            s,
            "    \"\"\"Return (f, {{name: derivative}}); see the module docstring.\"\"\""
        );
        for line in &self.body {
            let _ = writeln!(s, "    {line}");
        }
        s.push_str("\n\n");
        s.push_str(&self.check_grad(&arg_names, &free, &params));
        s
    }

    fn check_grad(&self, args: &[String], free: &[String], params: &str) -> String {
        let to_numpy = match self.be {
            Backend::Numpy | Backend::Jax => "np.asarray(a, dtype=np.float64)",
            Backend::Torch => {
                "a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, dtype=np.float64)"
            }
        };
        let pairs: Vec<String> = self
            .spec
            .args
            .iter()
            .zip(args)
            .map(|(&v, n)| format!("{:?}: _to_numpy({n})", self.spec.g.vars[v].name))
            .collect();
        let dims_kw = if free.is_empty() {
            String::new()
        } else {
            format!(", {}", free.join(", "))
        };
        let params = format!("{params}, *");
        format!(
            r#"def _to_numpy(a):
    return {to_numpy}


def check_grad({params}, eps=None, seed=0):
    """Compare every derivative with central finite differences.

    For a k-th derivative D by (x1, ..., xk) and random directions d1, ..., dk, the
    contraction D[d1, ..., dk] is compared with the k-th mixed central difference of f,
    sum over signs s of s1*...*sk * f(x + h*(s1*d1 + ... + sk*dk)) / (2h)^k.
    Returns {{key: relative error}}, relative to the larger of the two norms (at least
    1e-3 * (1 + |f|), so that a zero derivative is not judged on rounding noise);
    errors around 1e-6 or below mean agreement.
    """
    _rng = np.random.default_rng(seed)
    _args = {{{pairs}}}
    _value, _derivs = f_and_grad(*_args.values(){dims_kw})
    _floor = 1e-3 * (1.0 + np.linalg.norm(_to_numpy(_value)))
    _errors = {{}}
    for _key, _wrt in DERIVATIVES.items():
        _k = len(_wrt)
        _h = eps if eps is not None else (1e-6, 1e-4, 1e-3)[min(_k, 3) - 1]
        _dirs = []
        for _w in _wrt:
            _d = _rng.standard_normal(_args[_w].shape)
            if _w in SYMMETRIC:
                _d = (_d + _d.T) / 2
            _dirs.append(_d)
        _exact = _to_numpy(_derivs[_key])
        for _d in reversed(_dirs):
            _exact = np.tensordot(_exact, _d, axes=_d.ndim)
        _approx = 0.0
        for _signs in itertools.product((1.0, -1.0), repeat=_k):
            _shifted = dict(_args)
            for _s, _w, _d in zip(_signs, _wrt, _dirs):
                _shifted[_w] = _shifted[_w] + _s * _h * _d
            _approx = _approx + np.prod(_signs) * _to_numpy(f_and_grad(*_shifted.values(){dims_kw})[0])
        _approx = _approx / (2 * _h) ** _k
        _scale = max(np.linalg.norm(_exact), np.linalg.norm(_approx), _floor)
        _errors[_key] = float(np.linalg.norm(_exact - _approx) / _scale)
    return _errors
"#,
            pairs = pairs.join(", "),
        )
    }
}

fn tuple_items(items: &[String]) -> String {
    match items {
        [one] => format!("{one},"),
        _ => items.join(", "),
    }
}
