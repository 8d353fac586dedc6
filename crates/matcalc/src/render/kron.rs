//! Kronecker (vec) form of derivatives that are tensors: with `vec` stacking
//! columns, `∂vec(f)/∂vec(X)ᵀ` of `A X B` is `Bᵀ ⊗ A`, of `W x` by `W` is `xᵀ ⊗ I`.
//!
//! A derivative tensor whose node is a product with no summation, each factor
//! holding at most one output axis and one variable axis, is a Kronecker
//! product; anything else (a transpose's commutation matrix, sums of such
//! products) is left to index notation. Only unambiguous cases are written.

use super::mexpr::{transpose, Recover, M};
use super::print::{self, Flavour, Style};
use crate::ir::{Graph, Id, Labels, Node};

/// One factor of the product: its expression and its (output, variable) labels.
struct Factor {
    m: M,
    out: Option<u8>,
    var: Option<u8>,
}

/// `∂vec(f)/∂vec(X)ᵀ` as `A ⊗ B`, for a derivative node `id` whose first `p`
/// axes are the function's (order `p`) and the rest the variable's (order `q`),
/// `p + q` of 3 or 4.
pub fn kronecker(g: &Graph, id: Id, p: usize, style: &Style) -> Option<String> {
    let q = g.order(id).checked_sub(p)?;
    if !(3..=4).contains(&(p + q)) || p > 2 || q > 2 {
        return None;
    }
    let (mut coef, mut node) = (1.0, id);
    // A constant in front: c · T.
    if let Node::Mul(a, b, s1, _, _) = g.node(id) {
        if s1.is_empty() {
            if let Some(c) = g.const_value(*a) {
                coef = c;
                node = *b;
            }
        }
    }
    let Node::Mul(a, b, s1, s2, s3) = g.node(node) else {
        return None;
    };
    if s3.len() != p + q || s1.iter().chain(s2.iter()).any(|l| !s3.has(*l)) || s1.len() + s2.len() != p + q {
        return None;
    }
    let mut r = Recover::new(g);
    let sym = |_: &str| false;
    let factor = |r: &mut Recover, x: Id, ls: &Labels| -> Option<Factor> {
        // Positions in the result: < p is an output axis.
        let pos: Vec<usize> = ls.iter().map(|l| s3.pos(*l).unwrap_or(usize::MAX)).collect();
        let outs: Vec<usize> = pos.iter().copied().filter(|&k| k < p).collect();
        let vars: Vec<usize> = pos.iter().copied().filter(|&k| k >= p && k < p + q).collect();
        if outs.len() > 1 || vars.len() > 1 || outs.len() + vars.len() != ls.len() {
            return None;
        }
        let mut m = r.convert(x);
        // Orient a matrix as (output, variable).
        if ls.len() == 2 && pos[0] >= p {
            m = transpose(m, 2, &sym);
        }
        Some(Factor {
            m,
            out: outs.first().map(|&k| k as u8),
            var: vars.first().map(|&k| k as u8),
        })
    };
    let fa = factor(&mut r, *a, s1)?;
    let fb = factor(&mut r, *b, s2)?;
    // vec stacks columns: the later axis (column index) is the outer Kronecker factor.
    // Rows of J: f's axes (i, or i then j), columns: the variable's (k, or k then l).
    // With two axes on a side the later one (the column index of f or X) belongs to the
    // outer factor; with one axis on a side either factor may hold it (the other has
    // size 1 there).
    let fits = |outer: &Factor, inner: &Factor| {
        let rows = p < 2 || (outer.out == Some(1) && inner.out == Some(0));
        let cols = q < 2 || (outer.var == Some(p as u8 + 1) && inner.var == Some(p as u8));
        rows && cols
    };
    let (outer, inner) = if fits(&fb, &fa) {
        (fb, fa)
    } else if fits(&fa, &fb) {
        (fa, fb)
    } else {
        return None;
    };
    // A factor with only a variable axis is a row (1×n); with only an output axis, a column.
    let orient = |f: Factor| {
        if f.out.is_none() && f.var.is_some() {
            transpose(f.m, 1, &sym)
        } else {
            f.m
        }
    };
    let (o, i) = (orient(outer), orient(inner));
    let (os, is) = (paren(&o, style), paren(&i, style));
    let kron = if style.flavour == Flavour::Latex {
        " \\otimes "
    } else {
        " ⊗ "
    };
    let c = if coef == 1.0 {
        String::new()
    } else if coef == -1.0 {
        style.minus.to_string()
    } else {
        format!("{} ", print::print(&M::Num(coef), style))
    };
    if c.is_empty() {
        Some(format!("{os}{kron}{is}"))
    } else {
        Some(format!("{c}({os}{kron}{is})"))
    }
}

fn paren(m: &M, style: &Style) -> String {
    let s = print::print(m, style);
    if matches!(m, M::Add(_) | M::Prod(_) | M::Had(_) | M::Div(..)) {
        if style.flavour == Flavour::Latex {
            format!("\\left({s}\\right)")
        } else {
            format!("({s})")
        }
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Problem;

    fn kron(e: &str, decls: &str, wrt: &str) -> Option<String> {
        let mut p = Problem::new(e, decls).unwrap();
        let ds = p.derive(&[wrt.to_string()], 1).unwrap();
        kronecker(&p.graph, ds[0].id, p.graph.order(p.root), &Style::TEXT)
    }

    #[test]
    fn textbook_identities() {
        assert_eq!(kron("W*x", "", "W").as_deref(), Some("xᵀ ⊗ I"));
        assert_eq!(kron("A*X*B", "", "X").as_deref(), Some("Bᵀ ⊗ A"));
        assert_eq!(kron("A*X", "", "X").as_deref(), Some("I ⊗ A"));
        assert_eq!(kron("X*B", "", "X").as_deref(), Some("Bᵀ ⊗ I"));
        assert_eq!(kron("x*y'", "", "x").as_deref(), Some("y ⊗ I"));
        assert_eq!(kron("x*y'", "", "y").as_deref(), Some("I ⊗ x"));
        assert_eq!(kron("-2*A*X*B", "", "X").as_deref(), Some("−2 (Bᵀ ⊗ A)"));
        assert_eq!(kron("sin(W*x)", "", "W").as_deref(), Some("xᵀ ⊗ diag(cos(W x))"));
    }

    #[test]
    fn ambiguous_cases_stay_in_index_notation() {
        // The transpose's derivative is a commutation matrix, not a Kronecker product.
        assert_eq!(kron("X'", "", "X"), None);
        assert_eq!(kron("A*X + X*B", "", "X"), None);
        assert_eq!(kron("X*A*X", "", "X"), None);
    }
}
