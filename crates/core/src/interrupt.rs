//! Stopping a training run cleanly on Ctrl-C or SIGTERM: the program's
//! signal handler calls [`request_stop`], and [`crate::fit`] stops at the
//! next step boundary with [`crate::Error::Interrupted`], which names the
//! epoch whose checkpoint is kept. Outside a training loop there is nothing
//! to finish, so a handler should exit at once ([`training_active`]).
//!
//! The flags are process-wide, as signals are.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Asks the running training loop to stop at its next step boundary.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Whether a stop has been asked for and not yet honoured (a second
/// Ctrl-C while the loop finishes its step should stop the program at once).
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Honours a pending request: true once per [`request_stop`], so that a
/// later run in the same process starts afresh.
pub(crate) fn take_stop_request() -> bool {
    STOP.swap(false, Ordering::SeqCst)
}

/// Whether a training loop is running (and will honour [`request_stop`]).
pub fn training_active() -> bool {
    ACTIVE.load(Ordering::SeqCst)
}

/// Marks a training loop as running until dropped.
#[derive(Debug)]
pub(crate) struct ActiveTraining(());

impl ActiveTraining {
    pub(crate) fn start() -> Self {
        ACTIVE.store(true, Ordering::SeqCst);
        Self(())
    }
}

impl Drop for ActiveTraining {
    fn drop(&mut self) {
        ACTIVE.store(false, Ordering::SeqCst);
    }
}
