//! API tokens (stored as SHA-256 digests) and their budgets: requests,
//! request bytes and tokens scored, each a token bucket per API token.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::exit::Failure;

/// One API token, known by its digest.
#[derive(Clone, Debug)]
pub(crate) struct TokenEntry {
    /// `sha256:<hex>` of the token.
    pub(crate) digest: String,
    /// Its name, as logged.
    pub(crate) name: String,
    /// Requests a minute.
    pub(crate) per_minute: u32,
    /// Requests at once above the rate.
    pub(crate) burst: u32,
    /// Request body bytes a minute (`bytes=` on its line, else `--token-bytes-per-minute`).
    pub(crate) bytes_per_minute: u64,
    /// Tokens scored a minute (`scored=` on its line, else `--token-scored-per-minute`).
    pub(crate) scored_per_minute: u64,
}

/// What a token may use when its line does not say.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budgets {
    /// Requests a minute.
    pub(crate) rate: u32,
    /// Requests at once above the rate.
    pub(crate) burst: u32,
    /// Request body bytes a minute.
    pub(crate) bytes_per_minute: u64,
    /// Tokens scored a minute.
    pub(crate) scored_per_minute: u64,
}

/// The API tokens the service accepts.
pub(crate) struct TokenTable {
    by_digest: HashMap<String, TokenEntry>,
}

fn digest(token: &str) -> String {
    let hash = Sha256::digest(token.as_bytes());
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in hash {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

impl TokenTable {
    /// Reads `path`: lines `sha256:<64 hex> <name> [requests per minute [burst]] [bytes=N] [scored=N]`;
    /// blank lines and `#` comments are skipped.
    pub(crate) fn load(path: &Path, budgets: Budgets) -> Result<Self, Failure> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| Failure::Read {
            source: source.clone(),
            error,
        })?;
        Self::parse(&text, budgets).map_err(|message| Failure::Malformed { source, message })
    }

    fn parse(text: &str, budgets: Budgets) -> Result<Self, String> {
        let Budgets { rate, burst, .. } = budgets;
        let mut by_digest = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut bytes_per_minute = budgets.bytes_per_minute;
            let mut scored_per_minute = budgets.scored_per_minute;
            for field in line.split_whitespace().filter(|f| f.contains('=')) {
                let (what, value) = field.split_once('=').unwrap_or((field, ""));
                let value = value
                    .parse::<u64>()
                    .ok()
                    .filter(|v| *v > 0)
                    .ok_or_else(|| format!("line {}: {what}= must be a positive number a minute", i + 1))?;
                match what {
                    "bytes" => bytes_per_minute = value,
                    "scored" => scored_per_minute = value,
                    _ => return Err(format!("line {}: unknown budget {what}= (bytes= or scored=)", i + 1)),
                }
            }
            let mut fields = line.split_whitespace().filter(|f| !f.contains('='));
            let (Some(d), Some(name)) = (fields.next(), fields.next()) else {
                return Err(format!(
                    "line {}: expected `sha256:<hex> <name> [requests per minute]`",
                    i + 1
                ));
            };
            let hex = d.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "line {}: the first field must be sha256:<64 hex digits> of the token (printf %s \"$TOKEN\" | sha256sum), \
                     never the token itself",
                    i + 1
                ));
            }
            let per_minute = match fields.next() {
                Some(r) => r.parse::<u32>().ok().filter(|r| *r > 0).ok_or_else(|| {
                    format!(
                        "line {}: the rate must be a positive number of requests a minute",
                        i + 1
                    )
                })?,
                None => rate,
            };
            let burst = match fields.next() {
                Some(b) => b
                    .parse::<u32>()
                    .ok()
                    .filter(|b| *b > 0)
                    .ok_or_else(|| format!("line {}: the burst must be a positive number of requests", i + 1))?,
                None => burst.max(1),
            };
            let digest = format!("sha256:{}", hex.to_ascii_lowercase());
            let entry = TokenEntry {
                digest: digest.clone(),
                name: name.to_string(),
                per_minute,
                burst,
                bytes_per_minute,
                scored_per_minute,
            };
            if by_digest.insert(digest, entry).is_some() {
                return Err(format!("line {}: this token is listed twice", i + 1));
            }
        }
        if by_digest.is_empty() {
            return Err("no API token listed: add a line `sha256:<hex> <name>`".into());
        }
        Ok(TokenTable { by_digest })
    }

    /// The entry of `token`, if it is one of ours.
    pub(crate) fn lookup(&self, token: &str) -> Option<&TokenEntry> {
        self.by_digest.get(&digest(token))
    }

    /// The entry whose digest is `digest`.
    pub(crate) fn lookup_digest(&self, digest: &str) -> Option<&TokenEntry> {
        self.by_digest.get(digest)
    }

    /// The names of the tokens listed.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.by_digest.values().map(|e| e.name.as_str())
    }

    /// How many tokens are listed.
    pub(crate) fn len(&self) -> usize {
        self.by_digest.len()
    }
}

/// Whether a request may go on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Yes.
    Admitted,
    /// No: the token's bucket is empty for about `retry_after` seconds.
    Limited { retry_after: u64 },
}

/// The budgets checked when a request arrives (its bytes are checked with its cost).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Budget {
    /// Requests.
    Requests,
    /// Tokens scored.
    Scored,
}

/// A token bucket per API token.
struct Bucket {
    tokens: f64,
    at: Instant,
    per_second: f64,
    capacity: f64,
}

impl Bucket {
    fn full(per_minute: f64, capacity: f64, now: Instant) -> Self {
        Bucket {
            tokens: capacity,
            at: now,
            per_second: per_minute / 60.0,
            capacity,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.at = now;
    }

    /// Seconds until the bucket holds `amount` again.
    fn wait(&self, amount: f64) -> u64 {
        ((amount - self.tokens) / self.per_second).ceil().max(1.0) as u64
    }
}

/// A token's three buckets.
struct Buckets {
    requests: Bucket,
    bytes: Bucket,
    scored: Bucket,
}

/// A bucket of bytes or tokens scored holds this many minutes of its rate:
/// a quarter of a minute's allowance may come at once.
const BURST_MINUTES: f64 = 0.25;

/// The rate limiter of every API token.
pub(crate) struct RateLimiter {
    buckets: Mutex<HashMap<String, Buckets>>,
}

impl RateLimiter {
    /// Full buckets for every token of `table`; a bucket of bytes holds at
    /// least `max_body` (so that one request of the largest size can pass).
    pub(crate) fn new(table: &TokenTable, max_body: usize) -> Self {
        let now = Instant::now();
        let buckets = table
            .by_digest
            .values()
            .map(|e| {
                let bytes = e.bytes_per_minute as f64;
                let scored = e.scored_per_minute as f64;
                (
                    e.digest.clone(),
                    Buckets {
                        requests: Bucket::full(f64::from(e.per_minute), f64::from(e.burst), now),
                        bytes: Bucket::full(bytes, (bytes * BURST_MINUTES).max(max_body as f64), now),
                        scored: Bucket::full(scored, (scored * BURST_MINUTES).max(1.0), now),
                    },
                )
            })
            .collect();
        RateLimiter {
            buckets: Mutex::new(buckets),
        }
    }

    /// Takes one request from `digest`'s bucket at `now`; refused while the
    /// token's budget of tokens scored is spent (it may be in debt: a
    /// detection's count is known only once it ran).
    pub(crate) fn admit(&self, digest: &str, now: Instant) -> Result<(), (Budget, u64)> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Err((Budget::Requests, 1));
        };
        let Some(b) = buckets.get_mut(digest) else {
            return Err((Budget::Requests, 60));
        };
        b.requests.refill(now);
        b.scored.refill(now);
        if b.scored.tokens < 1.0 {
            return Err((Budget::Scored, b.scored.wait(1.0)));
        }
        if b.requests.tokens >= 1.0 {
            b.requests.tokens -= 1.0;
            Ok(())
        } else {
            Err((Budget::Requests, b.requests.wait(1.0)))
        }
    }

    /// Takes `bytes` from `digest`'s bucket of bytes at `now`, all or nothing.
    pub(crate) fn take_bytes(&self, digest: &str, bytes: u64, now: Instant) -> Admission {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Admission::Limited { retry_after: 1 };
        };
        let Some(b) = buckets.get_mut(digest) else {
            return Admission::Limited { retry_after: 60 };
        };
        b.bytes.refill(now);
        let want = (bytes as f64).min(b.bytes.capacity);
        if b.bytes.tokens >= want {
            b.bytes.tokens -= want;
            Admission::Admitted
        } else {
            Admission::Limited {
                retry_after: b.bytes.wait(want),
            }
        }
    }

    /// Charges `scored` tokens to `digest` once a detection has counted them
    /// (the bucket may go below zero: the next requests wait for it to refill).
    pub(crate) fn charge_scored(&self, digest: &str, scored: u64, now: Instant) {
        if let Ok(mut buckets) = self.buckets.lock() {
            if let Some(b) = buckets.get_mut(digest) {
                b.scored.refill(now);
                b.scored.tokens -= scored as f64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const BUDGETS: Budgets = Budgets {
        rate: 10,
        burst: 2,
        bytes_per_minute: 1 << 20,
        scored_per_minute: 1000,
    };

    #[test]
    fn tokens_are_known_by_digest_only() {
        let line = format!("{} alice 60\n# comment\n\n", digest("s3cret"));
        let t = TokenTable::parse(&line, BUDGETS).expect("table");
        assert_eq!(t.lookup("s3cret").map(|e| e.name.as_str()), Some("alice"));
        assert!(t.lookup("other").is_none());
        assert!(TokenTable::parse("s3cret alice", BUDGETS).is_err());
        assert!(TokenTable::parse("", BUDGETS).is_err());
        let twice = format!("{0} a\n{0} b\n", digest("x"));
        assert!(TokenTable::parse(&twice, BUDGETS).is_err());
    }

    #[test]
    fn the_bucket_refills_at_the_rate() {
        let t = TokenTable::parse(&format!("{} a 60", digest("t")), BUDGETS).expect("table");
        let limiter = RateLimiter::new(&t, 1000);
        let d = digest("t");
        let t0 = Instant::now();
        assert_eq!(limiter.admit(&d, t0), Ok(()));
        assert_eq!(limiter.admit(&d, t0), Ok(()));
        assert_eq!(limiter.admit(&d, t0), Err((Budget::Requests, 1)));
        assert_eq!(limiter.admit(&d, t0 + Duration::from_millis(1100)), Ok(()));
        assert_eq!(
            limiter.admit(&d, t0 + Duration::from_millis(1200)),
            Err((Budget::Requests, 1))
        );
    }

    #[test]
    fn bytes_and_tokens_scored_have_budgets_of_their_own() {
        let line = format!("{} a 6000 1000 bytes=60000 scored=600", digest("t"));
        let t = TokenTable::parse(&line, BUDGETS).expect("table");
        let e = t.lookup("t").expect("entry");
        assert_eq!((e.bytes_per_minute, e.scored_per_minute), (60_000, 600));
        assert!(TokenTable::parse(&format!("{} a cpu=3", digest("t")), BUDGETS).is_err());
        assert!(TokenTable::parse(&format!("{} a bytes=0", digest("t")), BUDGETS).is_err());
        // 60,000 bytes a minute: a bucket of 15,000 (a quarter minute), or the largest body.
        let limiter = RateLimiter::new(&t, 1000);
        let d = digest("t");
        let t0 = Instant::now();
        assert_eq!(limiter.take_bytes(&d, 10_000, t0), Admission::Admitted);
        assert_eq!(
            limiter.take_bytes(&d, 10_000, t0),
            Admission::Limited { retry_after: 5 }
        );
        assert_eq!(limiter.take_bytes(&d, 5_000, t0), Admission::Admitted);
        assert_eq!(
            limiter.take_bytes(&d, 1_000, t0 + Duration::from_secs(1)),
            Admission::Admitted
        );
        // 600 scored a minute (bucket 150): a detection that scored 400 leaves a debt of 250,
        // paid at 10 a second before the next request is admitted.
        assert_eq!(limiter.admit(&d, t0), Ok(()));
        limiter.charge_scored(&d, 400, t0);
        assert_eq!(limiter.admit(&d, t0), Err((Budget::Scored, 26)));
        assert_eq!(limiter.admit(&d, t0 + Duration::from_secs(26)), Ok(()));
    }
}
