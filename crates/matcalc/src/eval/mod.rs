//! Numbers: dense tensors on faer.
