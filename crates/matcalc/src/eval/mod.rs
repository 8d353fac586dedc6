//! Numbers: dense tensors on faer.
//!
//! * [`tensor`]: the row-major `f64` [`Tensor`] and the index-notation kernels
//!   [`tensor::permute_sum`] and [`tensor::einsum`].
//! * [`linalg`]: inverse, determinant, log-determinant and solves (LU).
//! * [`values`]: reading variable values from JSON and `.npy`, writing JSON.

pub mod check;
pub mod interp;
pub mod linalg;
pub mod tensor;
pub mod values;

pub use tensor::Tensor;
