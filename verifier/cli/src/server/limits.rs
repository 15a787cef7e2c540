//! API tokens (stored as SHA-256 digests) and their rate limits.

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
    /// Reads `path`: lines `sha256:<64 hex> <name> [requests per minute [burst]]`;
    /// blank lines and `#` comments are skipped.
    pub(crate) fn load(path: &Path, rate: u32, burst: u32) -> Result<Self, Failure> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| Failure::Read {
            source: source.clone(),
            error,
        })?;
        Self::parse(&text, rate, burst).map_err(|message| Failure::Malformed { source, message })
    }

    fn parse(text: &str, rate: u32, burst: u32) -> Result<Self, String> {
        let mut by_digest = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
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

/// A token bucket per API token.
struct Bucket {
    tokens: f64,
    at: Instant,
    per_second: f64,
    capacity: f64,
}

/// The rate limiter of every API token.
pub(crate) struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// Full buckets for every token of `table`.
    pub(crate) fn new(table: &TokenTable) -> Self {
        let now = Instant::now();
        let buckets = table
            .by_digest
            .values()
            .map(|e| {
                let capacity = f64::from(e.burst);
                (
                    e.digest.clone(),
                    Bucket {
                        tokens: capacity,
                        at: now,
                        per_second: f64::from(e.per_minute) / 60.0,
                        capacity,
                    },
                )
            })
            .collect();
        RateLimiter {
            buckets: Mutex::new(buckets),
        }
    }

    /// Takes one request from `digest`'s bucket at `now`.
    pub(crate) fn admit(&self, digest: &str, now: Instant) -> Admission {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Admission::Limited { retry_after: 1 };
        };
        let Some(b) = buckets.get_mut(digest) else {
            return Admission::Limited { retry_after: 60 };
        };
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * b.per_second).min(b.capacity);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Admission::Admitted
        } else {
            Admission::Limited {
                retry_after: ((1.0 - b.tokens) / b.per_second).ceil().max(1.0) as u64,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn tokens_are_known_by_digest_only() {
        let line = format!("{} alice 60\n# comment\n\n", digest("s3cret"));
        let t = TokenTable::parse(&line, 10, 2).expect("table");
        assert_eq!(t.lookup("s3cret").map(|e| e.name.as_str()), Some("alice"));
        assert!(t.lookup("other").is_none());
        assert!(TokenTable::parse("s3cret alice", 10, 2).is_err());
        assert!(TokenTable::parse("", 10, 2).is_err());
        let twice = format!("{0} a\n{0} b\n", digest("x"));
        assert!(TokenTable::parse(&twice, 10, 2).is_err());
    }

    #[test]
    fn the_bucket_refills_at_the_rate() {
        let t = TokenTable::parse(&format!("{} a 60", digest("t")), 10, 2).expect("table");
        let limiter = RateLimiter::new(&t);
        let d = digest("t");
        let t0 = Instant::now();
        assert_eq!(limiter.admit(&d, t0), Admission::Admitted);
        assert_eq!(limiter.admit(&d, t0), Admission::Admitted);
        assert_eq!(limiter.admit(&d, t0), Admission::Limited { retry_after: 1 });
        assert_eq!(limiter.admit(&d, t0 + Duration::from_millis(1100)), Admission::Admitted);
        assert_eq!(
            limiter.admit(&d, t0 + Duration::from_millis(1200)),
            Admission::Limited { retry_after: 1 }
        );
    }
}
