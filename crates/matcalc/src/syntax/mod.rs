//! Surface syntax: lexer, Pratt parser, declarations.
pub mod ast;
