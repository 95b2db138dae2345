//! Procedural macros of rama. The `proxy!` macro lands here (issue 3).
