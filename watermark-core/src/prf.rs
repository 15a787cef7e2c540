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
