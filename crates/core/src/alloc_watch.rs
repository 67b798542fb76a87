//! [`LargestAllocation`]: the system allocator, recording the largest single
//! allocation a closure makes on its thread. The fuzz tests of the parsers of
//! outside input (IDX files, checkpoints) install it as their test binary's
//! `#[global_allocator]` and bound what a read allocates at once by the bytes
//! the file really holds, so that a header claiming a gigabyte in a file of
//! a few bytes fails the test long before it exhausts memory.
//!
//! ```
//! use deepgen_core::alloc_watch::{LargestAllocation, largest_allocation};
//! // In a test binary: #[global_allocator] static A: LargestAllocation = LargestAllocation;
//! let (v, largest) = largest_allocation(|| vec![0u8; 1000]);
//! assert_eq!(v.len(), 1000);
//! assert_eq!(largest, 0); // not installed in this doctest: nothing recorded
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, recording each allocation's size while a
/// [`largest_allocation`] watches the thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct LargestAllocation;

thread_local! {
    /// `Some(largest so far)` while a closure is watched on this thread.
    static LARGEST: Cell<Option<usize>> = const { Cell::new(None) };
}

fn record(size: usize) {
    // `try_with`: the slot may be gone while the thread is being torn down.
    let _ = LARGEST.try_with(|largest| {
        if let Some(max) = largest.get() {
            largest.set(Some(max.max(size)));
        }
    });
}

// SAFETY: every call is forwarded to `System` unchanged; recording touches
// only a `const`-initialised thread-local `Cell` with no destructor, which
// never allocates.
unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: the caller's contract for `alloc` is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` and returns its value with the largest single allocation (bytes)
/// it made on this thread — 0 unless [`LargestAllocation`] is the global
/// allocator.
pub fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(Some(0)));
    let value = f();
    let largest = LARGEST.with(|l| l.replace(None)).unwrap_or(0);
    (value, largest)
}
