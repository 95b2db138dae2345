//! Home of the trybuild cases for `proxy!`; see `tests/`.
