//! The engine as a JSON-friendly API: requests and responses are serde types,
//! errors are [`ApiError`] values with spans. The web server (`matcalc serve`)
//! is a thin HTTP layer over [`parse`], [`derive`], [`eval`] and [`check`];
//! the CLI reads its input and evaluates through the same functions.
//!
//! ```
//! use matcalc::api::{derive, DeriveRequest};
//! let req: DeriveRequest = serde_json::from_str(r#"{
//!     "expr": "norm2(sin(W2*cos(W1*x)))^2",
//!     "decls": "W1: matrix(r, 100); W2: matrix(100, r)",
//!     "wrt": ["x"]
//! }"#).unwrap();
//! let res = derive(&req).unwrap();
//! assert_eq!(res.derivatives[0].kind, "gradient");
//! assert!(res.forms.cascade.mathml.starts_with("<math"));
//! ```

use crate::codegen::{self, Target};
use crate::error::{Error, ErrorKind, Origin, Result};
use crate::eval::{check as fd, interp, values, Tensor};
use crate::input::Source;
use crate::ir::Graph;
use crate::render::mexpr::M;
use crate::render::print::Style;
use crate::render::{self, mathml, Form};
use crate::report::{self, TextOptions};
use crate::{Derivative, Problem};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// The problem as given: an expression (our syntax or LaTeX) and declarations.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ProblemInput {
    /// The expression, in our syntax or LaTeX (detected like the CLI does).
    pub expr: String,
    /// Declarations in our syntax, `;`-separated: `W1: matrix(r, 100); r: dim in 1..95`.
    #[serde(default)]
    pub decls: String,
    /// Read the expression as LaTeX even if it does not look like it.
    #[serde(default)]
    pub latex: bool,
}

/// `POST /api/parse`: how the input is read, before anything is differentiated.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ParseRequest {
    /// The problem.
    #[serde(flatten)]
    pub input: ProblemInput,
}

/// Which presentation of the result a client shows first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FormName {
    /// One expression.
    #[default]
    Nested,
    /// Named intermediates.
    Cascade,
    /// The cascade with Diag matrices.
    Diag,
}

impl From<FormName> for Form {
    fn from(f: FormName) -> Form {
        match f {
            FormName::Nested => Form::Nested,
            FormName::Cascade => Form::Cascade,
            FormName::Diag => Form::Diag,
        }
    }
}

fn one() -> usize {
    1
}

fn yes() -> bool {
    true
}

/// `POST /api/derive`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct DeriveRequest {
    /// The problem.
    #[serde(flatten)]
    pub input: ProblemInput,
    /// Variables to differentiate by; empty: the ones LaTeX input names (`L(x) :=`).
    #[serde(default)]
    pub wrt: Vec<String>,
    /// Derivative order (1: gradient/Jacobian, 2: Hessian, …).
    #[serde(default = "one")]
    pub order: usize,
    /// The form the client shows first (every form is returned).
    #[serde(default)]
    pub form: FormName,
    /// Generate code (NumPy, JAX, PyTorch, Rust).
    #[serde(default = "yes")]
    pub code: bool,
}

/// `POST /api/eval`: values inline, as in `matcalc eval --at file.json`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct EvalRequest {
    /// The problem.
    #[serde(flatten)]
    pub input: ProblemInput,
    /// Values: an object mapping names to numbers, arrays, or arrays of rows.
    pub values: Value,
    /// Variables to differentiate by (may be empty: the value only).
    #[serde(default)]
    pub wrt: Vec<String>,
    /// Derivative order.
    #[serde(default = "one")]
    pub order: usize,
    /// Sizes of dimensions that no value determines.
    #[serde(default)]
    pub dims: BTreeMap<String, usize>,
}

/// `POST /api/check`: finite differences at random points.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct CheckRequest {
    /// The problem.
    #[serde(flatten)]
    pub input: ProblemInput,
    /// Variables to differentiate by; empty: the ones LaTeX input names.
    #[serde(default)]
    pub wrt: Vec<String>,
    /// Derivative order.
    #[serde(default = "one")]
    pub order: usize,
    /// Fixed dimension sizes; others are drawn from their ranges.
    #[serde(default)]
    pub dims: BTreeMap<String, usize>,
    /// Random seed.
    #[serde(default = "one_u64")]
    pub seed: u64,
    /// Number of random points (at most [`Limits::max_trials`]).
    #[serde(default = "three")]
    pub trials: usize,
    /// Relative tolerance.
    #[serde(default = "tolerance")]
    pub tolerance: f64,
}

fn one_u64() -> u64 {
    1
}

fn three() -> usize {
    3
}

fn tolerance() -> f64 {
    1e-5
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

/// How the input was read.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct InputEcho {
    /// `matcalc` or `latex`.
    pub syntax: String,
    /// The expression in our syntax.
    pub expr: String,
    /// All declarations in our syntax (given, then read from LaTeX).
    pub decls: String,
    /// Variables the input names to differentiate by (LaTeX `L(x) :=`).
    pub wrt: Vec<String>,
}

/// A formula in every format.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Formula {
    /// Unicode text.
    pub text: String,
    /// LaTeX.
    pub latex: String,
    /// MathML (a `<math>` element).
    pub mathml: String,
    /// The input language (parses back); `null` for index notation.
    pub expr: Option<String>,
}

/// The function, with its shape.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Function {
    /// The function as read, rendered.
    #[serde(flatten)]
    pub formula: Formula,
    /// Its shape: dimension names or sizes.
    pub shape: Vec<String>,
}

/// A variable of the expression.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Variable {
    /// Its name.
    pub name: String,
    /// `scalar`, `vector`, `matrix` or `symmetric`.
    pub kind: String,
    /// Its dimensions (names or sizes).
    pub dims: Vec<String>,
    /// Declared (`true`) or assumed from the naming convention and the expression.
    pub declared: bool,
    /// As a declaration: `x: vector(100)`.
    pub decl: String,
}

/// A dimension symbol.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Dimension {
    /// Its name.
    pub name: String,
    /// Declared range, inclusive.
    pub range: Option<(u64, u64)>,
    /// Invented for an unconstrained axis (not declared).
    pub assumed: bool,
}

/// `POST /api/parse`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ParseResponse {
    /// How the input was read.
    pub input: InputEcho,
    /// The function.
    pub function: Function,
    /// Its variables, in the graph's order.
    pub variables: Vec<Variable>,
    /// Its dimension symbols.
    pub dims: Vec<Dimension>,
    /// Undeclared names and what was assumed, as declarations.
    pub assumed: Vec<String>,
}

/// A derivative's label and layout.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DerivativeInfo {
    /// Variables differentiated by, one per order.
    pub wrt: Vec<String>,
    /// `∂f/∂x` in text, LaTeX and MathML.
    pub label: Rendering,
    /// `gradient`, `jacobian`, `hessian`, `mixed` or `tensor`.
    pub kind: String,
    /// Its layout in words (`gradient: same shape as x (100)`).
    pub layout: String,
    /// Its shape.
    pub shape: Vec<String>,
    /// The key of this derivative in eval results and generated code.
    pub key: String,
}

/// Something rendered in three formats.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Rendering {
    /// Unicode text.
    pub text: String,
    /// LaTeX.
    pub latex: String,
    /// MathML (a label: no `<math>` wrapper).
    pub mathml: String,
}

/// A named intermediate of a cascade: `a = W1 x`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Definition {
    /// The name.
    pub name: String,
    /// The definition.
    #[serde(flatten)]
    pub formula: Formula,
}

/// The derivatives in one form.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FormBlock {
    /// Named intermediates (`where` lines), empty in the nested form.
    pub definitions: Vec<Definition>,
    /// One result per derivative.
    pub results: Vec<Formula>,
    /// The whole derivation as `matcalc derive` prints it.
    pub text: String,
    /// The whole derivation as a LaTeX `aligned` environment.
    pub latex: String,
    /// The whole derivation as a MathML display (`mtable`, one row per line).
    pub mathml: String,
}

/// Every form.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Forms {
    /// One expression; `null` when it would be too large (see the notes).
    pub nested: Option<FormBlock>,
    /// Named intermediates.
    pub cascade: FormBlock,
    /// The cascade with Diag matrices.
    pub diag: FormBlock,
}

/// Generated code for one target.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Code {
    /// `numpy`, `jax`, `torch` or `rust`.
    pub target: String,
    /// The module, or `null` if this problem cannot be generated for the target.
    pub source: Option<String>,
    /// Why not, when `source` is `null`.
    pub error: Option<String>,
}

/// The step-by-step derivation (`derive --explain`) as text, Markdown, LaTeX (one
/// `aligned` block) and HTML (a table of lines whose formulas are MathML).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Explanation {
    /// Unicode text.
    pub text: String,
    /// Markdown with `$…$` math.
    pub markdown: String,
    /// LaTeX.
    pub latex: String,
    /// HTML: `<table class="derivation">`, one row per line, formulas as MathML `<math>`.
    pub html: String,
}

/// `POST /api/derive`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DeriveResponse {
    /// How the input was read, the function, variables and dimensions.
    #[serde(flatten)]
    pub parsed: ParseResponse,
    /// The variables differentiated by.
    pub wrt: Vec<String>,
    /// The order.
    pub order: usize,
    /// The form asked for (every form is in `forms`).
    pub form: FormName,
    /// One entry per derivative.
    pub derivatives: Vec<DerivativeInfo>,
    /// The derivatives in every form.
    pub forms: Forms,
    /// Notes about the result (e.g. why the nested form is missing).
    pub notes: Vec<String>,
    /// Generated code (empty if not asked for).
    pub code: Vec<Code>,
    /// The step-by-step derivation, when available.
    pub explanation: Option<Explanation>,
}

/// `POST /api/eval`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EvalResponse {
    /// The function's value.
    pub value: Value,
    /// Derivatives keyed by variable (`x`; mixed: `x,y`).
    pub derivatives: serde_json::Map<String, Value>,
    /// Warnings (subgradient conventions used).
    pub warnings: Vec<String>,
    /// Values given for names the expression does not use.
    pub ignored: Vec<String>,
}

/// `POST /api/check`: every comparison (`what`, `trial`, `dims`, `kind`:
/// `direction` or `full`, `error`), the worst error, `passed`.
pub type CheckResponse = fd::CheckReport;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A byte range in the expression or the declarations.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiSpan {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

/// Which text a span points into.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ApiOrigin {
    /// The expression.
    Expr,
    /// The declarations.
    Decls,
}

impl From<Origin> for ApiOrigin {
    fn from(o: Origin) -> ApiOrigin {
        match o {
            Origin::Expr => ApiOrigin::Expr,
            Origin::Decls => ApiOrigin::Decls,
        }
    }
}

/// What kind of error: the engine's kinds (`syntax`, `name`, `shape`,
/// `usage`, `value`, `numeric`, `limit`), or the server's own.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum ApiErrorKind {
    /// From the engine.
    Engine(ErrorKind),
    /// From the HTTP layer.
    Server(ServerErrorKind),
}

/// Errors of the HTTP layer, not of the math.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ServerErrorKind {
    /// The request itself: not JSON, missing fields, too large.
    Request,
    /// The computation took too long.
    Timeout,
    /// Too many computations at once.
    Busy,
    /// A bug in matcalc.
    Internal,
}

/// A labelled span.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ApiLabel {
    /// Where.
    pub span: ApiSpan,
    /// Which text.
    pub origin: ApiOrigin,
    /// What to say there.
    pub message: String,
}

/// An error as the API returns it: never a panic, always a message.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ApiError {
    /// What kind of error.
    pub kind: ApiErrorKind,
    /// One line.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// The primary span (bytes, UTF-8), if any.
    pub span: Option<ApiSpan>,
    /// Which text the primary span is in.
    pub origin: Option<ApiOrigin>,
    /// Every labelled span, the primary first.
    pub labels: Vec<ApiLabel>,
}

impl ApiError {
    /// An error of the request itself (not the math): bad JSON, limits, time.
    pub fn request(kind: ApiErrorKind, message: impl Into<String>, hint: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
            hint: Some(hint.into()),
            span: None,
            origin: None,
            labels: Vec::new(),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let labels: Vec<ApiLabel> = e
            .labels
            .iter()
            .map(|l| ApiLabel {
                span: ApiSpan {
                    start: l.span.start,
                    end: l.span.end,
                },
                origin: l.origin.into(),
                message: l.message.clone(),
            })
            .collect();
        ApiError {
            kind: ApiErrorKind::Engine(e.kind),
            message: e.message,
            hint: e.hint,
            span: labels.first().map(|l| l.span),
            origin: labels.first().map(|l| l.origin),
            labels,
        }
    }
}

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

/// Bounds on what one API request may compute (the server's time bound is
/// separate).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Highest derivative order.
    pub max_order: usize,
    /// Most random points in a check.
    pub max_trials: usize,
    /// Largest tensor (entries) an evaluation or check may build.
    pub max_elements: usize,
    /// Largest size a check draws for a dimension with a wider declared range.
    pub max_check_dim: usize,
    /// Largest nested form returned (expanded nodes; see [`render::expanded_size`]):
    /// beyond it only the cascade forms, which grow linearly, are returned.
    pub max_nested: u64,
}

/// The limits [`derive`], [`eval`] and [`check`] apply.
pub const LIMITS: Limits = Limits {
    max_order: 4,
    max_trials: 10,
    max_elements: 4_000_000,
    max_check_dim: 200,
    max_nested: 20_000,
};

fn check_order(order: usize) -> Result<()> {
    if order > LIMITS.max_order {
        return Err(Error::new(
            ErrorKind::Limit,
            format!("order {order} is above the limit of {}", LIMITS.max_order),
        )
        .hint("ask for a lower order"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// parse
// ---------------------------------------------------------------------------

/// Read the input and type it: how it was read, the function, its variables.
pub fn parse(req: &ParseRequest) -> Result<ParseResponse, ApiError> {
    let src = read(&req.input)?;
    let p = src.problem()?;
    Ok(parsed(&src, &p)?)
}

fn read(i: &ProblemInput) -> Result<Source> {
    Source::read(&i.expr, &i.decls, i.latex)
}

fn parsed(src: &Source, p: &Problem) -> Result<ParseResponse> {
    let echo = src.echo();
    let g = &p.graph;
    let reserved = p.reserved_names();
    let f = render::recover(g, &[p.root], Form::Nested, None, &reserved);
    Ok(ParseResponse {
        input: InputEcho {
            syntax: if src.is_latex() { "latex" } else { "matcalc" }.to_string(),
            expr: echo.expr,
            decls: echo.decls,
            wrt: echo.wrt,
        },
        function: Function {
            formula: formula(&f.results[0]),
            shape: report::shape_list(g, p.root),
        },
        variables: variables(src, g)?,
        dims: g
            .dims
            .iter()
            .map(|d| Dimension {
                name: d.name.clone(),
                range: d.range,
                assumed: d.assumed,
            })
            .collect(),
        assumed: p.assumed.clone(),
    })
}

fn formula(m: &M) -> Formula {
    Formula {
        text: render::print::print(m, &Style::TEXT),
        latex: render::print::print(m, &Style::LATEX),
        mathml: mathml::math(m),
        expr: (!m.has_index()).then(|| render::print::print(m, &Style::EXPR)),
    }
}

fn variables(src: &Source, g: &Graph) -> Result<Vec<Variable>> {
    let decls = crate::syntax::parse_decls(&src.decls).map_err(|e| e.with_origin(Origin::Decls))?;
    let latex_assumed: &[String] = src.latex.as_ref().map_or(&[], |l| &l.assumed);
    Ok(g.vars
        .iter()
        .map(|v| {
            let dims: Vec<String> = v.shape.iter().map(|&d| g.dim_name(d)).collect();
            let kind = match (v.shape.len(), v.symmetric) {
                (0, _) => "scalar",
                (1, _) => "vector",
                (_, true) => "symmetric",
                _ => "matrix",
            };
            let decl = match kind {
                "scalar" => format!("{}: scalar", v.name),
                "symmetric" => format!("{}: symmetric({})", v.name, dims[0]),
                _ => format!("{}: {kind}({})", v.name, dims.join(", ")),
            };
            Variable {
                name: v.name.clone(),
                kind: kind.to_string(),
                declared: decls.iter().any(|d| d.name == v.name) && !latex_assumed.contains(&v.name),
                dims,
                decl,
            }
        })
        .collect())
}

// ---------------------------------------------------------------------------
// derive
// ---------------------------------------------------------------------------

/// Differentiate: the result in every format and form, labels, layouts, code.
pub fn derive(req: &DeriveRequest) -> Result<DeriveResponse, ApiError> {
    check_order(req.order)?;
    let src = read(&req.input)?;
    let mut p = src.problem()?;
    let wrt = src.wrt_or_default(&req.wrt)?;
    let ds = p.derive(&wrt, req.order)?;
    let ids: Vec<_> = ds.iter().map(|d| d.id).collect();
    let mut notes = Vec::new();
    let nested = if render::expanded_size(&p.graph, &ids) <= LIMITS.max_nested {
        Some(form_block(&p, &ds, Form::Nested))
    } else {
        notes.push("the nested form of this derivative is too large to show; see the cascade form".to_string());
        None
    };
    let forms = Forms {
        nested,
        cascade: form_block(&p, &ds, Form::Cascade),
        diag: form_block(&p, &ds, Form::Diag),
    };
    let code = if req.code { generate_all(&p, &ds) } else { Vec::new() };
    let explanation = match crate::explain::explain(&p, &wrt, req.order, &ds, &Default::default()) {
        Ok(e) => {
            use crate::explain::Format as F;
            Some(Explanation {
                text: e.render(F::Text),
                markdown: e.render(F::Markdown),
                latex: e.render(F::Latex),
                html: e.render(F::Html),
            })
        }
        Err(e) => {
            notes.push(format!("no step-by-step derivation: {}", e.message));
            None
        }
    };
    Ok(DeriveResponse {
        parsed: parsed(&src, &p)?,
        derivatives: ds.iter().map(|d| derivative_info(&p, d)).collect(),
        wrt,
        order: req.order,
        form: req.form,
        forms,
        notes,
        code,
        explanation,
    })
}

fn derivative_info(p: &Problem, d: &Derivative) -> DerivativeInfo {
    let (kind, layout) = report::layout(p, d);
    DerivativeInfo {
        wrt: d.wrt.clone(),
        label: Rendering {
            text: d.label(&Style::TEXT),
            latex: d.label(&Style::LATEX),
            mathml: mathml::label(d, None),
        },
        kind,
        layout,
        shape: report::shape_list(&p.graph, d.id),
        key: codegen::derivative_key(d),
    }
}

fn form_block(p: &Problem, ds: &[Derivative], form: Form) -> FormBlock {
    let g = &p.graph;
    let reserved = p.reserved_names();
    let ids: Vec<_> = ds.iter().map(|d| d.id).collect();
    let r = render::recover(g, &ids, form, Some(p.root), &reserved);
    let f = render::recover(g, &[p.root], Form::Nested, None, &reserved);
    let mut named: Vec<(String, M)> = r.definitions.clone();
    for (cap, v) in &r.diag_defs {
        named.push((cap.clone(), M::Call("Diag", vec![M::Name(v.clone())])));
    }
    let notes = TextOptions {
        assumed: false,
        layout: false,
    };
    FormBlock {
        definitions: named
            .iter()
            .map(|(n, m)| Definition {
                name: n.clone(),
                formula: formula(m),
            })
            .collect(),
        results: r.results.iter().map(formula).collect(),
        text: report::derive_text(p, ds, form, &Style::TEXT, &notes),
        latex: report::derive_text(p, ds, form, &Style::LATEX, &notes),
        mathml: display(p, ds, &f.results[0], &named, &r.results),
    }
}

/// The derivation as one MathML display: `f = …`, the definitions, the results.
fn display(p: &Problem, ds: &[Derivative], f: &M, named: &[(String, M)], results: &[M]) -> String {
    let mut rows = vec![mathml::row(&mathml::name("f"), &mathml::expr(f))];
    for (n, m) in named {
        rows.push(mathml::row(&mathml::name(n), &mathml::expr(m)));
    }
    for (d, m) in ds.iter().zip(results) {
        let indices = match m {
            M::Index(t) => p.tensor_indices(d, t),
            _ => None,
        };
        rows.push(mathml::row(&mathml::label(d, indices.as_deref()), &mathml::expr(m)));
    }
    mathml::display(&rows)
}

fn generate_all(p: &Problem, ds: &[Derivative]) -> Vec<Code> {
    Target::ALL
        .iter()
        .map(|&t| match codegen::generate(p, ds, t) {
            Ok(s) => Code {
                target: t.name().to_string(),
                source: Some(s),
                error: None,
            },
            Err(e) => Code {
                target: t.name().to_string(),
                source: None,
                error: Some(e.to_string()),
            },
        })
        .collect()
}

// ---------------------------------------------------------------------------
// eval
// ---------------------------------------------------------------------------

/// The outcome of [`evaluate`].
#[derive(Debug)]
pub struct Evaluation {
    /// The function's value.
    pub value: Tensor,
    /// The derivatives, keyed like [`codegen::derivative_key`].
    pub derivatives: Vec<(String, Tensor)>,
    /// The derivatives' descriptions, in the same order.
    pub ds: Vec<Derivative>,
    /// Warnings from evaluation.
    pub warnings: Vec<String>,
    /// Names with values that the expression does not use.
    pub ignored: Vec<String>,
}

/// Options for [`evaluate`].
#[derive(Clone, Debug, Default)]
pub struct EvalOptions {
    /// Variables to differentiate by.
    pub wrt: Vec<String>,
    /// Derivative order.
    pub order: usize,
    /// Sizes of dimensions.
    pub dims: Vec<(String, usize)>,
    /// Largest tensor to build (see [`interp::check_sizes`]).
    pub max_elements: Option<usize>,
}

/// Evaluate the function and derivatives at values. Names without
/// declarations take their shapes from their values. Errors in added
/// declarations point past the end of [`Source::decls`].
pub fn evaluate(src: &Source, vals: Vec<(String, Tensor)>, opts: &EvalOptions) -> Result<Evaluation> {
    let all_decls = src.decls_with_values(&vals, &[])?;
    let mut p = src.problem_with(&all_decls)?;
    let ds = if opts.wrt.is_empty() {
        Vec::new()
    } else {
        p.derive(&opts.wrt, opts.order)?
    };
    let g = &p.graph;
    let mut var_values: Vec<Option<Tensor>> = vec![None; g.vars.len()];
    let mut ignored = Vec::new();
    for (n, t) in vals {
        match g.var_index(&n) {
            Some(i) if p.occurring.contains(&n) => var_values[i] = Some(t),
            _ => ignored.push(n),
        }
    }
    let dimv = interp::bind_dims(g, &var_values, &opts.dims)?;
    let mut roots = vec![p.root];
    roots.extend(ds.iter().map(|d| d.id));
    if let Some(max) = opts.max_elements {
        interp::check_sizes(g, &roots, &dimv, max)?;
    }
    // The compiled plan, as `matcalc eval` runs it (its errors are the interpreter's).
    let named: Vec<(String, Tensor)> = g
        .vars
        .iter()
        .zip(var_values)
        .filter_map(|(v, t)| Some((v.name.clone(), t?)))
        .collect();
    let used: Vec<(&str, &Tensor)> = named.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let keys: Vec<String> = ds.iter().map(codegen::derivative_key).collect();
    let mut compiled = crate::Compiled::new(p, ds);
    compiled.set_dims(&opts.dims);
    let out = compiled.eval(&used)?;
    let value = out.value().to_tensor();
    let derivatives = (0..out.len())
        .map(|i| (keys[i].clone(), out.derivative(i).to_tensor()))
        .collect();
    let warnings = out.warnings().map(str::to_string).collect();
    Ok(Evaluation {
        value,
        derivatives,
        ds: compiled.derivatives().to_vec(),
        warnings,
        ignored,
    })
}

/// Evaluate at values given inline.
pub fn eval(req: &EvalRequest) -> Result<EvalResponse, ApiError> {
    check_order(req.order)?;
    if !req.values.is_object() {
        return Err(ApiError::request(
            ApiErrorKind::Engine(ErrorKind::Value),
            "\"values\" must be an object mapping names to values",
            "e.g. {\"x\": [1, 2], \"A\": [[1, 0], [0, 1]]}",
        ));
    }
    let src = read(&req.input)?;
    let vals = values::values_from_json(&req.values.to_string(), "values")?;
    let opts = EvalOptions {
        wrt: req.wrt.clone(),
        order: req.order,
        dims: req.dims.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        max_elements: Some(LIMITS.max_elements),
    };
    let e = evaluate(&src, vals, &opts)?;
    Ok(EvalResponse {
        value: values::tensor_to_json(&e.value),
        derivatives: e
            .derivatives
            .iter()
            .map(|(k, t)| (k.clone(), values::tensor_to_json(t)))
            .collect(),
        warnings: e.warnings,
        ignored: e.ignored,
    })
}

// ---------------------------------------------------------------------------
// check
// ---------------------------------------------------------------------------

/// Check the derivatives against finite differences at random points. Sizes
/// are drawn from the declared ranges, capped at [`Limits::max_check_dim`].
pub fn check(req: &CheckRequest) -> Result<CheckResponse, ApiError> {
    check_order(req.order)?;
    if req.trials == 0 || req.trials > LIMITS.max_trials {
        return Err(ApiError::request(
            ApiErrorKind::Engine(ErrorKind::Limit),
            format!("trials must be 1 to {}", LIMITS.max_trials),
            "the default, 3, is usually enough",
        ));
    }
    let src = read(&req.input)?;
    let mut p = src.problem()?;
    let wrt = src.wrt_or_default(&req.wrt)?;
    let mut dims: Vec<(String, usize)> = req.dims.iter().map(|(k, v)| (k.clone(), *v)).collect();
    // Wide declared ranges are drawn from their start, up to the cap.
    for d in &p.graph.dims {
        if let Some((lo, hi)) = d.range {
            let cap = LIMITS.max_check_dim as u64;
            if hi > cap && !req.dims.contains_key(&d.name) {
                dims.push((d.name.clone(), lo.max(cap) as usize));
            }
        }
    }
    let opts = fd::CheckOptions {
        seed: req.seed,
        trials: req.trials,
        dims,
        order: req.order,
        tolerance: req.tolerance,
        max_elements: Some(LIMITS.max_elements),
        ..Default::default()
    };
    Ok(fd::check(&mut p, &wrt, &opts)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headline() -> DeriveRequest {
        serde_json::from_value(serde_json::json!({
            "expr": "norm2(sin(W2*cos(W1*x)))^2",
            "decls": "W1: matrix(r, 100); W2: matrix(100, r); r: dim in 1..95",
            "wrt": ["x"],
        }))
        .unwrap()
    }

    #[test]
    fn derive_headline_in_every_format() {
        let r = derive(&headline()).unwrap();
        assert_eq!(r.wrt, vec!["x"]);
        assert_eq!(r.parsed.input.syntax, "matcalc");
        assert_eq!(r.derivatives[0].kind, "gradient");
        assert_eq!(r.derivatives[0].shape, vec!["100"]);
        let nested = r.forms.nested.as_ref().unwrap();
        assert_eq!(
            nested.results[0].text,
            "−2 W1ᵀ (sin(W1 x) ⊙ (W2ᵀ (sin(W2 cos(W1 x)) ⊙ cos(W2 cos(W1 x)))))"
        );
        assert!(nested.results[0].expr.as_deref().unwrap().starts_with("-2*W1'*"));
        assert!(nested.results[0].mathml.contains("<msub><mi>W</mi><mn>1</mn></msub>"));
        assert!(r.forms.cascade.definitions.len() >= 6);
        assert!(r
            .forms
            .diag
            .definitions
            .iter()
            .any(|d| d.formula.text.starts_with("Diag(")));
        assert!(r.forms.diag.text.contains("where\n"));
        assert!(r.forms.diag.latex.starts_with("\\begin{aligned}"));
        assert_eq!(r.code.len(), 4);
        assert!(r.code.iter().all(|c| c.source.is_some()), "{:?}", r.code);
        let e = r.explanation.as_ref().expect("the headline example is explained");
        assert!(e.text.contains("back-substituted") && e.latex.starts_with("\\begin{aligned}"));
        roxmltree::Document::parse(&e.html).expect("the derivation's HTML is well-formed XML");
        assert!(e.html.contains("<mo>:</mo>") && e.html.contains("<mo>⇒</mo>"));
        let x = r.parsed.variables.iter().find(|v| v.name == "x").unwrap();
        assert_eq!(
            (x.kind.as_str(), x.declared, x.decl.as_str()),
            ("vector", false, "x: vector(100)")
        );
        let w1 = r.parsed.variables.iter().find(|v| v.name == "W1").unwrap();
        assert_eq!((w1.kind.as_str(), w1.declared), ("matrix", true));
        assert_eq!(w1.dims, vec!["r", "100"]);
    }

    #[test]
    fn latex_input_gives_the_default_variable() {
        let req: DeriveRequest = serde_json::from_value(serde_json::json!({
            "expr": r"L(x) := \|A x - b\|_2^2, \quad A \in \mathbb{R}^{m \times n}",
        }))
        .unwrap();
        let r = derive(&req).unwrap();
        assert_eq!(r.parsed.input.syntax, "latex");
        assert_eq!(r.wrt, vec!["x"]);
        assert!(r.parsed.input.decls.contains("A: matrix(m, n)"));
        assert!(
            r.parsed.input.expr.contains("norm2(A*x - b)"),
            "{}",
            r.parsed.input.expr
        );
    }

    #[test]
    fn errors_carry_spans_and_hints() {
        let mut req = headline();
        req.input.expr = "sinn(W1*x)".into();
        let e = derive(&req).unwrap_err();
        assert_eq!(e.kind, ApiErrorKind::Engine(ErrorKind::Name));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(
            (json["kind"].as_str(), json["origin"].as_str()),
            (Some("name"), Some("expr"))
        );
        assert_eq!(json["span"], serde_json::json!({"start": 0, "end": 4}));
        assert_eq!(e.span, Some(ApiSpan { start: 0, end: 4 }));
        assert_eq!(e.origin, Some(ApiOrigin::Expr));
        assert!(e.hint.unwrap().contains("sin"));

        let mut req = headline();
        req.input.decls = "W1: matrx(r, 100)".into();
        let e = derive(&req).unwrap_err();
        assert_eq!(e.origin, Some(ApiOrigin::Decls));

        let mut req = headline();
        req.input.expr = "A*x + B".into();
        req.input.decls = "A: matrix(3, 4); B: matrix(2, 2)".into();
        let e = derive(&req).unwrap_err();
        assert_eq!(e.kind, ApiErrorKind::Engine(ErrorKind::Shape));
        assert!(e.labels.len() >= 2, "{e:?}");

        let mut req = headline();
        req.order = 9;
        assert_eq!(derive(&req).unwrap_err().kind, ApiErrorKind::Engine(ErrorKind::Limit));
    }

    #[test]
    fn large_nested_forms_are_left_out() {
        // sin(sin(…(x))), 250 deep: the nested gradient repeats every inner chain
        // (about 31 000 nodes), the cascade names each level once.
        let mut req = headline();
        req.input.expr = format!("sum({}x{})", "sin(".repeat(250), ")".repeat(250));
        req.input.decls = String::new();
        let r = derive(&req).unwrap();
        assert!(r.forms.nested.is_none());
        assert!(r.notes[0].contains("too large"), "{:?}", r.notes);
        assert!(r.forms.cascade.definitions.len() >= 250);
    }

    #[test]
    fn parse_reports_variables_before_any_derivative() {
        let r = parse(&ParseRequest {
            input: ProblemInput {
                expr: "x'*S*x".into(),
                decls: "S: symmetric(n)".into(),
                latex: false,
            },
        })
        .unwrap();
        let s = r.variables.iter().find(|v| v.name == "S").unwrap();
        assert_eq!((s.kind.as_str(), s.decl.as_str()), ("symmetric", "S: symmetric(n)"));
        assert_eq!(r.function.shape, Vec::<String>::new());
        assert_eq!(r.input.expr, "x'*S*x");
    }

    #[test]
    fn eval_inline_values() {
        let req: EvalRequest = serde_json::from_value(serde_json::json!({
            "expr": "norm2(A*x - b)^2",
            "values": {"A": [[1, 2], [3, 4], [5, 6]], "b": [1, 0, 1], "x": [0.5, -0.5], "z": 1},
            "wrt": ["x"],
        }))
        .unwrap();
        let r = eval(&req).unwrap();
        assert_eq!(r.value, serde_json::json!(4.75));
        assert_eq!(r.derivatives["x"], serde_json::json!([-21.0, -28.0]));
        assert_eq!(r.ignored, vec!["z"]);
        let mut bad = req.clone();
        bad.values = serde_json::json!([1, 2]);
        assert_eq!(eval(&bad).unwrap_err().kind, ApiErrorKind::Engine(ErrorKind::Value));
        let mut bad = req;
        bad.values = serde_json::json!({"A": [[1, 2], [3]], "b": [1, 0, 1], "x": [0.5, -0.5]});
        assert_eq!(eval(&bad).unwrap_err().kind, ApiErrorKind::Engine(ErrorKind::Value));
    }

    #[test]
    fn eval_refuses_huge_tensors() {
        let req: EvalRequest = serde_json::from_value(serde_json::json!({
            "expr": "sum(vector(1, n))",
            "values": {},
            "dims": {"n": 1_000_000_000usize},
        }))
        .unwrap();
        assert_eq!(eval(&req).unwrap_err().kind, ApiErrorKind::Engine(ErrorKind::Limit));
    }

    #[test]
    fn check_headline_passes_with_capped_dims() {
        let req: CheckRequest = serde_json::from_value(serde_json::json!({
            "expr": "norm2(sin(W2*cos(W1*x)))^2",
            "decls": "W1: matrix(r, 100); W2: matrix(100, r); r: dim in 1..95",
            "wrt": ["x"],
            "trials": 1,
        }))
        .unwrap();
        let r = check(&req).unwrap();
        assert!(r.passed, "{r:?}");
        assert!(!r.lines.is_empty());
        let wide: CheckRequest = serde_json::from_value(serde_json::json!({
            "expr": "x'*x", "decls": "x: vector(n); n: dim in 1000..100000000", "wrt": ["x"], "trials": 1,
        }))
        .unwrap();
        let r = check(&wide).unwrap();
        assert!(r.lines[0].dims.contains("n=1000"), "{:?}", r.lines[0]);
        let mut many = req;
        many.trials = 1000;
        assert_eq!(check(&many).unwrap_err().kind, ApiErrorKind::Engine(ErrorKind::Limit));
    }
}
