//! A problem as a person gives it: an expression in our syntax or in LaTeX
//! (detected, or forced), declarations in our syntax, and how it was read. The
//! CLI and the web API both read their input through [`Source`].

use crate::error::{Error, ErrorKind, Origin, Result};
use crate::syntax::latex::{self, LatexProblem};
use crate::Problem;

/// An expression with its declarations, read.
#[derive(Clone, Debug)]
pub struct Source {
    /// The expression as given (our syntax or LaTeX); error spans with
    /// [`Origin::Expr`] point into it.
    pub expr: String,
    /// The declarations given, in our syntax; spans with [`Origin::Decls`]
    /// point into it.
    pub given_decls: String,
    /// All declarations in our syntax: the given ones, then those read from
    /// LaTeX input that the given ones do not override.
    pub decls: String,
    /// The LaTeX reading, for LaTeX input.
    pub latex: Option<LatexProblem>,
}

/// How the input was read, in our syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Echo {
    /// The expression in our syntax (empty if it does not parse).
    pub expr: String,
    /// All declarations (see [`Source::decls`]).
    pub decls: String,
    /// Variables named by LaTeX input (`L(x) :=`, "with respect to").
    pub wrt: Vec<String>,
}

impl Source {
    /// Read an expression and declarations (`;`-separated). The expression is
    /// read as LaTeX when `force_latex` is set or it looks like LaTeX
    /// ([`latex::looks_like_latex`]); LaTeX declarations are merged after the
    /// given ones, which win on a conflict.
    pub fn read(expr: &str, decls: &str, force_latex: bool) -> Result<Source> {
        let expr = expr.trim_end().to_string();
        let mut src = Source {
            expr,
            given_decls: decls.to_string(),
            decls: decls.to_string(),
            latex: None,
        };
        if !(force_latex || latex::looks_like_latex(&src.expr)) {
            return Ok(src);
        }
        let known = crate::syntax::parse_decls(decls).map_err(|e| e.with_origin(Origin::Decls))?;
        let lp = latex::parse_latex_with(&src.expr, &known)?;
        for d in lp.decls.iter().filter(|d| !known.iter().any(|k| k.name == d.name)) {
            if !src.decls.is_empty() {
                src.decls.push_str("; ");
            }
            src.decls.push_str(&latex::decl_to_plain(d));
        }
        src.latex = Some(lp);
        Ok(src)
    }

    /// Whether the expression was read as LaTeX.
    pub fn is_latex(&self) -> bool {
        self.latex.is_some()
    }

    /// Parse (our syntax) and type the expression against all declarations.
    pub fn problem(&self) -> Result<Problem> {
        self.problem_with(&self.decls)
    }

    /// [`Source::problem`] with other declarations (say, extended with the
    /// shapes of given values); their spans are reported in the declarations.
    pub fn problem_with(&self, decls: &str) -> Result<Problem> {
        match &self.latex {
            None => Problem::new(&self.expr, decls),
            Some(l) => crate::syntax::parse_decls(decls)
                .map_err(|e| e.with_origin(Origin::Decls))
                .and_then(|d| Problem::from_ast(&l.expr, &d)),
        }
    }

    /// The declarations extended with one for every valued name that has none,
    /// from the value's shape (`skip`: names left to inference, e.g. a batched variable).
    pub fn decls_with_values(&self, vals: &[(String, crate::eval::Tensor)], skip: &[String]) -> Result<String> {
        let declared = crate::syntax::parse_decls(&self.decls).map_err(|e| e.with_origin(Origin::Decls))?;
        let mut all = self.decls.clone();
        for (n, t) in vals {
            if declared.iter().any(|d| d.name == *n) || skip.contains(n) {
                continue;
            }
            let d = match t.shape() {
                [] => format!("{n}: scalar"),
                [k] => format!("{n}: vector({k})"),
                [r, c] => format!("{n}: matrix({r}, {c})"),
                s => {
                    return Err(Error::new(
                        ErrorKind::Value,
                        format!("`{n}` has {} axes; variables are scalars, vectors or matrices", s.len()),
                    )
                    .hint("give a number, an array, or an array of rows"))
                }
            };
            if !all.is_empty() {
                all.push_str("; ");
            }
            all.push_str(&d);
        }
        Ok(all)
    }

    /// The variables to differentiate by: `wrt` if given, else those LaTeX
    /// input names on the left (`L(x) :=`) or "with respect to".
    pub fn wrt_or_default(&self, wrt: &[String]) -> Result<Vec<String>> {
        match &self.latex {
            _ if !wrt.is_empty() => Ok(wrt.to_vec()),
            Some(l) if !l.params.is_empty() => Ok(l.params.clone()),
            Some(LatexProblem { wrt: Some(w), .. }) => Ok(vec![w.clone()]),
            _ => Err(Error::new(ErrorKind::Usage, "no variable to differentiate by")
                .hint("name it (--wrt NAME, or \"wrt\" in the API), or in LaTeX input: `L(x) := …`")),
        }
    }

    /// How the input was read, in our syntax.
    pub fn echo(&self) -> Echo {
        match &self.latex {
            Some(l) => Echo {
                expr: l.echo.clone(),
                decls: self.decls.clone(),
                wrt: if l.params.is_empty() {
                    l.wrt.iter().cloned().collect()
                } else {
                    l.params.clone()
                },
            },
            None => Echo {
                expr: crate::syntax::parse_expr(&self.expr)
                    .map(|e| latex::to_plain(&e))
                    .unwrap_or_default(),
                decls: self.decls.clone(),
                wrt: Vec::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_syntax_is_read_as_is() {
        let s = Source::read("x'*A*x  ", "A: matrix(n, n)", false).unwrap();
        assert!(!s.is_latex());
        assert_eq!(s.expr, "x'*A*x");
        assert_eq!(s.echo().expr, "x'*A*x");
        assert!(s.wrt_or_default(&[]).is_err());
    }

    #[test]
    fn latex_is_detected_and_its_declarations_merged() {
        let s = Source::read(
            r"L(x) := \|A x - b\|_2^2, A \in \mathbb{R}^{m \times n}",
            "b: vector(m)",
            false,
        )
        .unwrap();
        assert!(s.is_latex());
        assert!(s.decls.starts_with("b: vector(m); A: matrix(m, n)"), "{}", s.decls);
        assert_eq!(s.wrt_or_default(&[]).unwrap(), vec!["x".to_string()]);
        assert_eq!(s.echo().wrt, vec!["x".to_string()]);
        s.problem().unwrap();
    }

    #[test]
    fn bad_declarations_point_into_the_declarations() {
        let e = Source::read(r"\|x\|^2", "x: vectr(n)", false).unwrap_err();
        assert_eq!(e.labels[0].origin, Origin::Decls);
    }
}
