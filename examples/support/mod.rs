//! Shared example plumbing.
