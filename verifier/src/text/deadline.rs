//! A deadline that long work checks as it goes: canonicalisation every few
//! thousand characters, tokenisation between chunks, scoring between
//! blocks of tokens. The default is no deadline.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How many steps (characters, pieces, tokens) pass between two looks at
/// the clock: reading it costs about 25 ns, a step at least a few, so a check
/// every 1,024 steps costs well under 1 % and comes every few hundred
/// microseconds at most.
pub(crate) const CHECK_EVERY: usize = 1024;

/// When work on one input must stop, or never ([`Deadline::NONE`], the
/// default). Work past its deadline stops with [`Error::DeadlineExceeded`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// No deadline: the work runs to its end.
    pub const NONE: Deadline = Deadline(None);

    /// Stop at `instant`.
    pub fn at(instant: Instant) -> Self {
        Self(Some(instant))
    }

    /// Stop `duration` from now.
    pub fn after(duration: Duration) -> Self {
        Self(Instant::now().checked_add(duration))
    }

    /// The instant to stop at, if any.
    pub fn instant(self) -> Option<Instant> {
        self.0
    }

    /// Whether there is a deadline at all.
    pub fn is_set(self) -> bool {
        self.0.is_some()
    }

    /// Whether the deadline has passed.
    pub fn is_past(self) -> bool {
        self.0.is_some_and(|d| Instant::now() >= d)
    }

    /// [`Error::DeadlineExceeded`] once the deadline has passed.
    pub fn check(self) -> Result<()> {
        if self.is_past() {
            Err(Error::DeadlineExceeded)
        } else {
            Ok(())
        }
    }

    /// [`check`](Self::check) at every [`CHECK_EVERY`]-th step `i`.
    pub(crate) fn every(self, i: usize) -> Result<()> {
        if self.0.is_some() && i.is_multiple_of(CHECK_EVERY) {
            self.check()
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_never_passes_and_a_past_deadline_stops() {
        assert!(!Deadline::NONE.is_past());
        assert_eq!(Deadline::default(), Deadline::NONE);
        assert!(Deadline::NONE.check().is_ok());
        let past = Deadline::at(Instant::now());
        assert_eq!(past.check(), Err(Error::DeadlineExceeded));
        assert!(past.every(1).is_ok(), "only every CHECK_EVERY-th step looks");
        assert_eq!(past.every(0), Err(Error::DeadlineExceeded));
        assert!(Deadline::after(Duration::from_secs(3600)).check().is_ok());
    }
}
