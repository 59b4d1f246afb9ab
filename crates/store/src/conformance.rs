//! The conformance suite every [`Store`](crate::Store) backend must pass.
