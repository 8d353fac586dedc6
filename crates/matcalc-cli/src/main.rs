//! `matcalc`: symbolic matrix calculus on the command line.

mod output;

use clap::{Args, Parser, Subcommand, ValueEnum};
use matcalc::codegen;
use matcalc::error::{Error, ErrorKind};
use matcalc::eval::{check, values, Tensor};
use matcalc::input::Source;
use matcalc::render::{self, print::Style, Form};
use matcalc::report;
use std::io::Read;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "matcalc",
    version,
    about = "Symbolic matrix calculus: derivatives of matrix expressions, checked numerically"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Differentiate an expression and print the derivative.
    Derive(DeriveArgs),
    /// Evaluate an expression and its derivatives at given values.
    Eval(EvalArgs),
    /// Check derivatives against finite differences at random points.
    Check(CheckArgs),
    /// Serve the web page and the JSON API on this machine (Ctrl-C stops it).
    Serve(ServeArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Port to listen on (0 picks a free one; the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to bind; the default serves this machine only.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
}

#[derive(Args, Clone)]
struct Input {
    /// The expression (`-` reads it from standard input).
    #[arg(allow_hyphen_values = true)]
    expr: Option<String>,
    /// Read the expression from a file (a `.tex` file, or one that looks like LaTeX, may hold
    /// prose around `$…$`, `\[…\]` or `\begin{equation}`).
    #[arg(long, value_name = "PATH")]
    file: Option<String>,
    /// The problem in LaTeX, e.g. 'L(x) := \|A x - b\|_2^2, where A \in \mathbb{R}^{m \times n}'.
    /// An expression that looks like LaTeX (a backslash, `$`, braces) is read as LaTeX too.
    #[arg(long = "latex-input", value_name = "TEXT", allow_hyphen_values = true, conflicts_with_all = ["expr", "file"])]
    latex: Option<String>,
    /// Declarations, e.g. 'W1: matrix(r, 100); r: dim in 1..95' (repeatable). They are merged
    /// with declarations in LaTeX input; on a conflict --decl wins.
    #[arg(long = "decl", value_name = "DECLS")]
    decls: Vec<String>,
    /// Print how the input was read (expr/decl/wrt in matcalc syntax) to standard error.
    #[arg(long)]
    echo: bool,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Text,
    Expr,
    Latex,
    Json,
    /// Markdown (with --explain).
    Markdown,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum FormArg {
    Nested,
    Cascade,
    Diag,
}

#[derive(Args)]
struct DeriveArgs {
    #[command(flatten)]
    input: Input,
    /// Variable to differentiate by (repeatable); LaTeX input may name it on the left, `L(x) :=`.
    #[arg(long, value_name = "NAME")]
    wrt: Vec<String>,
    /// Derivative order.
    #[arg(long, default_value_t = 1)]
    order: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Nested expression, named cascade, or cascade with Diag matrices.
    #[arg(long, value_enum, default_value_t = FormArg::Nested)]
    form: FormArg,
    /// Print a standalone module computing f and the derivatives instead
    /// (`f_and_grad`, shape checks, the cascade as temporaries, `check_grad`).
    #[arg(long, value_enum, value_name = "TARGET")]
    emit: Option<EmitArg>,
    /// Print the step-by-step derivation (differentials and the Frobenius product) before the
    /// result; `--format latex` gives one `aligned` block, `--format markdown` a Markdown page.
    #[arg(long)]
    explain: bool,
    /// Names for the intermediates of --explain, in order, comma-separated (e.g. `a,s,y,b`).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    names: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum EmitArg {
    Numpy,
    Jax,
    Torch,
    Rust,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    input: Input,
    /// Values: a JSON file, or NAME=FILE.npy (repeatable).
    #[arg(long, value_name = "VALUES", required = true)]
    at: Vec<String>,
    /// Variable to differentiate by (repeatable).
    #[arg(long, value_name = "NAME")]
    wrt: Vec<String>,
    /// Derivative order.
    #[arg(long, default_value_t = 1)]
    order: usize,
    /// Dimension values NAME=VALUE (repeatable).
    #[arg(long = "dim", value_name = "NAME=VALUE")]
    dims: Vec<String>,
    /// Print {"value": …, "derivatives": {…}}.
    #[arg(long)]
    json: bool,
    /// Evaluate N times (for benchmarking): print the result once and, on
    /// standard error, the median and mean time per evaluation (of the N − 1
    /// after the first, which also compiles the plan).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    repeat: u64,
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    input: Input,
    /// Variable to differentiate by (repeatable); LaTeX input may name it on the left, `L(x) :=`.
    #[arg(long, value_name = "NAME")]
    wrt: Vec<String>,
    /// Derivative order.
    #[arg(long, default_value_t = 1)]
    order: usize,
    /// Dimension values NAME=VALUE (repeatable); others are drawn from their ranges.
    #[arg(long = "dim", value_name = "NAME=VALUE")]
    dims: Vec<String>,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of random points.
    #[arg(long, default_value_t = 3)]
    trials: usize,
    /// Relative tolerance.
    #[arg(long, default_value_t = 1e-5)]
    tolerance: f64,
}

/// A failure of the command: an engine error with its source texts, or a plain message.
pub struct Failure {
    error: Box<Error>,
    expr: String,
    decls: String,
}

type CmdResult = Result<ExitCode, Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The engine recurses over expression trees; give it room.
    let child = std::thread::Builder::new().stack_size(1 << 30).spawn(move || run(cli));
    match child.map(|h| h.join()) {
        Ok(Ok(Ok(code))) => code,
        Ok(Ok(Err(f))) => {
            output::print_error(&f.error, &f.expr, &f.decls);
            ExitCode::from(2)
        }
        _ => {
            eprintln!("error: internal failure (this is a bug in matcalc; please report it)");
            ExitCode::from(3)
        }
    }
}

fn run(cli: Cli) -> CmdResult {
    match cli.command {
        Command::Derive(a) => derive(a),
        Command::Eval(a) => eval(a),
        Command::Check(a) => check_cmd(a),
        Command::Serve(a) => serve(a),
    }
}

fn serve(a: ServeArgs) -> CmdResult {
    matcalc_web::run(&a.host, a.port, matcalc_web::Config::default()).map_err(|e| {
        plain(
            Error::new(ErrorKind::Usage, format!("cannot serve on {}:{}: {e}", a.host, a.port))
                .hint("choose another --port (0 picks a free one), or check --host"),
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

fn plain(error: Error) -> Failure {
    Failure {
        error: Box::new(error),
        expr: String::new(),
        decls: String::new(),
    }
}

/// The expression and declarations, read (our syntax or LaTeX).
fn read_input(i: &Input) -> Result<Source, Failure> {
    let expr = match (&i.expr, &i.file) {
        (Some(_), Some(_)) => {
            return Err(plain(
                Error::new(ErrorKind::Usage, "give the expression or --file, not both").hint("drop one of them"),
            ));
        }
        (Some(e), None) if e == "-" => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| plain(Error::new(ErrorKind::Usage, format!("cannot read standard input: {e}"))))?;
            s
        }
        (Some(e), None) => e.clone(),
        (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
            plain(
                Error::new(ErrorKind::Usage, format!("cannot read `{path}`: {e}"))
                    .hint("--file takes the path of a text file holding the expression"),
            )
        })?,
        (None, None) if i.latex.is_some() => i.latex.clone().unwrap_or_default(),
        (None, None) => {
            return Err(plain(Error::new(ErrorKind::Usage, "no expression given").hint(
                "write it as the first argument, `-` for standard input, or --file PATH",
            )))
        }
    };
    let decls = i.decls.join("; ");
    let tex_file = i.file.as_deref().is_some_and(|f| f.ends_with(".tex"));
    let src = Source::read(&expr, &decls, i.latex.is_some() || tex_file).map_err(|error| Failure {
        error: Box::new(error),
        expr: expr.trim_end().to_string(),
        decls: decls.clone(),
    })?;
    if i.echo {
        echo(&src);
    }
    Ok(src)
}

/// `--echo`: how the input was read, in matcalc syntax, to standard error.
fn echo(src: &Source) {
    let e = src.echo();
    if !e.expr.is_empty() {
        eprintln!("expr: {}", e.expr);
    }
    if !e.decls.is_empty() {
        eprintln!("decl: {}", e.decls);
    }
    if !e.wrt.is_empty() {
        eprintln!("wrt: {}", e.wrt.join(", "));
    }
}

fn with_src(src: &Source) -> impl Fn(Error) -> Failure + '_ {
    move |error| Failure {
        error: Box::new(error),
        expr: src.expr.clone(),
        decls: src.decls.clone(),
    }
}

fn form(f: FormArg) -> Form {
    match f {
        FormArg::Nested => Form::Nested,
        FormArg::Cascade => Form::Cascade,
        FormArg::Diag => Form::Diag,
    }
}

fn derive(a: DeriveArgs) -> CmdResult {
    let src = read_input(&a.input)?;
    let err = with_src(&src);
    let mut p = src.problem().map_err(&err)?;
    let wrt = src.wrt_or_default(&a.wrt).map_err(&err)?;
    let ds = p.derive(&wrt, a.order).map_err(&err)?;
    if let Some(emit) = a.emit {
        let target = match emit {
            EmitArg::Numpy => codegen::Target::Numpy,
            EmitArg::Jax => codegen::Target::Jax,
            EmitArg::Torch => codegen::Target::Torch,
            EmitArg::Rust => codegen::Target::Rust,
        };
        print!("{}", codegen::generate(&p, &ds, target).map_err(&err)?);
        return Ok(ExitCode::SUCCESS);
    }
    if a.explain {
        return explain(&p, &wrt, &a, &ds).map_err(&err);
    }
    if a.format == Format::Markdown {
        return Err(err(Error::new(
            ErrorKind::Usage,
            "--format markdown goes with --explain",
        )
        .hint("add --explain, or use --format text, expr, latex or json")));
    }
    let ids: Vec<_> = ds.iter().map(|d| d.id).collect();
    let reserved = p.reserved_names();
    let nested_ok = render::expanded_size(&p.graph, &ids) <= render::MAX_NESTED;
    let want_nested = a.form == FormArg::Nested || a.format == Format::Expr || a.format == Format::Json;
    if want_nested && !nested_ok {
        return Err(err(Error::new(
            ErrorKind::Limit,
            "the nested form of this derivative is too large to print",
        )
        .hint("use --form cascade, which names shared subexpressions and grows linearly")));
    }
    match a.format {
        Format::Expr => {
            let r = render::recover(&p.graph, &ids, Form::Nested, Some(p.root), &reserved);
            for m in &r.results {
                if m.has_index() {
                    return Err(err(Error::new(
                        ErrorKind::Usage,
                        "this derivative is a tensor with no matrix form",
                    )
                    .hint("use --format text or latex to see it in index notation")));
                }
            }
            let (_, lines) = r.lines(&Style::EXPR);
            for l in lines {
                println!("{l}");
            }
        }
        Format::Json => println!("{}", report::derive_json(&p, &ds)),
        Format::Text | Format::Latex | Format::Markdown => {
            let style = if a.format == Format::Text {
                Style::TEXT
            } else {
                Style::LATEX
            };
            let opts = report::TextOptions::default();
            print!("{}", report::derive_text(&p, &ds, form(a.form), &style, &opts));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `derive --explain`: the derivation, then (in text) the result as `derive` prints it.
fn explain(
    p: &matcalc::Problem,
    wrt: &[String],
    a: &DeriveArgs,
    ds: &[matcalc::Derivative],
) -> Result<ExitCode, Error> {
    use matcalc::explain::{self as ex, Format as ExFormat};
    let opts = ex::Options { names: a.names.clone() };
    let e = ex::explain(p, wrt, a.order, ds, &opts)?;
    match a.format {
        Format::Text => {
            let opts = report::TextOptions::default();
            print!("{}", report::derive_text(p, ds, form(a.form), &Style::TEXT, &opts));
            println!();
            print!("{}", e.render(ExFormat::Text));
        }
        Format::Latex => print!("{}", e.render(ExFormat::Latex)),
        Format::Markdown => print!("{}", e.render(ExFormat::Markdown)),
        Format::Expr | Format::Json => {
            return Err(Error::new(ErrorKind::Usage, "--explain prints text, latex or markdown")
                .hint("use --format text, latex or markdown with --explain"))
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_dims(dims: &[String]) -> Result<Vec<(String, usize)>, Failure> {
    dims.iter()
        .map(|d| {
            let (n, v) = d.split_once('=').ok_or_else(|| {
                plain(Error::new(ErrorKind::Usage, format!("--dim `{d}`: expected NAME=VALUE")).hint("e.g. --dim r=5"))
            })?;
            let v: usize = v.trim().parse().map_err(|_| {
                plain(
                    Error::new(ErrorKind::Usage, format!("--dim `{d}`: `{v}` is not a whole number"))
                        .hint("e.g. --dim r=5"),
                )
            })?;
            Ok((n.trim().to_string(), v))
        })
        .collect()
}

/// Read values: JSON files and NAME=FILE.npy pairs.
fn read_values(at: &[String]) -> Result<Vec<(String, Tensor)>, Failure> {
    let mut out: Vec<(String, Tensor)> = Vec::new();
    for spec in at {
        let (name, path) = match spec.split_once('=') {
            Some((n, p)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => (Some(n), p),
            _ => (None, spec.as_str()),
        };
        let bytes = std::fs::read(path).map_err(|e| {
            plain(
                Error::new(ErrorKind::Value, format!("cannot read values file `{path}`: {e}"))
                    .hint("--at takes a JSON file mapping names to values, or NAME=FILE.npy"),
            )
        })?;
        let new: Vec<(String, Tensor)> = match name {
            Some(n) => vec![(n.to_string(), values::value_from_npy(&bytes, path).map_err(plain)?)],
            None => {
                let text = String::from_utf8(bytes).map_err(|_| {
                    plain(
                        Error::new(ErrorKind::Value, format!("`{path}` is not a text (JSON) file"))
                            .hint("for .npy files write NAME=FILE.npy"),
                    )
                })?;
                values::values_from_json(&text, path).map_err(plain)?
            }
        };
        for (n, t) in new {
            out.retain(|(m, _)| *m != n);
            out.push((n, t));
        }
    }
    Ok(out)
}

/// A batched evaluation: the one `--wrt` variable whose value has an extra
/// leading axis, and the problem typed with its per-point shape.
fn batched_problem(
    src: &Source,
    vals: &[(String, Tensor)],
    wrt: &[String],
) -> Option<(matcalc::Problem, String, String)> {
    if wrt.is_empty() {
        return None;
    }
    let all = src.decls_with_values(vals, wrt).ok()?;
    let p = src.problem_with(&all).ok()?;
    let mut hits = wrt.iter().filter(|w| {
        let order = p.graph.var_index(w).map(|i| p.graph.vars[i].shape.len());
        let given = vals.iter().find(|(n, _)| n == *w).map(|(_, t)| t.order());
        matches!((order, given), (Some(o), Some(g)) if g == o + 1)
    });
    let v = hits.next()?.clone();
    if hits.next().is_some() {
        return None;
    }
    Some((p, all, v))
}

/// `matcalc eval`: the compiled plan at the given values (a batch when the `--wrt`
/// variable's value has an extra leading axis), `--repeat` times.
fn eval(a: EvalArgs) -> CmdResult {
    let src = read_input(&a.input)?;
    let vals = read_values(&a.at)?;
    let dims = parse_dims(&a.dims)?;
    let (mut p, all_decls, batched) = match batched_problem(&src, &vals, &a.wrt) {
        Some((p, all, v)) => (p, all, Some(v)),
        None => {
            // Names without declarations take their shapes from their values.
            let all = src.decls_with_values(&vals, &[]).map_err(with_src(&src))?;
            let p = src.problem_with(&all).map_err(|e| Failure {
                error: Box::new(e),
                expr: src.expr.clone(),
                decls: all.clone(),
            })?;
            (p, all, None)
        }
    };
    let err = |error: Error| Failure {
        error: Box::new(error),
        expr: src.expr.clone(),
        decls: all_decls.clone(),
    };
    let ds = if a.wrt.is_empty() {
        Vec::new()
    } else {
        p.derive(&a.wrt, a.order).map_err(err)?
    };
    let mut used: Vec<(&str, &Tensor)> = Vec::new();
    for (n, t) in &vals {
        match p.graph.var_index(n) {
            Some(_) if p.occurring.contains(n) => used.push((n.as_str(), t)),
            _ => eprintln!("warning: `{n}` is not used by the expression; ignored"),
        }
    }
    // A derivative is keyed by its variable; a mixed one by its variables, comma-separated.
    let keys: Vec<String> = ds.iter().map(codegen::derivative_key).collect();
    let mut compiled = matcalc::Compiled::new(p, ds);
    compiled.set_dims(&dims);
    let mut times = Vec::with_capacity(a.repeat as usize);
    let run = |c: &mut matcalc::Compiled| match &batched {
        Some(v) => c.eval_batch(&used, v).map(|_| ()),
        None => c.eval(&used).map(|_| ()),
    };
    // The first evaluation binds the sizes and lowers the plan; time the others.
    run(&mut compiled).map_err(err)?;
    for _ in 1..a.repeat {
        let t0 = std::time::Instant::now();
        let r = run(&mut compiled);
        times.push(t0.elapsed().as_secs_f64());
        r.map_err(err)?;
    }
    let out = match &batched {
        Some(v) => compiled.eval_batch(&used, v),
        None => compiled.eval(&used),
    }
    .map_err(err)?;
    for w in out.warnings() {
        eprintln!("warning: {w}");
    }
    let value = out.value().to_tensor();
    let derivs: Vec<(String, Tensor)> = (0..out.len())
        .map(|i| (keys[i].clone(), out.derivative(i).to_tensor()))
        .collect();
    if a.json {
        let mut dj = serde_json::Map::new();
        for (k, t) in &derivs {
            dj.insert(k.clone(), values::tensor_to_json(t));
        }
        let v = serde_json::json!({"value": values::tensor_to_json(&value), "derivatives": dj});
        println!("{v}");
    } else {
        print!("{}", output::value_table(&value, &derivs, compiled.derivatives()));
    }
    if a.repeat > 1 && !times.is_empty() {
        eprintln!("{}", timing_line(&mut times, batched.is_some()));
    }
    Ok(ExitCode::SUCCESS)
}

/// `eval --repeat`: median and mean seconds per evaluation.
fn timing_line(times: &mut [f64], batched: bool) -> String {
    times.sort_by(f64::total_cmp);
    let n = times.len();
    let median = if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2.0
    };
    let mean = times.iter().sum::<f64>() / n as f64;
    format!(
        "timing: {n} {}evaluations, median {:.3} µs, mean {:.3} µs per evaluation",
        if batched { "batched " } else { "" },
        median * 1e6,
        mean * 1e6
    )
}

fn check_cmd(a: CheckArgs) -> CmdResult {
    let src = read_input(&a.input)?;
    let err = with_src(&src);
    let mut p = src.problem().map_err(&err)?;
    let wrt = src.wrt_or_default(&a.wrt).map_err(&err)?;
    let dims = parse_dims(&a.dims)?;
    let opts = check::CheckOptions {
        seed: a.seed,
        trials: a.trials.max(1),
        dims,
        order: a.order,
        tolerance: a.tolerance,
        ..Default::default()
    };
    let r = check::check(&mut p, &wrt, &opts).map_err(&err)?;
    print!("{}", output::check_text(&r));
    Ok(if r.passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
