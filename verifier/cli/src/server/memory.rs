//! Giving freed memory back to the system.
//!
//! glibc's allocator keeps what a large request freed in its arenas (one per
//! thread that allocated, up to 8 a core), so RSS stays at its peak long
//! after the request; `malloc_trim` returns the free pages of every arena.
//! The service calls it once a second for `TRIM_FOR` after a large request
//! began or ended or streaming sessions were dropped, off the async workers
//! (a call takes about a millisecond a hundred MB of free heap).
//! Elsewhere (musl, macOS, Windows) this does nothing.
//!
//! The mapping threshold is also fixed. glibc raises it to the size of each
//! mapped block freed (up to 32 MiB), so after the first large request the
//! next ones' buffers are carved out of the arenas, where what they leave
//! behind is fragments that trimming cannot return: idle RSS then wandered
//! between 50 and 74 MB from one 3 MB text to the next. With the threshold
//! fixed, a block of 256 KiB or more is its own mapping and goes back to the
//! system when freed, and idle RSS stays within about 1 MB
//! (`scripts/serve-abuse.py --only memory-after-timeouts`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long after the last large event the service keeps trimming: its
/// response is written and freed within this, in all but stalled connections.
const TRIM_FOR: Duration = Duration::from_secs(3);

/// When to give memory back: until `TRIM_FOR` after the last call to [`Trim::soon`].
pub(crate) struct Trim {
    started: Instant,
    /// Milliseconds since `started` until which a trim is due.
    until: AtomicU64,
}

impl Trim {
    pub(crate) fn new() -> Self {
        Trim {
            started: Instant::now(),
            until: AtomicU64::new(0),
        }
    }

    /// Something large was freed or is about to be: trim for the next `TRIM_FOR`.
    pub(crate) fn soon(&self) {
        let until = (self.started.elapsed() + TRIM_FOR).as_millis() as u64;
        self.until.fetch_max(until, Ordering::AcqRel);
    }

    /// Whether a trim is due now.
    pub(crate) fn due(&self) -> bool {
        self.started.elapsed().as_millis() as u64 <= self.until.load(Ordering::Acquire)
    }
}

/// Caps glibc's arenas at one a core, at least 2 (its default is 8 a core):
/// every thread that allocates may otherwise get one, each keeping its own
/// fragments of past requests, and RSS after a burst of large requests
/// would depend on which threads served them. Fixes the mapping threshold
/// at [`MMAP_THRESHOLD`] (see the module's front). Called once, before the
/// runtime's threads start.
pub(crate) fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    set_arena_max(std::thread::available_parallelism().map_or(2, usize::from).max(2));
}

/// Blocks at least this large are mapped on their own and unmapped when freed
/// (glibc starts at 128 KiB and then slides; requests' bodies, token buffers and
/// responses are larger, the per-word allocations of scoring far smaller).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 256 << 10;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_arena_max(arenas: usize) {
    let arenas = i32::try_from(arenas).unwrap_or(i32::MAX);
    // SAFETY: mallopt takes two integers and changes glibc's settings under its lock.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Returns the allocator's free pages to the system, where it can.
pub(crate) fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    trim();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    // SAFETY: malloc_trim takes no pointer and only walks glibc's own arenas
    // under their locks; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
