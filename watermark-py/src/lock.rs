//! A mutex whose guard can only be taken after detaching from the interpreter.
//!
//! The rule: never block on a lock while attached. A thread that holds a
//! [`SeenContexts`](tracemark_core::SeenContexts) lock while detached and an
//! attached thread that waits for that lock (holding the interpreter) would
//! otherwise stall each other, and a lock taken while attached and held across
//! `detach` closes a deadlock cycle with the interpreter.
//!
//! [`DetachedMutex`] makes the rule a type property: its raw `Mutex` is private
//! to this module and [`DetachedMutex::lock`] asks for a [`Detached`] proof,
//! which only [`detach`] creates, inside `py.detach`, for the length of its
//! closure. Code that forgets to detach has no way to call `lock`; a guard
//! cannot leave the closure (it borrows the proof, and is not `Send`).
//!
//! The one hole the types cannot close: re-attaching (`Python::attach`) inside
//! the closure. This crate never attaches inside [`detach`].

use std::marker::PhantomData;
use std::sync::{Mutex, MutexGuard, PoisonError};

use pyo3::marker::Ungil;
use pyo3::Python;

/// Proof that the current thread is detached: only [`detach`] makes one, and
/// only lends it to its closure.
pub(crate) struct Detached<'d> {
    // Not constructible outside this module; not Send or Sync, so it stays on
    // the detached thread.
    _scope: PhantomData<*const &'d ()>,
}

/// Detaches from the interpreter and runs `f` with the proof that lets it take
/// [`DetachedMutex`] locks.
pub(crate) fn detach<T, F>(py: Python<'_>, f: F) -> T
where
    F: for<'d> FnOnce(&'d Detached<'d>) -> T + Ungil + Send,
    T: Ungil + Send,
{
    py.detach(|| {
        let proof = Detached { _scope: PhantomData };
        f(&proof)
    })
}

/// A mutex that is only locked while detached (see the module documentation).
#[derive(Default)]
pub(crate) struct DetachedMutex<T> {
    inner: Mutex<T>,
}

impl<T> DetachedMutex<T> {
    /// A mutex holding `value` (const: a `static` may hold one).
    pub(crate) const fn new(value: T) -> Self {
        Self {
            inner: Mutex::new(value),
        }
    }

    /// Locks, blocking until the lock is free; the guard cannot outlive `proof`.
    /// A panic while the lock was held cannot leave the value half-updated for
    /// the types kept here (each update is one call), so a poisoned lock is
    /// recovered rather than unwrapped.
    pub(crate) fn lock<'a>(&'a self, _proof: &'a Detached<'_>) -> MutexGuard<'a, T> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The address of the mutex: a total order for locking several at once.
    pub(crate) fn address(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }
}
