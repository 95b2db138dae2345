//! Home of the trybuild cases for `rama::proxy!`: see `tests/ui.rs` and `tests/ui/`.
//!
//! The crate's dependencies (rama, tokio, tower) are what the cases may use.
