//! LaTeX input through the `matcalc` binary: `--latex-input`, automatic detection,
//! `--file` with prose, `--echo`, the default `--wrt` from `L(x) :=`, and errors
//! underlined in the LaTeX.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_matcalc");

const HEADLINE_TEX: &str = r"L(x) := \| \sin \left( W_2 \cos \left( W_1 x \right) \right) \|_2^2, where r \in [1, 95], W_1 \in \mathbb{R}^{r \times 100} and W_2 \in \mathbb{R}^{100 \times r}";
const HEADLINE: &str = "norm2(sin(W2*cos(W1*x)))^2";
const HEADLINE_DECL: &str = "W1: matrix(r, 100); W2: matrix(100, r); r: dim in 1..95";

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Run `matcalc args…` (killed after a minute).
fn run(args: &[&str]) -> Run {
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start matcalc");
    drop(child.stdin.take());
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let (out, err) = (read(Box::new(out)), read(Box::new(err)));
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("matcalc {args:?} did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

#[track_caller]
fn ok(args: &[&str]) -> String {
    let r = run(args);
    assert_eq!(r.code, Some(0), "matcalc {args:?}\n{r:?}");
    r.stdout
}

/// Expect exit 2 with `message` and a hint on stderr; returns stderr.
#[track_caller]
fn bad(args: &[&str], message: &str) -> String {
    let r = run(args);
    assert_eq!(r.code, Some(2), "matcalc {args:?}\n{r:?}");
    assert!(
        r.stderr.contains(message),
        "matcalc {args:?}: expected {message:?}\n{r:?}"
    );
    assert!(r.stderr.contains("help:"), "matcalc {args:?}: no hint\n{r:?}");
    r.stderr
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("matcalc-latex-cli-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &std::path::Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(content.as_bytes())
        .unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn the_headline_pasted_whole_gives_the_plain_gradient() {
    for format in ["expr", "text", "latex"] {
        let plain = ok(&[
            "derive",
            HEADLINE,
            "--wrt",
            "x",
            "--decl",
            HEADLINE_DECL,
            "--format",
            format,
        ]);
        // `L(x) :=` names the variable: no --wrt needed.
        assert_eq!(
            ok(&["derive", "--latex-input", HEADLINE_TEX, "--format", format]),
            plain,
            "{format}"
        );
        // Detected as LaTeX when given as the expression.
        assert_eq!(ok(&["derive", HEADLINE_TEX, "--format", format]), plain, "{format}");
    }
    let plain = ok(&[
        "derive",
        HEADLINE,
        "--wrt",
        "x",
        "--decl",
        HEADLINE_DECL,
        "--format",
        "expr",
    ]);
    assert_eq!(
        plain,
        "-2*W1'*(sin(W1*x).*(W2'*(sin(W2*cos(W1*x)).*cos(W2*cos(W1*x)))))\n"
    );
    // --wrt still chooses.
    let args = ["--wrt", "W1", "--wrt", "W2", "--format", "expr"];
    let plain = ok(&[&["derive", HEADLINE, "--decl", HEADLINE_DECL][..], &args].concat());
    assert_eq!(
        ok(&[&["derive", "--latex-input", HEADLINE_TEX][..], &args].concat()),
        plain
    );
    // check: the LaTeX problem passes its finite-difference check.
    let out = ok(&["check", "--latex-input", HEADLINE_TEX, "--dim", "r=3"]);
    assert!(out.contains("PASS"), "{out}");
}

#[test]
fn a_file_with_prose() {
    let dir = scratch("prose");
    let tex = "\\documentclass{article}\n\\begin{document}\n\
        Let $r \\in [1, 95]$, $W_1 \\in \\mathbb{R}^{r \\times 100}$ and $W_2 \\in \\mathbb{R}^{100 \\times r}$.\n\
        % from the forum\n\
        What is the gradient of\n\
        \\begin{equation}\n  L(x) := \\left\\| \\sin\\left(W_2 \\cos\\left(W_1 x\\right)\\right) \\right\\|_2^2 ?\n\\end{equation}\n\
        \\end{document}\n";
    let want = ok(&[
        "derive",
        HEADLINE,
        "--wrt",
        "x",
        "--decl",
        HEADLINE_DECL,
        "--format",
        "expr",
    ]);
    let path = write(&dir, "problem.tex", tex);
    assert_eq!(ok(&["derive", "--file", &path, "--format", "expr"]), want);
    // Any file that looks like LaTeX.
    let path = write(&dir, "problem.txt", &tex.replace("L(x) :=", ""));
    assert_eq!(ok(&["derive", "--file", &path, "--wrt", "x", "--format", "expr"]), want);
    let path = write(
        &dir,
        "question.md",
        "How do I differentiate $\\|A x - b\\|^2$ with respect to $x$, where $b \\in \\mathbb{R}^m$?\n",
    );
    assert_eq!(ok(&["derive", "--file", &path, "--format", "expr"]), "2*A'*(A*x - b)\n");
}

#[test]
fn echo_shows_how_the_input_was_read() {
    let r = run(&["derive", "--latex-input", HEADLINE_TEX, "--echo", "--format", "expr"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        r.stderr,
        "expr: norm2(sin(W2*cos(W1*x)))^2\n\
         decl: r: dim in 1..95; W1: matrix(r, 100); W2: matrix(100, r)\n\
         wrt: x\n"
    );
    // stdout is the derivative alone.
    assert_eq!(r.stdout, ok(&["derive", HEADLINE_TEX, "--format", "expr"]));
    // Plain input echoes too.
    let r = run(&["derive", "x'*A*x", "--wrt", "x", "--echo", "--decl", "A: matrix(n, n)"]);
    assert_eq!(r.stderr, "expr: x'*A*x\ndecl: A: matrix(n, n)\n", "{r:?}");
    // Assumed scalars are declared.
    let r = run(&[
        "derive",
        r"f(w) = \|Xw - y\|^2 + \lambda \|w\|^2",
        "--echo",
        "--format",
        "expr",
    ]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stderr.contains("decl: lambda: scalar\n"), "{r:?}");
    assert_eq!(r.stdout, "2*(lambda*w + X'*(X*w - y))\n", "{r:?}");
}

#[test]
fn decl_flags_win_over_the_text() {
    let r = run(&[
        "derive",
        "--latex-input",
        HEADLINE_TEX,
        "--decl",
        "r: dim in 1..10; x: vector(100)",
        "--echo",
        "--format",
        "expr",
    ]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stderr
            .contains("decl: r: dim in 1..10; x: vector(100); W1: matrix(r, 100); W2: matrix(100, r)\n"),
        "{r:?}"
    );
    // A --decl changes how the formula is read: `a^{-1}` of a matrix is its inverse.
    assert_eq!(
        ok(&[
            "derive",
            r"\mathbf{1}^T a^{-1} x",
            "--decl",
            "a: matrix(n, n)",
            "--wrt",
            "x",
            "--format",
            "expr"
        ]),
        "inv(a)'*vector(1, n)\n"
    );
}

#[test]
fn eval_reads_latex() {
    let dir = scratch("eval");
    let values = write(&dir, "v.json", r#"{"A": [[1, 2], [3, 4]], "x": [1, -1]}"#);
    let plain = ok(&["eval", "x'*A*x", "--at", &values, "--wrt", "x", "--json"]);
    assert_eq!(
        ok(&["eval", r"f(x) = x^\top A x", "--at", &values, "--wrt", "x", "--json"]),
        plain
    );
    assert_eq!(
        ok(&[
            "eval",
            "--latex-input",
            r"\mathbf{x}^T \mathbf{A} \mathbf{x}",
            "--at",
            &values,
            "--wrt",
            "x",
            "--json"
        ]),
        plain
    );
}

#[test]
fn latex_errors_are_underlined_in_the_latex() {
    let e = bad(
        &["derive", r"\|x\|^2 + \sinn(x)", "--wrt", "x"],
        r"unknown LaTeX command `\sinn`",
    );
    assert!(e.contains(r"\|x\|^2 + \sinn(x)"), "the LaTeX is shown: {e}");
    assert!(e.contains(r"did you mean `\sin`?"), "{e}");
    let e = bad(
        &["derive", "--latex-input", r"f(x) = x y, \quad x, y \in \mathbb{R}^n"],
        "juxtaposition of two vectors `x y` is ambiguous",
    );
    assert!(
        e.contains("did you mean `x^T y` (a number) or `x y^T` (a matrix)?"),
        "{e}"
    );
    bad(
        &["derive", "--latex-input", r"\frac{1}{2", "--wrt", "x"],
        "unclosed `{`",
    );
    // Shape errors point into the LaTeX too.
    let e = bad(
        &[
            "derive",
            r"f(x) = \|A x\|^2, \quad A \in \mathbb{R}^{3 \times 4}, x \in \mathbb{R}^5",
        ],
        "shape mismatch",
    );
    assert!(e.contains(r"\|A x\|^2"), "{e}");
    // No variable to differentiate by.
    bad(
        &["derive", "--latex-input", r"\|x\|^2"],
        "no variable to differentiate by",
    );
    bad(&["check", r"\|x\|^2"], "no variable to differentiate by");
    bad(&["derive", "x'*x"], "no variable to differentiate by");
    // Not both an expression and --latex-input.
    let r = run(&["derive", "x", "--latex-input", "x", "--wrt", "x"]);
    assert_eq!(r.code, Some(2), "{r:?}");
    // A bad --decl is reported against the declarations.
    bad(
        &["derive", "--latex-input", r"\|x\|^2", "--decl", "x: vectr(3)"],
        "did you mean `vector`?",
    );
}
