//! matcalc: symbolic matrix calculus.
#![warn(missing_docs)]

pub mod error;
pub mod syntax;
pub mod eval;

pub use error::{Error, ErrorKind, Result};
