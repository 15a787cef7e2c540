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

/// What the handlers learn about a request for its access-log line: set
/// through the task-local [`ACCOUNT`] while the request runs.
#[derive(Default)]
pub(crate) struct Account {
    /// The API token's name (never the token).
    pub(crate) token: Option<String>,
    /// Body bytes read.
    pub(crate) bytes_in: u64,
    /// The request's admitted cost (body bytes, or its reservation).
    pub(crate) cost: u64,
    /// What the request did, when it got that far: `detect`, `scan`, `stream_open`, ...
    pub(crate) event: Option<&'static str>,
    /// The key tested.
    pub(crate) key_id: Option<String>,
    /// The verdict.
    pub(crate) verdict: Option<&'static str>,
    /// Its log10 p-value.
    pub(crate) log10_p: Option<f64>,
    /// SHA-256 of the input tested.
    pub(crate) sha256: Option<String>,
    /// Documents of a scan.
    pub(crate) documents: Option<u64>,
    /// Marks or per-document results left out of the response by its size bound.
    pub(crate) truncated: Option<u64>,
    /// The text or ids, only with `--log-texts`.
    pub(crate) text: Option<String>,
}

tokio::task_local! {
    /// The account of the request this task serves.
    pub(crate) static ACCOUNT: std::cell::RefCell<Account>;
}

/// Updates the running request's account (nothing outside a request).
pub(crate) fn account(f: impl FnOnce(&mut Account)) {
    let _ = ACCOUNT.try_with(|a| f(&mut a.borrow_mut()));
}

/// The error code of a response, for its log line.
#[derive(Clone, Copy)]
pub(crate) struct ErrorCode(pub(crate) &'static str);

/// Lines that anyone can cause at any rate (requests without a known token,
/// 429s, 503s for load) are written one by one up to `PER_INTERVAL` for each
/// status and route in an interval, then counted: one summary line an interval.
pub(crate) struct Sampler {
    interval: Duration,
    per_interval: u64,
    windows: std::sync::Mutex<std::collections::HashMap<u16, std::collections::HashMap<String, Window>>>,
}

struct Window {
    start: Instant,
    logged: u64,
    suppressed: u64,
    tokens: std::collections::BTreeMap<String, u64>,
}

/// Summaries keep at most this many token names (the rest are counted as `other`).
const SUMMARY_TOKENS: usize = 16;

impl Sampler {
    pub(crate) fn new(interval: Duration, per_interval: u64) -> Self {
        Sampler {
            interval,
            per_interval,
            windows: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Whether this request gets its own line; if not, it is counted.
    pub(crate) fn admit(&self, status: u16, route: &str, token: Option<&str>) -> bool {
        let now = Instant::now();
        let Ok(mut windows) = self.windows.lock() else {
            return false;
        };
        let routes = windows.entry(status).or_default();
        if !routes.contains_key(route) {
            routes.insert(
                route.to_string(),
                Window {
                    start: now,
                    logged: 0,
                    suppressed: 0,
                    tokens: std::collections::BTreeMap::new(),
                },
            );
        }
        let Some(w) = routes.get_mut(route) else {
            return false;
        };
        if now.duration_since(w.start) >= self.interval {
            summarise(status, route, w, self.interval);
            w.start = now;
            w.logged = 0;
        }
        if w.logged < self.per_interval {
            w.logged += 1;
            return true;
        }
        w.suppressed += 1;
        let name = token.unwrap_or("-");
        if w.tokens.len() < SUMMARY_TOKENS || w.tokens.contains_key(name) {
            *w.tokens.entry(name.to_string()).or_default() += 1;
        } else {
            *w.tokens.entry("other".to_string()).or_default() += 1;
        }
        false
    }

    /// Writes the summaries of intervals that have ended (called once an interval).
    pub(crate) fn flush(&self) {
        let now = Instant::now();
        let Ok(mut windows) = self.windows.lock() else {
            return;
        };
        for (status, routes) in windows.iter_mut() {
            routes.retain(|route, w| {
                if now.duration_since(w.start) < self.interval {
                    return true;
                }
                summarise(*status, route, w, self.interval);
                false
            });
        }
        windows.retain(|_, routes| !routes.is_empty());
    }
}

fn summarise(status: u16, route: &str, w: &mut Window, interval: Duration) {
    if w.suppressed == 0 {
        return;
    }
    let tokens: Vec<String> = w.tokens.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    let level_warn = status == 429 || status >= 500;
    let tokens = tokens.join(",");
    if level_warn {
        tracing::warn!(event = "requests_counted", status, path = %route, requests = w.suppressed + w.logged, not_logged = w.suppressed, interval_s = interval.as_secs(), tokens = %tokens);
    } else {
        tracing::info!(event = "requests_counted", status, path = %route, requests = w.suppressed + w.logged, not_logged = w.suppressed, interval_s = interval.as_secs(), tokens = %tokens);
    }
    w.suppressed = 0;
    w.tokens.clear();
}
