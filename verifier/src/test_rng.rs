//! The unit tests' seeded random numbers (random texts and corpora).

/// `next(n)`: a number below `n` from a xorshift64 stream seeded with
/// `state` (not zero): the same sequence on every platform.
pub(crate) fn xorshift(mut state: u64) -> impl FnMut(usize) -> usize {
    move |n| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    }
}
