//! Surface syntax: lexer, Pratt parser, declarations.
pub mod ast;
pub mod decl;
pub mod latex;
pub mod lexer;
pub mod parser;

pub use decl::parse_decls;
pub use latex::parse_latex;
pub use parser::parse_expr;
