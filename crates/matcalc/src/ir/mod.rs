//! The IR: a hash-consed DAG of tensor nodes in index (Einstein) notation.
//!
//! Every node has a shape (a list of [`Dim`]s). The heart is one general product,
//! [`Node::Mul`]: `C[s3] = Σ A[s1]·B[s2]` summed over the labels not in `s3`.
//! Matrix and matrix–vector products, inner, outer and Hadamard products,
//! traces and diagonals are all instances. Building a node goes through the
//! smart constructors in [`build`], which normalize and simplify locally, so a
//! node in the arena is always in normal form and equality is an id compare.

pub mod build;
mod labels;

pub use labels::Labels;

/// Most axes a node may have.
pub fn labels_max_order() -> usize {
    labels::MAX_ORDER
}

use rustc_hash::FxHashMap;
use std::fmt;

/// A node id: an index into the graph's arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub u32);

impl Id {
    /// As an index.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A dimension: a fixed size or a symbol (`n`, `r`) kept symbolic in results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    /// A known size.
    Fixed(u64),
    /// A symbolic size, an index into [`Graph::dims`].
    Sym(u32),
}

/// A shape: one dimension per axis.
pub type Shape = Vec<Dim>;

/// A dimension symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DimInfo {
    /// Its name, e.g. `n`.
    pub name: String,
    /// Optional inclusive range of values, e.g. `1..95`.
    pub range: Option<(u64, u64)>,
    /// Whether the user declared it or it was invented for an unconstrained axis.
    pub assumed: bool,
}

/// A variable of the expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VarInfo {
    /// Its name.
    pub name: String,
    /// Its shape (order 0, 1 or 2).
    pub shape: Shape,
    /// Declared `symmetric(n)`.
    pub symmetric: bool,
}

/// Elementwise scalar functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Func {
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Exp,
    Log,
    Abs,
    Sign,
    Tanh,
    Sigmoid,
    Softplus,
    Relu,
    /// Heaviside step (1 for x > 0, else 0): the derivative of relu.
    Step,
}

impl Func {
    /// Every function, for tables and tests.
    pub const ALL: [Func; 15] = [
        Func::Sin,
        Func::Cos,
        Func::Tan,
        Func::Asin,
        Func::Acos,
        Func::Atan,
        Func::Exp,
        Func::Log,
        Func::Abs,
        Func::Sign,
        Func::Tanh,
        Func::Sigmoid,
        Func::Softplus,
        Func::Relu,
        Func::Step,
    ];

    /// The name in the input language.
    pub fn name(self) -> &'static str {
        match self {
            Func::Sin => "sin",
            Func::Cos => "cos",
            Func::Tan => "tan",
            Func::Asin => "asin",
            Func::Acos => "acos",
            Func::Atan => "atan",
            Func::Exp => "exp",
            Func::Log => "log",
            Func::Abs => "abs",
            Func::Sign => "sign",
            Func::Tanh => "tanh",
            Func::Sigmoid => "sigmoid",
            Func::Softplus => "softplus",
            Func::Relu => "relu",
            Func::Step => "step",
        }
    }

    /// Look a function up by its input-language name.
    pub fn from_name(name: &str) -> Option<Func> {
        Func::ALL.iter().copied().find(|f| f.name() == name)
    }

    /// Apply to a number.
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Func::Sin => x.sin(),
            Func::Cos => x.cos(),
            Func::Tan => x.tan(),
            Func::Asin => x.asin(),
            Func::Acos => x.acos(),
            Func::Atan => x.atan(),
            Func::Exp => x.exp(),
            Func::Log => x.ln(),
            Func::Abs => x.abs(),
            Func::Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            Func::Tanh => x.tanh(),
            Func::Sigmoid => {
                if x >= 0.0 {
                    1.0 / (1.0 + (-x).exp())
                } else {
                    let e = x.exp();
                    e / (1.0 + e)
                }
            }
            Func::Softplus => {
                if x > 30.0 {
                    x + (-x).exp().ln_1p()
                } else {
                    x.exp().ln_1p()
                }
            }
            Func::Relu => x.max(0.0),
            Func::Step => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }

    /// Where the function is not differentiable (a kink or jump at 0).
    pub fn has_kink_at_zero(self) -> bool {
        matches!(self, Func::Abs | Func::Sign | Func::Relu | Func::Step)
    }
}

/// A float stored as bits so nodes can be hashed.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct F64(pub u64);

impl F64 {
    /// Wrap a float (normalizing -0.0 to 0.0).
    pub fn new(v: f64) -> F64 {
        F64(if v == 0.0 { 0.0f64 } else { v }.to_bits())
    }
    /// The value.
    pub fn get(self) -> f64 {
        f64::from_bits(self.0)
    }
}

impl fmt::Debug for F64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

/// A node of the DAG. Children are [`Id`]s of earlier nodes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    /// A variable, an index into [`Graph::vars`].
    Var(u32),
    /// A scalar constant.
    Const(F64),
    /// A tensor (order ≥ 1) whose entries all equal one constant: zeros, ones.
    Fill(F64, Shape),
    /// A literal tensor (from `[1 2; 3 4]`): row-major data and shape.
    Literal(Box<[F64]>, Shape),
    /// The identity matrix (Kronecker delta) of the given size.
    Delta(Dim),
    /// The sum of at least two terms of the same shape, sorted by id.
    Add(Box<[Id]>),
    /// The general product `out[s3] = Σ a[s1]·b[s2]`.
    Mul(Id, Id, Labels, Labels, Labels),
    /// Permute and/or sum axes: `out[o] = Σ a[i]`, `o ⊆ i`.
    Reindex(Id, Labels, Labels),
    /// An elementwise function.
    Map(Func, Id),
    /// An elementwise power with a constant exponent.
    Pow(Id, F64),
    /// Matrix inverse.
    Inv(Id),
    /// Determinant (a scalar).
    Det(Id),
    /// log |det|.
    LogDet(Id),
    /// log Σ exp(xᵢ) over all entries (a scalar).
    LogSumExp(Id),
    /// exp(x) / Σ exp(x) (same shape as x).
    Softmax(Id),
}

impl Node {
    /// The children, in order.
    pub fn children(&self) -> Vec<Id> {
        let mut out = Vec::new();
        self.for_each_child(|c| out.push(c));
        out
    }

    /// Visit the children, in order: the one place that knows every node's children.
    pub fn for_each_child(&self, mut f: impl FnMut(Id)) {
        match self {
            Node::Var(_) | Node::Const(_) | Node::Fill(..) | Node::Literal(..) | Node::Delta(_) => {}
            Node::Add(ts) => ts.iter().copied().for_each(f),
            Node::Mul(a, b, ..) => {
                f(*a);
                f(*b)
            }
            Node::Reindex(a, ..)
            | Node::Map(_, a)
            | Node::Pow(a, _)
            | Node::Inv(a)
            | Node::Det(a)
            | Node::LogDet(a)
            | Node::LogSumExp(a)
            | Node::Softmax(a) => f(*a),
        }
    }
}

/// The arena: nodes, their shapes, the interner, and the variable and dimension tables.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    nodes: Vec<Node>,
    shapes: Vec<Shape>,
    interner: FxHashMap<Node, Id>,
    /// Variables, indexed by [`Node::Var`].
    pub vars: Vec<VarInfo>,
    /// Dimension symbols, indexed by [`Dim::Sym`].
    pub dims: Vec<DimInfo>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }

    /// The node behind an id.
    pub fn node(&self, id: Id) -> &Node {
        &self.nodes[id.index()]
    }

    /// The shape of a node.
    pub fn shape(&self, id: Id) -> &[Dim] {
        &self.shapes[id.index()]
    }

    /// The order (number of axes) of a node.
    pub fn order(&self, id: Id) -> usize {
        self.shapes[id.index()].len()
    }

    /// Number of nodes in the arena.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the arena is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Insert a node (or find the existing one). Callers guarantee normal form;
    /// use the smart constructors in [`build`] instead of calling this directly.
    pub(crate) fn intern(&mut self, node: Node, shape: Shape) -> Id {
        if let Some(&id) = self.interner.get(&node) {
            debug_assert_eq!(self.shapes[id.index()], shape, "{node:?}");
            return id;
        }
        let id = Id(self.nodes.len() as u32);
        self.nodes.push(node.clone());
        self.shapes.push(shape);
        self.interner.insert(node, id);
        id
    }

    /// Add a dimension symbol (or find one with the same name).
    pub fn dim_symbol(&mut self, name: &str, range: Option<(u64, u64)>, assumed: bool) -> Dim {
        if let Some(i) = self.dims.iter().position(|d| d.name == name) {
            return Dim::Sym(i as u32);
        }
        self.dims.push(DimInfo {
            name: name.to_string(),
            range,
            assumed,
        });
        Dim::Sym(self.dims.len() as u32 - 1)
    }

    /// Add a variable and return its node.
    pub fn var(&mut self, name: &str, shape: Shape, symmetric: bool) -> Id {
        let index = match self.vars.iter().position(|v| v.name == name) {
            Some(i) => i,
            None => {
                self.vars.push(VarInfo {
                    name: name.to_string(),
                    shape: shape.clone(),
                    symmetric,
                });
                self.vars.len() - 1
            }
        };
        let shape = self.vars[index].shape.clone();
        self.intern(Node::Var(index as u32), shape)
    }

    /// The variable index of a name.
    pub fn var_index(&self, name: &str) -> Option<usize> {
        self.vars.iter().position(|v| v.name == name)
    }

    /// A dimension as text.
    pub fn dim_name(&self, d: Dim) -> String {
        match d {
            Dim::Fixed(n) => n.to_string(),
            Dim::Sym(i) => self.dims[i as usize].name.clone(),
        }
    }

    /// A shape as text, e.g. `r×100`.
    pub fn shape_name(&self, shape: &[Dim]) -> String {
        if shape.is_empty() {
            return "scalar".to_string();
        }
        shape.iter().map(|&d| self.dim_name(d)).collect::<Vec<_>>().join("×")
    }

    /// Nodes reachable from `roots`, children before parents (iterative: no recursion).
    pub fn topo_order(&self, roots: &[Id]) -> Vec<Id> {
        let mut seen = vec![false; self.nodes.len()];
        let mut order = Vec::new();
        let mut stack: Vec<(Id, bool)> = roots.iter().rev().map(|&r| (r, false)).collect();
        while let Some((id, expanded)) = stack.pop() {
            if expanded {
                order.push(id);
                continue;
            }
            if seen[id.index()] {
                continue;
            }
            seen[id.index()] = true;
            stack.push((id, true));
            let children = self.node(id).children();
            for &c in children.iter().rev() {
                if !seen[c.index()] {
                    stack.push((c, false));
                }
            }
        }
        order
    }

    /// The length of the longest path from `root` to a leaf.
    pub fn depth(&self, root: Id) -> usize {
        let mut depth: FxHashMap<Id, usize> = FxHashMap::default();
        for id in self.topo_order(&[root]) {
            let mut d = 0;
            self.node(id).for_each_child(|c| d = d.max(depth[&c]));
            depth.insert(id, d + 1);
        }
        depth[&root]
    }

    /// Whether `id` depends on any of the variables (by index).
    pub fn depends_on(&self, roots: &[Id], vars: &[usize]) -> Vec<bool> {
        let mut dep = vec![false; self.nodes.len()];
        for id in self.topo_order(roots) {
            let d = match self.node(id) {
                Node::Var(v) => vars.contains(&(*v as usize)),
                n => {
                    let mut any = false;
                    n.for_each_child(|c| any |= dep[c.index()]);
                    any
                }
            };
            dep[id.index()] = d;
        }
        dep
    }
}
