//! Log volume: warnings that a client can trigger at will are written as
//! counts, once an interval, never one line per event.

use std::time::{Duration, Instant};

/// Counts events and says when to write a line about them: the first event
/// at once, then at most once an `interval`, with the count since the last line.
pub(crate) struct Every {
    interval: Duration,
    last: Option<Instant>,
    count: u64,
}

impl Every {
    pub(crate) fn new(interval: Duration) -> Self {
        Every {
            interval,
            last: None,
            count: 0,
        }
    }

    /// One more event; `Some(events since the last line)` when a line is due.
    pub(crate) fn tick(&mut self) -> Option<u64> {
        self.tick_at(Instant::now())
    }

    fn tick_at(&mut self, now: Instant) -> Option<u64> {
        self.count += 1;
        match self.last {
            Some(last) if now.duration_since(last) < self.interval => None,
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.count))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_an_interval_with_the_count() {
        let mut e = Every::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(e.tick_at(t0), Some(1));
        for i in 1..1000 {
            assert_eq!(e.tick_at(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(e.tick_at(t0 + Duration::from_secs(11)), Some(1000));
    }
}
