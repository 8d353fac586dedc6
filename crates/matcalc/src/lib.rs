//! matcalc: symbolic matrix calculus.
#![warn(missing_docs)]

pub mod error;
pub mod syntax;
pub mod eval;

pub use error::{Error, ErrorKind, Result};
pub mod ir;
pub mod diff;
pub mod typing;
pub mod render;
pub mod problem;

pub use problem::{Derivative, Problem};
