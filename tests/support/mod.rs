//! Shared test plumbing.
