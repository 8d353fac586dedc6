//! Rust modules over a small row-major tensor type, with faer 0.24 for
//! matrix products, inverses and determinants.
//!
//! Order-0 values are plain `f64`s; tensors are `rt::Tensor`s. Elementwise
//! chains (sums, scalings, Hadamard products, functions, powers) are fused
//! into one `ew(shape, [inputs], |[inputs]| expression)` loop; products that
//! are matrix products call faer's GEMM with transposes as views; other
//! products and reductions use index-notation kernels (`einsum`, `reindex`),
//! so every node kind, of any order, is supported.

use super::{classify, float_literal, label_str, output_base, prec, Expr, Names, Product, Spec};
use crate::ir::{Dim, Func, Id, Labels, Node};
use rustc_hash::FxHashMap;
use std::fmt::Write as _;

const RUNTIME: &str = include_str!("rust_runtime.rs");

const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for", "if", "impl", "in",
    "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self", "Self", "static", "struct", "super",
    "trait", "true", "type", "unsafe", "use", "where", "while", "async", "await", "dyn", "abstract", "become", "box",
    "do", "final", "macro", "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen", "union",
];

/// Names the generated module uses itself.
const MODULE_NAMES: &[&str] = &[
    "rt",
    "faer",
    "std",
    "core",
    "f64",
    "usize",
    "vec",
    "Vec",
    "Tensor",
    "Output",
    "ew",
    "matmul",
    "matmul_tn",
    "matmul_nt",
    "matmul_tt",
    "dot",
    "outer",
    "trace",
    "diag",
    "diag_matrix",
    "transpose",
    "sum_all",
    "reindex",
    "einsum",
    "inv",
    "det",
    "logdet",
    "logsumexp",
    "softmax",
    "sign",
    "step",
    "sigmoid",
    "softplus",
    "check_derivatives",
    "f_and_grad",
    "check_grad",
    "ARGUMENTS",
    "DERIVATIVES",
    "SYMMETRIC",
    "seed",
    "_args",
];

/// How a node's value is available.
#[derive(Clone, Debug)]
enum Val {
    /// An `f64` expression.
    Scalar(Expr),
    /// A tensor variable; `by_ref` when it is already a reference (an argument).
    Tensor { name: String, by_ref: bool },
    /// An elementwise expression over tensors of the node's shape: in the
    /// text, each input's name stands for its entry.
    Elem(Expr, Vec<String>),
    /// A call to bind to a name: its value is a scalar (`f64`) or a tensor.
    Call { text: String, scalar: bool },
    /// A constant tensor built where it is first needed (identity, literal).
    Lazy(String),
}

struct Gen<'s, 'g> {
    spec: &'s Spec<'g>,
    vals: FxHashMap<Id, Val>,
    var_names: Vec<String>,
    dim_names: Vec<String>,
    names: Names,
    counter: usize,
    body: Vec<String>,
}

/// The generated module.
pub(crate) fn generate(spec: &Spec) -> String {
    let g = spec.g;
    let mut reserved: Vec<&str> = KEYWORDS.to_vec();
    reserved.extend_from_slice(MODULE_NAMES);
    let mut names = Names::new(&reserved);
    let var_names: Vec<String> = g.vars.iter().map(|v| names.claim(&v.name)).collect();
    let dim_names: Vec<String> = g.dims.iter().map(|d| names.claim(&d.name)).collect();
    let mut gen = Gen {
        spec,
        vals: FxHashMap::default(),
        var_names,
        dim_names,
        names,
        counter: 0,
        body: Vec::new(),
    };
    gen.prologue();
    let mut out_names: FxHashMap<Id, String> = FxHashMap::default();
    let value_name = gen.names.claim("value");
    out_names.insert(spec.root, value_name.clone());
    for d in &spec.derivs {
        out_names
            .entry(d.id)
            .or_insert_with(|| gen.names.claim(&output_base(d)));
    }
    for &id in &spec.order {
        let v = gen.node_val(id);
        let v = if let Some(n) = out_names.get(&id) {
            gen.bind(id, v, n.clone())
        } else if gen.needs_binding(id, &v) {
            let n = gen.names.temp(&mut gen.counter);
            gen.bind(id, v, n)
        } else {
            v
        };
        gen.vals.insert(id, v);
    }
    // The returned tensors.
    let mut ret = Vec::new();
    let mut moved: Vec<String> = Vec::new();
    let mut owned = |gen: &Gen, id: Id, name: &str| -> String {
        let v = &gen.vals[&id];
        match v {
            Val::Scalar(_) => format!("Tensor::scalar({name})"),
            Val::Tensor { by_ref: true, .. } => format!("{name}.clone()"),
            _ if moved.contains(&name.to_string()) => format!("{name}.clone()"),
            _ => {
                moved.push(name.to_string());
                name.to_string()
            }
        }
    };
    // Clone first what is returned twice, so moves come last.
    let mut items: Vec<(Option<String>, Id)> = vec![(None, spec.root)];
    items.extend(spec.derivs.iter().map(|d| (Some(d.key.clone()), d.id)));
    let mut texts: Vec<String> = vec![String::new(); items.len()];
    for (k, (_, id)) in items.iter().enumerate().rev() {
        texts[k] = owned(&gen, *id, &out_names[id]);
    }
    for ((key, _), text) in items.iter().zip(&texts).skip(1) {
        ret.push(format!("({:?}, {text})", key.as_deref().unwrap_or_default()));
    }
    gen.body.push(format!("({}, vec![{}])", texts[0], ret.join(", ")));
    gen.module()
}

impl Gen<'_, '_> {
    fn dim(&self, d: Dim) -> String {
        match d {
            Dim::Fixed(n) => n.to_string(),
            Dim::Sym(s) => self.dim_names[s as usize].clone(),
        }
    }

    fn shape_of(&self, id: Id) -> String {
        let dims: Vec<String> = self.spec.g.shape(id).iter().map(|&d| self.dim(d)).collect();
        format!("&[{}]", dims.join(", "))
    }

    fn temp(&mut self) -> String {
        self.names.temp(&mut self.counter)
    }

    fn prologue(&mut self) {
        let g = self.spec.g;
        let mut bound = vec![false; g.dims.len()];
        for &s in &self.spec.free_dims {
            bound[s as usize] = true;
        }
        for &v in &self.spec.args {
            let var = &g.vars[v];
            let n = self.var_names[v].clone();
            let k = var.shape.len();
            let expect: Vec<String> = var.shape.iter().map(|&d| g.dim_name(d)).collect();
            let expect = format!("({})", expect.join(", "));
            self.body.push(format!(
                "assert_eq!({n}.shape.len(), {k}, \"{} must have shape {expect}, got {{:?}}\", {n}.shape);",
                var.name
            ));
            for (axis, &d) in var.shape.iter().enumerate() {
                match d {
                    Dim::Sym(s) if !bound[s as usize] => {
                        bound[s as usize] = true;
                        self.body
                            .push(format!("let {} = {n}.shape[{axis}];", self.dim_names[s as usize]));
                    }
                    _ => {
                        let want = self.dim(d);
                        self.body.push(format!(
                            "assert_eq!({n}.shape[{axis}], {want}, \"{} must have shape {expect}, got {{:?}}\", {n}.shape);",
                            var.name
                        ));
                    }
                }
            }
            if var.symmetric {
                self.body.push(format!(
                    "assert!((0..{n}.data.len()).all(|k| {{ let (i, j) = (k / {n}.shape[1], k % {n}.shape[1]); \
                     ({n}.data[k] - {n}.data[j * {n}.shape[1] + i]).abs() <= 1e-9 * (1.0 + {n}.data[k].abs()) }}), \
                     \"{} must be symmetric\");",
                    var.name
                ));
            }
            if k == 0 {
                self.body.push(format!("let {n}: f64 = {n}.data[0];"));
            }
        }
        for (i, d) in g.dims.iter().enumerate() {
            let (Some((lo, hi)), true) = (d.range, bound[i]) else {
                continue;
            };
            let n = &self.dim_names[i];
            self.body.push(format!(
                "assert!(({lo}..={hi}).contains(&{n}), \"dimension {} = {{}} is outside its range {lo}..{hi}\", {n});",
                d.name
            ));
        }
    }

    /// Whether a value must be bound to a `let` (it is not inlined into its parent).
    fn needs_binding(&self, id: Id, v: &Val) -> bool {
        match v {
            Val::Call { .. } => true,
            Val::Tensor { .. } | Val::Lazy(_) => false,
            Val::Scalar(e) if e.prec == prec::ATOM && is_name(&e.text) => false,
            _ if self.spec.uses(id) >= 2 => !matches!(self.spec.g.node(id), Node::Fill(..) | Node::Const(_)),
            Val::Scalar(_) => {
                // A scalar inside a tensor expression would be computed once per entry.
                match self.spec.parent.get(&id) {
                    Some(&p) => self.spec.g.order(p) > 0 && !matches!(self.spec.g.node(id), Node::Const(_)),
                    None => false,
                }
            }
            Val::Elem(..) => false,
        }
    }

    /// Bind a value to `name` and return how it is referred to from then on.
    fn bind(&mut self, id: Id, v: Val, name: String) -> Val {
        match v {
            Val::Scalar(e) => {
                self.body.push(format!("let {name} = {};", e.text));
                Val::Scalar(Expr::atom(name))
            }
            Val::Tensor { name: src, by_ref } => {
                let r = if by_ref { src } else { format!("&{src}") };
                self.body.push(format!("let {name} = {r}.clone();"));
                Val::Tensor { name, by_ref: false }
            }
            Val::Elem(e, inputs) => {
                let text = self.ew_text(id, &e, &inputs);
                self.body.push(format!("let {name} = {text};"));
                Val::Tensor { name, by_ref: false }
            }
            Val::Lazy(text) => {
                self.body.push(format!("let {name} = {text};"));
                Val::Tensor { name, by_ref: false }
            }
            Val::Call { text, scalar } => {
                self.body.push(format!("let {name} = {text};"));
                if scalar {
                    Val::Scalar(Expr::atom(name))
                } else {
                    Val::Tensor { name, by_ref: false }
                }
            }
        }
    }

    fn ew_text(&self, id: Id, e: &Expr, inputs: &[String]) -> String {
        let shape = self.shape_of(id);
        if inputs.is_empty() {
            return format!("Tensor::full({shape}, {})", e.text);
        }
        let refs: Vec<String> = inputs.iter().map(|n| self.reference(n)).collect();
        format!(
            "ew({shape}, [{}], |[{}]| {})",
            refs.join(", "),
            inputs.join(", "),
            e.text
        )
    }

    /// `&name`, or `name` for arguments (already references).
    fn reference(&self, name: &str) -> String {
        let is_arg = self.spec.args.iter().any(|&v| self.var_names[v] == name);
        if is_arg {
            name.to_string()
        } else {
            format!("&{name}")
        }
    }

    /// A tensor node as a reference expression, binding it to a temporary first if needed.
    fn tensor(&mut self, id: Id) -> String {
        match self.vals[&id].clone() {
            Val::Tensor { name, by_ref } => {
                if by_ref {
                    name
                } else {
                    format!("&{name}")
                }
            }
            v @ (Val::Elem(..) | Val::Lazy(_)) => {
                let n = self.temp();
                let v = self.bind(id, v, n.clone());
                self.vals.insert(id, v);
                format!("&{n}")
            }
            Val::Scalar(e) => format!("&Tensor::scalar({})", e.text),
            Val::Call { .. } => unreachable!("calls are bound where they are made"),
        }
    }

    /// Bind a lazily built constant before its first use in an elementwise expression.
    fn force(&mut self, id: Id) {
        if let Val::Lazy(_) = self.vals[&id] {
            self.tensor(id);
        }
    }

    /// A node as an elementwise expression with its inputs.
    fn elem(&mut self, id: Id) -> (Expr, Vec<String>) {
        self.force(id);
        match &self.vals[&id] {
            Val::Scalar(e) => (e.clone(), Vec::new()),
            Val::Tensor { name, .. } => (Expr::atom(name.clone()), vec![name.clone()]),
            Val::Elem(e, inputs) => (e.clone(), inputs.clone()),
            Val::Call { .. } | Val::Lazy(_) => unreachable!("bound before use"),
        }
    }

    fn float(&self, v: f64) -> Expr {
        match float_literal(v) {
            Some(s) if v < 0.0 => Expr::new(s, prec::UNARY),
            Some(s) => Expr::atom(s),
            None if v.is_nan() => Expr::atom("f64::NAN"),
            None if v > 0.0 => Expr::atom("f64::INFINITY"),
            None => Expr::atom("f64::NEG_INFINITY"),
        }
    }

    /// Wrap an elementwise result: a scalar expression for order 0.
    fn result(&self, id: Id, e: Expr, inputs: Vec<String>) -> Val {
        if self.spec.g.order(id) == 0 {
            debug_assert!(inputs.is_empty());
            Val::Scalar(e)
        } else {
            Val::Elem(e, inputs)
        }
    }

    /// A call returning a tensor, or a scalar (`scalar_result`); an order-0
    /// tensor result is turned into a scalar.
    fn call(&mut self, id: Id, text: String, scalar_result: bool) -> Val {
        let order0 = self.spec.g.order(id) == 0;
        let text = if order0 && !scalar_result {
            format!("{text}.s()")
        } else {
            text
        };
        Val::Call { text, scalar: order0 }
    }

    fn node_val(&mut self, id: Id) -> Val {
        let g = self.spec.g;
        match g.node(id).clone() {
            Node::Var(v) => {
                let name = self.var_names[v as usize].clone();
                if g.order(id) == 0 {
                    Val::Scalar(Expr::atom(name))
                } else {
                    Val::Tensor { name, by_ref: true }
                }
            }
            Node::Const(c) => Val::Scalar(self.float(c.get())),
            Node::Fill(c, _) => Val::Elem(self.float(c.get()), Vec::new()),
            Node::Literal(data, sh) => {
                let vals: Vec<String> = data.iter().map(|v| self.float(v.get()).text).collect();
                let dims: Vec<String> = sh.iter().map(|&d| self.dim(d)).collect();
                Val::Lazy(format!(
                    "Tensor::new(vec![{}], vec![{}])",
                    dims.join(", "),
                    vals.join(", ")
                ))
            }
            Node::Delta(d) => Val::Lazy(format!("Tensor::eye({})", self.dim(d))),
            Node::Add(ts) => {
                let mut text = String::new();
                let mut inputs: Vec<String> = Vec::new();
                for (k, &t) in ts.iter().enumerate() {
                    let (neg, e, ins) = self.signed_term(t);
                    merge(&mut inputs, ins);
                    match (k, neg) {
                        (0, false) => text.push_str(&e.at(prec::ADD)),
                        (0, true) => text.push_str(&format!("-{}", e.at(prec::UNARY))),
                        (_, false) => text.push_str(&format!(" + {}", e.at(prec::ADD + 1))),
                        (_, true) => text.push_str(&format!(" - {}", e.at(prec::ADD + 1))),
                    }
                }
                self.result(id, Expr::new(text, prec::ADD), inputs)
            }
            Node::Mul(a, b, s1, s2, s3) => self.mul_val(id, a, b, s1, s2, s3),
            Node::Reindex(a, ia, out) => {
                let x = self.tensor(a);
                let text = self.reindex_text(&x, &ia, &out);
                self.call(id, text, out.is_empty())
            }
            Node::Map(f, a) => {
                let (x, inputs) = self.elem(a);
                let e = map_text(f, &x);
                self.result(id, e, inputs)
            }
            Node::Pow(a, p) => {
                let (x, inputs) = self.elem(a);
                let p = p.get();
                let e = if p == 0.5 {
                    Expr::atom(format!("{}.sqrt()", x.at(prec::ATOM)))
                } else if p == -1.0 {
                    Expr::new(format!("1.0 / {}", x.at(prec::MUL + 1)), prec::MUL)
                } else if p.fract() == 0.0 && p.abs() <= 64.0 {
                    Expr::atom(format!("{}.powi({})", x.at(prec::ATOM), p as i32))
                } else {
                    Expr::atom(format!("{}.powf({:?})", x.at(prec::ATOM), p))
                };
                self.result(id, e, inputs)
            }
            Node::Inv(a) => {
                let x = self.tensor(a);
                self.call(id, format!("inv({x})"), false)
            }
            Node::Det(a) => {
                let x = self.tensor(a);
                self.call(id, format!("det({x})"), true)
            }
            Node::LogDet(a) => {
                let x = self.tensor(a);
                self.call(id, format!("logdet({x})"), true)
            }
            Node::LogSumExp(a) => {
                let x = self.tensor(a);
                self.call(id, format!("logsumexp({x})"), true)
            }
            Node::Softmax(a) => {
                let x = self.tensor(a);
                self.call(id, format!("softmax({x})"), false)
            }
        }
    }

    /// A term of a sum: (negated, magnitude expression, inputs).
    fn signed_term(&mut self, t: Id) -> (bool, Expr, Vec<String>) {
        let g = self.spec.g;
        if let Node::Fill(c, _) | Node::Const(c) = g.node(t) {
            let v = c.get();
            return (v < 0.0, self.float(v.abs()), Vec::new());
        }
        if let Val::Elem(..) | Val::Scalar(_) = &self.vals[&t] {
            if let Node::Mul(c, x, s1, s2, s3) = g.node(t) {
                let inline = !matches!(&self.vals[&t], Val::Scalar(e) if is_name(&e.text));
                if let (true, true, Some(v)) = (s1.is_empty() && s2 == s3, inline, g.const_value(*c)) {
                    if v < 0.0 {
                        let (x, ins) = self.elem(*x);
                        if v == -1.0 {
                            return (true, x, ins);
                        }
                        let e = Expr::new(format!("{} * {}", self.float(-v).text, x.at(prec::MUL + 1)), prec::MUL);
                        return (true, e, ins);
                    }
                }
            }
        }
        let (e, ins) = self.elem(t);
        (false, e, ins)
    }

    fn reindex_text(&self, x: &str, ia: &[u8], out: &[u8]) -> String {
        if out.is_empty() {
            return format!("sum_all({x})");
        }
        if ia.len() == 2 && out.len() == 2 {
            return format!("transpose({x})");
        }
        format!("reindex({x}, {:?}, {:?})", label_str(ia), label_str(out))
    }

    fn mul_val(&mut self, id: Id, a: Id, b: Id, s1: Labels, s2: Labels, s3: Labels) -> Val {
        let g = self.spec.g;
        match classify(g, a, b, &s1, &s2, &s3) {
            Product::Scaling { scalar, other, from } => {
                let (s, _) = self.elem(scalar);
                // A scalar broadcast to a shape: `ew` takes the shape itself.
                if from.as_ref() == s3.as_ref() && g.uniform_value(other) == Some(1.0) {
                    return self.result(id, s, Vec::new());
                }
                let (x, inputs) = if from.as_ref() == s3.as_ref() {
                    self.elem(other)
                } else {
                    let t = self.tensor(other);
                    let text = self.reindex_text(&t, &from, &s3);
                    let name = self.temp();
                    self.body.push(format!("let {name} = {text};"));
                    if s3.is_empty() {
                        (Expr::atom(name), Vec::new())
                    } else {
                        (Expr::atom(name.clone()), vec![name])
                    }
                };
                let e = match g.const_value(scalar) {
                    Some(-1.0) => Expr::new(format!("-{}", x.at(prec::UNARY)), prec::UNARY),
                    _ => Expr::new(format!("{} * {}", s.at(prec::MUL), x.at(prec::MUL + 1)), prec::MUL),
                };
                self.result(id, e, inputs)
            }
            Product::Hadamard => {
                let (x, mut inputs) = self.elem(a);
                let (y, more) = self.elem(b);
                merge(&mut inputs, more);
                let e = Expr::new(format!("{} * {}", x.at(prec::MUL), y.at(prec::MUL + 1)), prec::MUL);
                self.result(id, e, inputs)
            }
            Product::Trace(x) => {
                let x = self.tensor(x);
                self.call(id, format!("trace({x})"), true)
            }
            Product::DiagOf(x) => {
                let x = self.tensor(x);
                self.call(id, format!("diag({x})"), false)
            }
            Product::DiagMatrix(x) => {
                let x = self.tensor(x);
                self.call(id, format!("diag_matrix({x})"), false)
            }
            Product::Outer(x, y) => {
                let (x, y) = (self.tensor(x), self.tensor(y));
                self.call(id, format!("outer({x}, {y})"), false)
            }
            Product::MatMul(l, r) => {
                let (x, y) = (self.tensor(l.id), self.tensor(r.id));
                if g.order(l.id) == 1 && g.order(r.id) == 1 {
                    return self.call(id, format!("dot({x}, {y})"), true);
                }
                let f = match (l.transposed, r.transposed) {
                    (false, false) => "matmul",
                    (true, false) => "matmul_tn",
                    (false, true) => "matmul_nt",
                    (true, true) => "matmul_tt",
                };
                self.call(id, format!("{f}({x}, {y})"), false)
            }
            Product::Broadcast | Product::Einsum => {
                let (x, y) = (self.tensor(a), self.tensor(b));
                let text = format!(
                    "einsum({x}, {:?}, {y}, {:?}, {:?})",
                    label_str(&s1),
                    label_str(&s2),
                    label_str(&s3)
                );
                self.call(id, text, false)
            }
        }
    }

    fn module(&self) -> String {
        let spec = self.spec;
        let g = spec.g;
        let mut s = String::new();
        let arg_names: Vec<String> = spec.args.iter().map(|&v| self.var_names[v].clone()).collect();
        let free: Vec<String> = spec
            .free_dims
            .iter()
            .map(|&d| self.dim_names[d as usize].clone())
            .collect();
        let mut params: Vec<String> = arg_names.iter().map(|n| format!("{n}: &Tensor")).collect();
        params.extend(free.iter().map(|d| format!("{d}: usize")));
        let params = params.join(", ");
        let keys: Vec<String> = spec.derivs.iter().map(|d| format!("{:?}", d.key)).collect();
        let _ = writeln!(
            s,
            "//! f and its derivatives, generated by matcalc for Rust (faer 0.24)."
        );
        let _ = writeln!(s, "//!");
        let _ = writeln!(s, "//!     f = {}", spec.expr);
        let decls = spec.declarations();
        if !decls.is_empty() {
            let _ = writeln!(s, "//!     {}", decls.join("; "));
        }
        let _ = writeln!(s, "//!");
        let _ = writeln!(
            s,
            "//! `f_and_grad({})` returns `(value, derivatives)`: the value of f and the\n\
             //! derivatives as `(key, tensor)` pairs with the keys {} (a mixed second\n\
             //! derivative d2f/dxdy is keyed \"x,y\"). Arguments are the variables in order of\n\
             //! first appearance in the expression, as row-major `Tensor`s (`Tensor::new(shape,\n\
             //! data)`, `Tensor::from_mat(faer_matrix.as_ref())`); their shapes are checked and\n\
             //! the symbolic dimensions bound from them{}.",
            arg_names.join(", "),
            keys.join(", "),
            if free.is_empty() {
                String::new()
            } else {
                format!("; {} are given as extra arguments", free.join(", "))
            }
        );
        let _ = writeln!(s, "//!");
        let _ = writeln!(
            s,
            "//! Conventions: the gradient of a scalar f by X has X's shape; a derivative of an\n\
             //! order-p tensor by an order-q tensor has p + q axes, the function's first (a\n\
             //! Jacobian is J[i, j] = df_i/dx_j). Symmetric matrix variables get the symmetric\n\
             //! gradient (G + G^T)/2. `check_grad` compares every derivative with central finite\n\
             //! differences in random directions."
        );
        let _ = writeln!(s, "//!");
        let _ = writeln!(
            s,
            "//! Standalone: add `faer = \"0.24\"` to Cargo.toml (`default-features = false,\n\
             //! features = [\"std\", \"linalg\"]` is enough) and include this file as a module."
        );
        s.push_str("#![allow(non_snake_case, unused_variables, unused_imports, dead_code, clippy::all)]\n\n");
        s.push_str("pub use rt::Tensor;\nuse rt::*;\n\n");
        let arg_keys: Vec<String> = spec.args.iter().map(|&v| format!("{:?}", g.vars[v].name)).collect();
        let _ = writeln!(s, "/// The variables, in argument order.");
        let _ = writeln!(
            s,
            "pub const ARGUMENTS: [&str; {}] = [{}];",
            arg_keys.len(),
            arg_keys.join(", ")
        );
        let dmap: Vec<String> = spec
            .derivs
            .iter()
            .map(|d| {
                let w: Vec<String> = d.wrt.iter().map(|w| format!("{w:?}")).collect();
                format!("({:?}, &[{}])", d.key, w.join(", "))
            })
            .collect();
        let _ = writeln!(
            s,
            "/// Each derivative's key and the variables it is taken by, in order."
        );
        let _ = writeln!(
            s,
            "pub const DERIVATIVES: [(&str, &[&str]); {}] = [{}];",
            dmap.len(),
            dmap.join(", ")
        );
        let sym: Vec<String> = g
            .vars
            .iter()
            .filter(|v| v.symmetric)
            .map(|v| format!("{:?}", v.name))
            .collect();
        let _ = writeln!(s, "/// Variables declared symmetric.");
        let _ = writeln!(s, "pub const SYMMETRIC: [&str; {}] = [{}];", sym.len(), sym.join(", "));
        s.push('\n');
        let _ = writeln!(s, "/// f and its derivatives; see the module documentation.");
        let _ = writeln!(s, "pub fn f_and_grad({params}) -> Output {{");
        for line in &self.body {
            let _ = writeln!(s, "    {line}");
        }
        s.push_str("}\n\n");
        // check_grad
        let mut cg_params = params.clone();
        if !cg_params.is_empty() {
            cg_params.push_str(", ");
        }
        cg_params.push_str("seed: u64");
        let clones: Vec<String> = arg_names.iter().map(|n| format!("{n}.clone()")).collect();
        let call_args: Vec<String> = (0..arg_names.len())
            .map(|k| format!("&_args[{k}]"))
            .chain(free.iter().cloned())
            .collect();
        let _ = writeln!(
            s,
            "/// Relative errors of every derivative against central finite differences in\n\
             /// random directions (the k-th mixed difference of f for a k-th derivative),\n\
             /// relative to the larger norm but at least 1e-3·(1 + |f|); values around 1e-6 or\n\
             /// below mean agreement."
        );
        let _ = writeln!(s, "pub fn check_grad({cg_params}) -> Vec<(&'static str, f64)> {{");
        let _ = writeln!(s, "    let _args = [{}];", clones.join(", "));
        let _ = writeln!(
            s,
            "    check_derivatives(&_args, &ARGUMENTS, &DERIVATIVES, &SYMMETRIC, seed, |_args| {{\n        f_and_grad({})\n    }})",
            call_args.join(", ")
        );
        s.push_str("}\n\n");
        let runtime = RUNTIME
            .split_once("/// The small runtime")
            .map(|(_, rest)| format!("/// The small runtime{rest}"))
            .unwrap_or_else(|| RUNTIME.to_string());
        s.push_str(&runtime);
        s
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

fn merge(into: &mut Vec<String>, more: Vec<String>) {
    for n in more {
        if !into.contains(&n) {
            into.push(n);
        }
    }
}

fn map_text(f: Func, x: &Expr) -> Expr {
    let r = x.at(prec::ATOM);
    let text = match f {
        Func::Sin => format!("{r}.sin()"),
        Func::Cos => format!("{r}.cos()"),
        Func::Tan => format!("{r}.tan()"),
        Func::Asin => format!("{r}.asin()"),
        Func::Acos => format!("{r}.acos()"),
        Func::Atan => format!("{r}.atan()"),
        Func::Exp => format!("{r}.exp()"),
        Func::Log => format!("{r}.ln()"),
        Func::Abs => format!("{r}.abs()"),
        Func::Tanh => format!("{r}.tanh()"),
        Func::Relu => format!("{r}.max(0.0)"),
        Func::Sign => format!("sign({})", x.text),
        Func::Step => format!("step({})", x.text),
        Func::Sigmoid => format!("sigmoid({})", x.text),
        Func::Softplus => format!("softplus({})", x.text),
    };
    Expr::atom(text)
}
