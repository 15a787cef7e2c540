//! The public per-token mix (SPEC §6) and the deterministic logarithm used by
//! the Gumbel scheme (SPEC §9).

/// The fixed multiplier of the mix's second round.
pub(crate) const MIX_MUL: u32 = 0x735a_2d97;

/// `mix(seed, w)`: a 32-bit bijection of `w` selected by the 64-bit `seed`.
///
/// `a = lo32(seed)`, `b = hi32(seed) | 1`; then
/// `x = w ^ a; x ^= x >> 16; x *= b; x ^= x >> 15; x *= 0x735a2d97; x ^= x >> 15`
/// (all arithmetic mod 2^32). For a uniformly random seed, `mix(seed, w)` is
/// uniform on `u32` for every `w`; for a fixed seed it is a bijection, so two
/// tokens never share a value.
#[inline(always)]
pub fn mix(seed: u64, w: u32) -> u32 {
    let a = seed as u32;
    let b = (seed >> 32) as u32 | 1;
    let mut x = w ^ a;
    x ^= x >> 16;
    x = x.wrapping_mul(b);
    x ^= x >> 15;
    x = x.wrapping_mul(MIX_MUL);
    x ^= x >> 15;
    x
}

/// The 16-bit value of `token` under `seed` (SPEC §7): the low half of
/// `mix(seed, token >> 1)` for even tokens, the high half for odd ones.
#[inline(always)]
pub fn value16(seed: u64, token: u32) -> u16 {
    let x = mix(seed, token >> 1);
    (x >> (16 * (token & 1))) as u16
}

/// Natural logarithm from IEEE-754 basic operations only, so that every
/// platform computes bit-identical results (the platform `ln` may differ in
/// the last bit). Accurate to about one ulp for positive finite inputs.
pub(crate) fn ln(x: f64) -> f64 {
    // ln 2 split into a head with trailing zero bits and the rest (as in fdlibm).
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return f64::INFINITY;
    }
    // Split x = m * 2^k with m in [sqrt(1/2), sqrt(2)).
    let mut bits = x.to_bits();
    let mut k: i64 = 0;
    if bits >> 52 == 0 {
        // Subnormal: scale into the normal range first.
        bits = (x * f64::from_bits(0x4350_0000_0000_0000)).to_bits(); // * 2^54
        k -= 54;
    }
    k += ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > core::f64::consts::SQRT_2 {
        m *= 0.5;
        k += 1;
    }
    // ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716.
    let f = m - 1.0;
    let s = f / (m + 1.0);
    let z = s * s;
    // 2 * (s + s^3/3 + ... + s^21/21); the next term is below 2^-60 relative.
    let mut p = 1.0 / 21.0;
    for d in [19.0, 17.0, 15.0, 13.0, 11.0, 9.0, 7.0, 5.0, 3.0] {
        p = p * z + 1.0 / d;
    }
    let r = s * z * p; // s^3/3 + ... ; ln m = f - 2 s f/2 ... written as below
    let kf = k as f64;
    // ln m = 2s + 2r; 2s = f - s*f computes the leading term with one rounding.
    let two_s = f - s * f;
    kf * LN2_HI + (two_s + 2.0 * r + kf * LN2_LO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_is_a_bijection_on_a_slice() {
        // Distinct inputs give distinct outputs for a fixed seed.
        let mut seen = std::collections::HashSet::new();
        for w in 0..100_000u32 {
            assert!(seen.insert(mix(0x0123_4567_89ab_cdef, w)));
        }
    }

    #[test]
    fn value16_takes_both_halves() {
        let seed = 42;
        let x = mix(seed, 10);
        assert_eq!(value16(seed, 20), x as u16);
        assert_eq!(value16(seed, 21), (x >> 16) as u16);
    }

    #[test]
    fn deterministic_ln_matches_std_closely() {
        let mut x = 1e-310_f64;
        while x < 1e300 {
            let (a, b) = (ln(x), x.ln());
            assert!(
                (a - b).abs() <= 2.0 * f64::EPSILON * b.abs().max(1.0),
                "{x}: {a} vs {b}"
            );
            x *= 1.37;
        }
        for x in [0.5, 1.0, 2.0, 1.0 + 1e-12, 1.0 - 1e-12, core::f64::consts::E] {
            assert!((ln(x) - x.ln()).abs() <= 2.0 * f64::EPSILON * x.ln().abs().max(1e-300));
        }
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln(0.0), f64::NEG_INFINITY);
        assert!(ln(-1.0).is_nan());
    }
}
