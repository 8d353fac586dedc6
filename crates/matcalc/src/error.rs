//! Errors are values: every stage returns [`Error`], with byte spans into the
//! text it was given. Only front ends (CLI, server) render them.

use crate::syntax::ast::Span;
use std::fmt;

/// Which text a span points into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Origin {
    /// The expression being differentiated / evaluated.
    #[default]
    Expr,
    /// The declarations text (all `--decl` flags joined with `; `).
    Decls,
}

/// What went wrong, broadly. Front ends map every kind to exit code 2; the
/// web API names it in lower case (`"syntax"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    /// The text could not be parsed.
    Syntax,
    /// An unknown variable, function or dimension name.
    Name,
    /// Shapes do not fit together.
    Shape,
    /// The request does not make sense (e.g. a gradient of a non-scalar).
    Usage,
    /// Values given for evaluation are wrong (missing, wrong shape, not finite).
    Value,
    /// A numeric failure: singular matrix, log of a negative number, …
    Numeric,
    /// A size, depth or time limit was hit.
    Limit,
}

/// A labelled span: "this part has shape n×m".
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    /// Where.
    pub span: Span,
    /// Which text.
    pub origin: Origin,
    /// What to say there.
    pub message: String,
}

/// An error with a primary message, optional source labels and a hint.
#[derive(Clone, Debug, PartialEq)]
pub struct Error {
    /// Broad category.
    pub kind: ErrorKind,
    /// One-line description.
    pub message: String,
    /// Source locations; the first is the primary one.
    pub labels: Vec<Label>,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Error {
    /// An error with no location.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            labels: Vec::new(),
            hint: None,
        }
    }
    /// An error located in the expression text.
    pub fn at(kind: ErrorKind, span: Span, message: impl Into<String>) -> Error {
        let message = message.into();
        Error::new(kind, message.clone()).label(span, Origin::Expr, message)
    }
    /// Add a label.
    pub fn label(mut self, span: Span, origin: Origin, message: impl Into<String>) -> Error {
        self.labels.push(Label {
            span,
            origin,
            message: message.into(),
        });
        self
    }
    /// Set the hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }
    /// Re-point every label to another origin (used when a text is parsed on its own).
    pub fn with_origin(mut self, origin: Origin) -> Error {
        for l in &mut self.labels {
            l.origin = origin;
        }
        self
    }
    /// The primary span, if any.
    pub fn span(&self) -> Option<Span> {
        self.labels.first().map(|l| l.span)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// Result with our error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
