//! The keyed values of watermarks others deploy, recomputed exactly as their
//! owners' generators compute them, and the owners' own p-values: what
//! `tracemark.interop` (the Python package) reads transformers' KGW,
//! SynthID-Text and vLLM's Gumbel watermarks with. The exact tests of those
//! values are the tails of [`crate::stats`]; docs/interop.md says what each
//! reader reads and which owner versions were checked.
//!
//! Nothing here is tracemark's own scheme: these are other people's
//! constructions (a 64-bit LCG, Philox with a 24-bit uniform), reproduced for
//! reading, not recommended for writing.
//!
//! ```
//! use tracemark_verifier::interop::{synthid, vllm};
//!
//! // vLLM's float32 uniform of the first token under key 0xC0FFEE123456789A, context width 4.
//! let words = vllm::words(0xC0FF_EE12_3456_789A, 4, &[945, 626]);
//! assert_eq!(words[0], 3_994_402_340);
//! assert_eq!(f64::from(vllm::uniform(words[0])), 0.930_019_259_452_819_8);
//! // SynthID's n-gram hash.
//! assert_eq!(synthid::accumulate_hash(1, &[0, 0, 0, 7]), 3_549_081_039_975_714_392);
//! ```

/// transformers' KGW (`WatermarkDetector`): the owner's z-score and p-value.
///
/// The green lists themselves come from torch's `randperm` under the owner's
/// seed: torch's generator is the owner's PRF, so they are computed with
/// torch, not here.
pub mod hf_kgw {
    /// transformers' `WatermarkDetector` score of `green` green tokens out of
    /// `total`: `z = (green - gamma total) / sqrt(total gamma (1 - gamma))`
    /// against the nominal `gamma`, and its p-value `erfc(z / sqrt 2) / 2`
    /// (the normal approximation, as the owner computes it). `None` when
    /// `total` is 0 (the owner raises).
    pub fn owner_z_p(green: u64, total: u64, gamma: f64) -> Option<(f64, f64)> {
        if total == 0 {
            return None;
        }
        let n = total as f64;
        let z = (green as f64 - gamma * n) / (n * gamma * (1.0 - gamma)).sqrt();
        Some((z, crate::stats::p_from_ln(crate::stats::ln_normal_upper(z))))
    }
}

/// SynthID-Text (transformers' `SynthIDTextWatermarkLogitsProcessor`,
/// synthid-text): the owner's n-gram hash and sampling-table indices.
pub mod synthid {
    const LCG_MULTIPLIER: u64 = 6_364_136_223_846_793_005;

    /// The owner's `accumulate_hash` of `data` onto `current`: per value
    /// `current = (current + x) * 6364136223846793005 + 1` in wrapping 64-bit
    /// arithmetic (the owner's int64 tensors, two's complement).
    pub fn accumulate_hash(current: u64, data: &[i64]) -> u64 {
        data.iter().fold(current, |h, &x| {
            h.wrapping_add(x as u64).wrapping_mul(LCG_MULTIPLIER).wrapping_add(1)
        })
    }

    /// The owner's sampling-table index of one layer: the n-gram hash
    /// accumulated with the layer's key, as a signed int64, modulo
    /// `table_size` (floored, as torch's `%`: never negative).
    pub fn table_index(ngram_hash: u64, key: i64, table_size: u64) -> u64 {
        let h = accumulate_hash(ngram_hash, &[key]) as i64;
        // `table_size` fits i64: the owner's table is a torch tensor.
        h.rem_euclid(table_size as i64) as u64
    }

    /// The table index of every layer (`keys`) for the n-gram ending at each
    /// completion token, row-major (`ids.len()` rows of `keys.len()`): the
    /// n-gram is the `ngram_len - 1` previous completion tokens, zero-padded
    /// at the start (the owner's processor never reads the prompt), and the
    /// token.
    pub fn table_indices(keys: &[i64], ngram_len: usize, table_size: u64, ids: &[i64]) -> Vec<u64> {
        let mut padded = vec![0i64; ngram_len.saturating_sub(1)];
        padded.extend_from_slice(ids);
        let mut out = Vec::with_capacity(ids.len() * keys.len());
        for ngram in padded.windows(ngram_len.max(1)) {
            let h = accumulate_hash(1, ngram);
            out.extend(keys.iter().map(|&k| table_index(h, k, table_size)));
        }
        out
    }

    /// The owner's context hash `accumulate_hash(1, context)` of every
    /// n-gram inside `ids` (its `ngram_len - 1` first tokens), what the
    /// owner's repeated-context mask compares.
    pub fn context_hashes(ngram_len: usize, ids: &[i64]) -> Vec<u64> {
        if ngram_len == 0 || ids.len() < ngram_len {
            return Vec::new();
        }
        (0..=ids.len() - ngram_len)
            .map(|j| accumulate_hash(1, &ids[j..j + ngram_len - 1]))
            .collect()
    }
}

/// vLLM's native Gumbel watermarks (`algorithm="gumbel"` and
/// `"dual_key_gumbel"`, PRF `philox4x32-10-v1`): the owner's Philox words,
/// 24-bit values, float32 uniforms, derived keys and p-values.
pub mod vllm {
    use crate::stats;
    use sha2::{Digest, Sha256};

    const PHILOX_M0: u64 = 0xD251_1F53;
    const PHILOX_M1: u64 = 0xCD9E_8D57;
    const PHILOX_W0: u32 = 0x9E37_79B9;
    const PHILOX_W1: u32 = 0xBB67_AE85;
    const CONTEXT_DOMAIN: u32 = 0x574D_4358;
    const TOKEN_DOMAIN: u32 = 0x574D_544B;
    /// Bits of the owner's uniform.
    pub const UNIFORM_BITS: u32 = 24;

    /// Philox4x32-10 (Salmon et al. 2011) of one counter block under a key.
    pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
        let [mut c0, mut c1, mut c2, mut c3] = counter;
        let [mut k0, mut k1] = key;
        for round in 0..10 {
            let p0 = PHILOX_M0 * u64::from(c0);
            let p1 = PHILOX_M1 * u64::from(c2);
            let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
            let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
            (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0);
            if round != 9 {
                k0 = k0.wrapping_add(PHILOX_W0);
                k1 = k1.wrapping_add(PHILOX_W1);
            }
        }
        [c0, c1, c2, c3]
    }

    /// vLLM's `PhiloxPRF` word of `token` under `context` (the previous
    /// generated ids, `-1` before the first): the context is absorbed four
    /// ids a block, then the token's block gives four words, of which lane
    /// `token mod 4` is the token's.
    pub fn word(key: u64, context: &[i64], token: i64) -> u32 {
        let (key0, key1) = (key as u32, (key >> 32) as u32);
        let width = context.len();
        let mut state = [CONTEXT_DOMAIN, width as u32, 0, 0];
        for offset in (0..width).step_by(4) {
            let mut counter = [0u32; 4];
            for (i, c) in counter.iter_mut().enumerate() {
                // The owner masks each id to 32 bits; a missing id pads with 0xFFFFFFFF - lane.
                let block = context.get(offset + i).map_or(u32::MAX - i as u32, |&id| id as u32);
                *c = state[i] ^ block;
            }
            state = philox4x32_10(counter, [key0 ^ offset as u32, key1]);
        }
        let w = token as u32;
        let out = philox4x32_10(
            [w >> 2, state[0], state[1], state[2]],
            [key0 ^ state[3], key1 ^ TOKEN_DOMAIN],
        );
        out[(w & 3) as usize]
    }

    /// The word of every token of a completion, with the owner's contexts:
    /// the `context_width` previous completion ids, `-1` before the first.
    pub fn words(key: u64, context_width: usize, ids: &[i64]) -> Vec<u32> {
        let mut padded = vec![-1i64; context_width];
        padded.extend_from_slice(ids);
        ids.iter()
            .enumerate()
            .map(|(i, &token)| word(key, &padded[i..i + context_width], token))
            .collect()
    }

    /// The owner's 24-bit value `m`: the top 24 bits of the word.
    pub fn top_bits(word: u32) -> u32 {
        word >> (32 - UNIFORM_BITS)
    }

    /// The owner's float32 uniform `(m + 1) / (2^24 + 1)` of a word.
    pub fn uniform(word: u32) -> f32 {
        ((f64::from(top_bits(word)) + 1.0) / f64::from((1u32 << UNIFORM_BITS) + 1)) as f32
    }

    /// The owner's score `-ln(1 - u)` of a word (its float32 uniform, widened).
    pub fn owner_score(word: u32) -> f64 {
        -(-f64::from(uniform(word))).ln_1p()
    }

    /// The discrete-exact score `-ln(1 - m / 2^24) = -ln P(M >= m)` of a word:
    /// under the null it is stochastically below Exponential(1), so the
    /// Gamma(n, 1) tail of a sum of them is a valid p-value.
    pub fn exact_score(word: u32) -> f64 {
        -(-f64::from(top_bits(word)) / f64::from(1u32 << UNIFORM_BITS)).ln_1p()
    }

    /// vLLM's `derive_watermark_key`: the first 8 bytes (big-endian) of
    /// SHA-256(`domain` ‖ `key` as 8 bytes, big-endian).
    pub fn derive_key(key: u64, domain: &[u8]) -> u64 {
        let digest = Sha256::new()
            .chain_update(domain)
            .chain_update(key.to_be_bytes())
            .finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    }

    /// vLLM's `GumbelWatermarkDetector` p-value: the Gamma(`n`, 1) survival of
    /// `score` in linear space (0 below about 1e-308, as the owner's), 1 when
    /// `n` is 0 or `score` is not positive.
    pub fn owner_p_value(score: f64, n: u64) -> f64 {
        if n == 0 || score <= 0.0 {
            return 1.0;
        }
        stats::p_from_ln(stats::ln_gamma_upper(n, score)).min(1.0)
    }

    /// vLLM's `DualKeyGumbelWatermarkDetector` p-value of the weighted score
    /// over `n` tokens with the owner's `alpha`: a Gamma with the sum's mean
    /// `n` and variance `n v`, `v = (1 - alpha)^2 + alpha^2` (an
    /// approximation: moments matched, not the distribution), i.e.
    /// `Q(n / v, score / v)`; with an integer shape the owner's integer-shape
    /// survival of `round(n / v)`.
    pub fn dual_key_owner_p_value(score: f64, n: u64, alpha: f64) -> f64 {
        if n == 0 {
            return 1.0;
        }
        let variance = (1.0 - alpha) * (1.0 - alpha) + alpha * alpha;
        if alpha == 0.0 || alpha == 0.5 || alpha == 1.0 {
            // n / v is n or 2n: a whole number.
            return owner_p_value(score / variance, (n as f64 / variance).round() as u64);
        }
        if score <= 0.0 {
            return 1.0;
        }
        stats::p_from_ln(stats::ln_gamma_upper_real(n as f64 / variance, score / variance)).min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values computed with the former Python readers (tracemark.interop before
    // these functions moved here), which the owners' code was checked against.
    const VLLM_KEY: u64 = 0xC0FF_EE12_3456_789A;
    const IDS: [i64; 10] = [945, 626, 685, 897, 579, 776, 834, 227, 58, 302];

    #[test]
    fn vllm_words_and_uniforms_match_the_former_reader() {
        let w = vllm::words(VLLM_KEY, 4, &IDS[..8]);
        assert_eq!(
            w,
            [3994402340, 516057223, 109481682, 1794615102, 245530329, 1671415021, 2188903534, 3944148359]
        );
        let u: Vec<f64> = w.iter().map(|&w| f64::from(vllm::uniform(w))).collect();
        assert_eq!(u[0], 0.9300192594528198);
        assert_eq!(u[1], 0.12015395611524582);
        assert_eq!(u[7], 0.9183185696601868);
        // Contexts wider than one block, and a one-id context.
        assert_eq!(vllm::word(VLLM_KEY, &[1, 2, 3, 4, 5, 6], 999), 452_696_202);
        assert_eq!(vllm::word(7, &[3], 2), 437_548_123);
        assert_eq!(vllm::word(VLLM_KEY, &[-1, -1, -1, -1], 5), 663_917_435);
    }

    #[test]
    fn vllm_scores_are_the_owners_and_the_exact_survival() {
        for w in [0u32, 255, 256, 0x8000_0000, u32::MAX, 3_994_402_340] {
            let m = f64::from(vllm::top_bits(w));
            assert_eq!(vllm::exact_score(w), -(1.0 - m / 16_777_216.0).ln());
            let owner = vllm::owner_score(w);
            assert!(vllm::exact_score(w) <= owner + 1e-12, "{w}");
            assert!(owner - vllm::exact_score(w) <= (1.0 + 2f64.powi(-24)).ln() + 1e-12 || m >= 8_388_608.0);
        }
    }

    #[test]
    fn vllm_derived_keys_match_the_former_reader() {
        assert_eq!(
            vllm::derive_key(0x0123_4567_89AB_CDEF, b"key_a"),
            7_612_991_067_998_378_398
        );
        assert_eq!(
            vllm::derive_key(0x0123_4567_89AB_CDEF, b"key_b"),
            15_372_123_765_673_323_612
        );
    }

    #[test]
    fn vllm_owner_p_values_match_the_former_reader() {
        let rel = |a: f64, b: f64| (a - b).abs() / b.abs();
        for (score, n, want) in [
            (10.0, 8, 0.22022064660169907),
            (120.0, 100, 0.02786373989051911),
            (5.0, 12, 0.9945469080869898),
            (800.0, 500, 1.7420398244392146e-30),
        ] {
            assert!(rel(vllm::owner_p_value(score, n), want) < 1e-12, "{score} {n}");
        }
        assert_eq!(vllm::owner_p_value(0.0, 5), 1.0);
        assert_eq!(vllm::owner_p_value(3.0, 0), 1.0);
        // The moment-matched shape of the dual-key detector: Q(n / v, s / v), torch's gammaincc.
        for (shape, x, want) in [
            (12.3, 10.0, 0.7274223994274567),
            (50.5, 70.0, 0.006220050005554201),
            (3.7, 1.0, 0.9700459402558379),
            (122.0, 100.0, 0.9819265923154592),
            (1000.25, 1100.0, 0.001087277175275945),
        ] {
            let got = crate::stats::ln_gamma_upper_real(shape, x).exp();
            assert!(rel(got, want) < 1e-12, "Q({shape}, {x}) = {got}, not {want}");
        }
        let v = 0.9 * 0.9 + 0.1 * 0.1;
        let q = crate::stats::ln_gamma_upper_real(10.0 / v, 10.0).exp();
        assert_eq!(vllm::dual_key_owner_p_value(10.0 * v, 10, 0.1), q);
        assert_eq!(
            vllm::dual_key_owner_p_value(7.0, 10, 0.5),
            vllm::owner_p_value(14.0, 20)
        );
    }

    #[test]
    fn synthid_hashes_and_indices_match_the_former_reader() {
        assert_eq!(synthid::accumulate_hash(1, &IDS[..4]), 2_222_372_815_467_826_458);
        assert_eq!(synthid::accumulate_hash(1, &[0, 0, 0, 7]), 3_549_081_039_975_714_392);
        let h5 = synthid::accumulate_hash(1, &IDS[..5]);
        assert_eq!(synthid::accumulate_hash(h5, &[654]), 11_539_559_681_046_018_249);
        assert_eq!(synthid::accumulate_hash(1, &[-5, 1 << 40]), 5_499_667_712_031_770_506);
        let keys = [654, 400, 836, 123, 340, 443, 597, 160, 57];
        // The n-grams IDS[0..5], IDS[1..6], IDS[2..7]: rows 4, 5, 6 of the padded completion.
        let idx = synthid::table_indices(&keys, 5, 1 << 16, &IDS[..7]);
        assert_eq!(
            &idx[4 * 9..5 * 9],
            [63689, 51747, 25287, 11890, 64407, 9906, 42948, 36851, 25816]
        );
        assert_eq!(
            &idx[5 * 9..6 * 9],
            [32092, 20150, 59226, 45829, 32810, 43845, 11351, 5254, 59755]
        );
        assert_eq!(
            &idx[6 * 9..7 * 9],
            [26360, 14418, 53494, 40097, 27078, 38113, 5619, 65058, 54023]
        );
        assert_eq!(synthid::context_hashes(5, &IDS[..5]), [2_222_372_815_467_826_458]);
    }

    #[test]
    fn hf_kgw_owner_score_is_the_normal_tail() {
        let (z, p) = hf_kgw::owner_z_p(30, 80, 0.25).expect("tested");
        assert!((z - 2.581988897471611).abs() < 1e-14);
        assert!((p - 0.004911637253759627).abs() < 1e-12 * 0.004911637253759627, "{p}");
        assert!(hf_kgw::owner_z_p(0, 0, 0.25).is_none());
    }
}
