//! matcalc: symbolic matrix calculus.
#![warn(missing_docs)]

pub mod error;
pub mod eval;
pub mod syntax;

pub use error::{Error, ErrorKind, Result};
pub mod api;
pub mod codegen;
pub mod diff;
pub mod explain;
pub mod input;
pub mod ir;
pub mod plan;
pub mod problem;
pub mod render;
pub mod report;
pub mod typing;

pub use plan::{compile, Compiled};
pub use problem::{Derivative, Problem};
