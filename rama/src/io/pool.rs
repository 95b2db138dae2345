//! Per-thread pools of relay buffers and splice pipes.
//!
//! A relay direction takes a buffer (or a pipe) only while bytes are in flight and gives it back
//! once it is empty and the reader has nothing more for now, so an idle tunnel holds neither;
//! busy tunnels on the same thread reuse the same few, which spares an allocation (or a
//! `pipe2(2)` call) per burst.

use std::{cell::RefCell, thread::LocalKey};

/// How many idle items a thread keeps; more are freed.
const KEEP: usize = 64;

/// Takes an item for which `fits` holds from the pool, if there is one.
pub(super) fn take<T: 'static>(
    pool: &'static LocalKey<RefCell<Vec<T>>>,
    fits: impl Fn(&T) -> bool,
) -> Option<T> {
    pool.with_borrow_mut(|items| {
        let index = items.iter().rposition(fits)?;
        Some(items.swap_remove(index))
    })
}

/// Gives an item back to the pool (or frees it when the pool is full).
pub(super) fn give<T: 'static>(pool: &'static LocalKey<RefCell<Vec<T>>>, item: T) {
    // During thread teardown the pool may be gone already; the item is then simply dropped.
    let _ = pool.try_with(|items| {
        if let Ok(mut items) = items.try_borrow_mut()
            && items.len() < KEEP
        {
            items.push(item);
        }
    });
}

thread_local! {
    /// Relay buffers of any size; `take` picks one of the size asked for.
    pub(super) static BUFFERS: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_back_what_fits_and_bounds_the_pool() {
        assert!(take(&BUFFERS, |b| b.len() == 7).is_none());
        for _ in 0..KEEP + 10 {
            give(&BUFFERS, vec![0u8; 7].into_boxed_slice());
        }
        give(&BUFFERS, vec![0u8; 9].into_boxed_slice());
        assert_eq!(BUFFERS.with_borrow(Vec::len), KEEP);
        assert_eq!(take(&BUFFERS, |b| b.len() == 7).map(|b| b.len()), Some(7));
        assert!(
            take(&BUFFERS, |b| b.len() == 9).is_none(),
            "the full pool freed it"
        );
    }
}
