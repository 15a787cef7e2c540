//! SipHash-2-4, the keyed PRF for context seeds (SPEC §4).
//!
//! Written out here (rather than taken from a hasher crate) so that the
//! message framing of spec v1, a sequence of little-endian 32-bit words, is
//! hashed without an intermediate buffer, and so that the exact function is
//! pinned by our own golden vectors.

use zeroize::Zeroize;

/// A 128-bit SipHash key. Wiped on drop; never printed.
#[derive(Clone)]
pub(crate) struct SipKey {
    k0: u64,
    k1: u64,
}

impl Drop for SipKey {
    fn drop(&mut self) {
        self.k0.zeroize();
        self.k1.zeroize();
    }
}

struct State {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
}

impl State {
    #[inline(always)]
    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13) ^ self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16) ^ self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21) ^ self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17) ^ self.v2;
        self.v2 = self.v2.rotate_left(32);
    }

    #[inline(always)]
    fn compress(&mut self, m: u64) {
        self.v3 ^= m;
        self.round();
        self.round();
        self.v0 ^= m;
    }

    #[inline(always)]
    fn finish(mut self) -> u64 {
        self.v2 ^= 0xff;
        self.round();
        self.round();
        self.round();
        self.round();
        self.v0 ^ self.v1 ^ self.v2 ^ self.v3
    }
}

/// One SipRound of `N` states (`v[i][lane]`), each step over every lane.
#[inline(always)]
fn round_n<const N: usize>(v: &mut [[u64; N]; 4]) {
    let [v0, v1, v2, v3] = v;
    for l in 0..N {
        v0[l] = v0[l].wrapping_add(v1[l]);
        v2[l] = v2[l].wrapping_add(v3[l]);
    }
    for l in 0..N {
        v1[l] = v1[l].rotate_left(13) ^ v0[l];
        v3[l] = v3[l].rotate_left(16) ^ v2[l];
        v0[l] = v0[l].rotate_left(32);
    }
    for l in 0..N {
        v2[l] = v2[l].wrapping_add(v1[l]);
        v0[l] = v0[l].wrapping_add(v3[l]);
    }
    for l in 0..N {
        v1[l] = v1[l].rotate_left(17) ^ v2[l];
        v3[l] = v3[l].rotate_left(21) ^ v0[l];
        v2[l] = v2[l].rotate_left(32);
    }
}

#[inline(always)]
fn compress_n<const N: usize>(v: &mut [[u64; N]; 4], m: [u64; N]) {
    for l in 0..N {
        v[3][l] ^= m[l];
    }
    round_n(v);
    round_n(v);
    for l in 0..N {
        v[0][l] ^= m[l];
    }
}

impl SipKey {
    pub(crate) fn new(k0: u64, k1: u64) -> Self {
        Self { k0, k1 }
    }

    #[inline(always)]
    fn state(&self) -> State {
        State {
            v0: self.k0 ^ 0x736f_6d65_7073_6575,
            v1: self.k1 ^ 0x646f_7261_6e64_6f6d,
            v2: self.k0 ^ 0x6c79_6765_6e65_7261,
            v3: self.k1 ^ 0x7465_6462_7974_6573,
        }
    }

    /// SipHash-2-4 of the bytes `LE32(head) || LE32(words[0]) || LE32(words[1]) || ...`.
    #[inline]
    pub(crate) fn hash_words(&self, head: u32, words: &[u32]) -> u64 {
        let mut s = self.state();
        let len_bytes = 4 * (words.len() as u64 + 1);
        // Pair words into 64-bit little-endian blocks: the head word first.
        let mut pending = Some(head);
        for &w in words {
            match pending.take() {
                Some(lo) => s.compress(u64::from(lo) | u64::from(w) << 32),
                None => pending = Some(w),
            }
        }
        let tail = pending.map_or(0, u64::from);
        s.compress(tail | (len_bytes & 0xff) << 56);
        s.finish()
    }

    /// [`SipKey::hash_words`] of `N` messages of the same length at once,
    /// lane by lane: written so that the compiler turns each lane loop into
    /// vector instructions where the caller enables them (`simd::hash_words_x8`
    /// compiles it for AVX2 and AVX-512). Equal to `N` calls of `hash_words`
    /// (tested).
    #[inline(always)]
    pub(crate) fn hash_words_n<const N: usize>(&self, head: u32, words: [&[u32]; N]) -> [u64; N] {
        let n = words[0].len();
        debug_assert!(words.iter().all(|w| w.len() == n), "messages of one length");
        let s = self.state();
        let mut v = [[s.v0; N], [s.v1; N], [s.v2; N], [s.v3; N]];
        let len_bytes = 4 * (n as u64 + 1);
        // The message is `head, words...`; block j holds its words 2j and 2j + 1.
        let word = |lane: usize, k: usize| if k == 0 { head } else { words[lane][k - 1] };
        let mut k = 0;
        while k + 1 < n + 1 {
            let m: [u64; N] = core::array::from_fn(|l| u64::from(word(l, k)) | u64::from(word(l, k + 1)) << 32);
            compress_n(&mut v, m);
            k += 2;
        }
        let m: [u64; N] = core::array::from_fn(|l| {
            let tail = if k < n + 1 { u64::from(word(l, k)) } else { 0 };
            tail | (len_bytes & 0xff) << 56
        });
        compress_n(&mut v, m);
        for x in &mut v[2] {
            *x ^= 0xff;
        }
        for _ in 0..4 {
            round_n(&mut v);
        }
        core::array::from_fn(|l| v[0][l] ^ v[1][l] ^ v[2][l] ^ v[3][l])
    }

    /// SipHash-2-4 of arbitrary bytes (reference framing, used to check
    /// [`SipKey::hash_words`] against the published test vectors).
    #[cfg(test)]
    pub(crate) fn hash_bytes(&self, msg: &[u8]) -> u64 {
        let mut s = self.state();
        let mut blocks = msg.chunks_exact(8);
        for b in &mut blocks {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            s.compress(u64::from_le_bytes(a));
        }
        let mut last = [0u8; 8];
        let rest = blocks.remainder();
        last[..rest.len()].copy_from_slice(rest);
        last[7] = msg.len() as u8;
        s.compress(u64::from_le_bytes(last));
        s.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key 00 01 .. 0f of the SipHash paper's test vectors.
    fn paper_key() -> SipKey {
        SipKey::new(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908)
    }

    #[test]
    fn published_vectors() {
        // From the SipHash reference implementation (vectors.h), messages 00 01 .. (n-1).
        let expected: [(usize, u64); 5] = [
            (0, 0x726f_db47_dd0e_0e31),
            (1, 0x74f8_39c5_93dc_67fd),
            (8, 0x93f5_f579_9a93_2462),
            (15, 0xa129_ca61_49be_45e5),
            (63, 0x958a_324c_eb06_4572),
        ];
        let msg: Vec<u8> = (0u8..64).collect();
        for (n, want) in expected {
            assert_eq!(paper_key().hash_bytes(&msg[..n]), want, "length {n}");
        }
    }

    #[test]
    fn many_at_once_match_one_at_a_time() {
        let k = paper_key();
        let words: Vec<u32> = (0..64u32).map(|i| 0x9e37_79b9u32.wrapping_mul(i + 7)).collect();
        for n in 0..12 {
            let msgs: [&[u32]; 8] = core::array::from_fn(|l| &words[7 * l..7 * l + n]);
            let want = msgs.map(|m| k.hash_words(0x0100_0001, m));
            assert_eq!(k.hash_words_n(0x0100_0001, msgs), want, "{n} words");
            assert_eq!(
                k.hash_words_n::<1>(0x0100_0001, [msgs[3]]),
                [want[3]],
                "{n} words, one lane"
            );
        }
    }

    #[test]
    fn word_framing_matches_byte_framing() {
        let k = paper_key();
        for n in 0..12u32 {
            let words: Vec<u32> = (0..n).map(|i| 0x9e37_79b9u32.wrapping_mul(i + 1)).collect();
            let mut bytes = 0xdead_beefu32.to_le_bytes().to_vec();
            for w in &words {
                bytes.extend_from_slice(&w.to_le_bytes());
            }
            assert_eq!(k.hash_words(0xdead_beef, &words), k.hash_bytes(&bytes), "{n} words");
        }
    }
}
