//! The `spillway` binary.
fn main() {}
