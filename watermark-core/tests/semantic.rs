//! The golden vectors of the semantic partition (SPEC §15.3),
//! `testdata/semantic/v1.json` and, for chained regions (`chain=previous`),
//! `testdata/semantic/v1-chain.json`, written by the independent reference
//! `testdata/semantic/gen_semantic.py`, and the reference mean
//! `testdata/semantic/reference-mean-v1.json`. Projections and margins are
//! compared bit for bit: the spec fixes the order of every `f64` operation.

use std::path::PathBuf;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tracemark_core::{
    word_count, Chain, Key, Region, Semantic, SemanticConfig, CHAIN_START, REFERENCE_MEAN, REFERENCE_MEAN_SHA256,
};

fn read(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/semantic")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("valid JSON")
}

fn key(hex: &str) -> Key {
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    Key::from_slice(&bytes).expect("32 bytes")
}

#[test]
fn reference_mean_matches_its_file_and_hash() {
    let file = read("reference-mean-v1.json");
    let values: Vec<f32> = file["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect();
    assert_eq!(values.len(), 384);
    for (i, (a, b)) in values.iter().zip(REFERENCE_MEAN.iter()).enumerate() {
        assert_eq!(a.to_bits(), b.to_bits(), "coordinate {i}");
    }
    let bytes: Vec<u8> = REFERENCE_MEAN.iter().flat_map(|v| v.to_le_bytes()).collect();
    let sha: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(sha, REFERENCE_MEAN_SHA256);
    assert_eq!(file["sha256"], REFERENCE_MEAN_SHA256);
    assert_eq!(read("v1.json")["reference_mean_sha256"], REFERENCE_MEAN_SHA256);
}

fn embeddings(file: &Value) -> Vec<Vec<f32>> {
    file["embeddings"]
        .as_array()
        .expect("embeddings")
        .iter()
        .map(|e| {
            e.as_array()
                .expect("embedding")
                .iter()
                .map(|v| v.as_f64().expect("number") as f32)
                .collect()
        })
        .collect()
}

#[test]
fn golden_vectors() {
    let file = read("v1.json");
    assert_eq!(file["spec"], tracemark_core::SPEC_VERSION);
    let embeddings = embeddings(&file);
    let cases = file["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 9);
    let mut checked = 0;
    for case in cases {
        let config: SemanticConfig = case["config"].as_str().expect("config").parse().expect("valid config");
        assert_eq!(config.to_string(), case["canonical"].as_str().expect("canonical"));
        assert_eq!(
            u64::from(config.green_threshold()),
            case["green_threshold"].as_u64().expect("G")
        );
        assert_eq!(
            config.effective_gamma(),
            case["effective_gamma"].as_f64().expect("gamma")
        );
        let s = Semantic::new(&key(case["key"].as_str().expect("key")), config.clone()).expect("scheme");
        for (j, n) in case["normals"].as_array().expect("normals").iter().enumerate() {
            let normal = s.normal(j);
            let head: Vec<i64> = normal[..8].iter().map(|&c| i64::from(c)).collect();
            let want: Vec<i64> = n["head"]
                .as_array()
                .expect("head")
                .iter()
                .map(|v| v.as_i64().expect("int"))
                .collect();
            assert_eq!(head, want, "plane {j}");
            assert_eq!(
                normal.iter().map(|&c| i64::from(c)).sum::<i64>(),
                n["sum"].as_i64().expect("sum")
            );
            let sq: i64 = normal.iter().map(|&c| i64::from(c) * i64::from(c)).sum();
            assert_eq!(sq, n["sum_squares"].as_i64().expect("sum_squares"));
        }
        for (r, v) in case["region_values"].as_array().expect("values").iter().enumerate() {
            let value = s.value(Region::new(r as u32)).expect("region in range");
            assert_eq!(u64::from(value), v.as_u64().expect("value"), "region {r}");
        }
        let green = (0..config.regions()).filter(|&r| s.is_green(Region::new(r))).count();
        assert_eq!(green as u64, case["green_regions"].as_u64().expect("green_regions"));
        for p in case["projections"].as_array().expect("projections") {
            let e = &embeddings[p["embedding"].as_u64().expect("index") as usize];
            let got = s.project(e).expect("valid embedding");
            let want: Vec<f64> = p["projections"]
                .as_array()
                .expect("projections")
                .iter()
                .map(|v| v.as_f64().expect("number"))
                .collect();
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(got.projections()), bits(&want));
            assert_eq!(u64::from(got.region().id()), p["region"].as_u64().expect("region"));
            assert_eq!(got.margin().to_bits(), p["margin"].as_f64().expect("margin").to_bits());
            assert_eq!(s.is_green(got.region()), p["green"].as_bool().expect("green"));
            assert_eq!(s.accepts(e).expect("valid"), p["accepted"].as_bool().expect("accepted"));
            checked += 1;
        }
        for w in case["words"].as_array().expect("words") {
            let text = w["text"].as_str().expect("text");
            assert_eq!(word_count(text) as u64, w["count"].as_u64().expect("count"), "{text:?}");
            assert_eq!(config.is_scored(text), w["scored"].as_bool().expect("scored"));
        }
    }
    assert_eq!(checked, 81);
}

fn region_of(v: &Value) -> Option<Region> {
    v.as_u64().map(|r| Region::new(u32::try_from(r).expect("a region id")))
}

/// Chained regions: the value of every listed (previous, region) pair, and
/// a text's scored sentences in order (previous region, value, green,
/// acceptance, dedup by the pair), as the reference computes them.
#[test]
fn golden_vectors_chained() {
    let file = read("v1-chain.json");
    assert_eq!(file["spec"], tracemark_core::SPEC_VERSION);
    assert_eq!(file["chain_start"].as_u64(), Some(u64::from(CHAIN_START)));
    let embeddings = embeddings(&read("v1.json"));
    let cases = file["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 9);
    let (mut pairs, mut sentences) = (0, 0);
    for case in cases {
        let config: SemanticConfig = case["config"].as_str().expect("config").parse().expect("valid config");
        assert_eq!(config.chain(), Chain::Previous);
        assert_eq!(config.to_string(), case["canonical"].as_str().expect("canonical"));
        assert_eq!(
            u64::from(config.green_threshold()),
            case["green_threshold"].as_u64().expect("G")
        );
        let s = Semantic::new(&key(case["key"].as_str().expect("key")), config.clone()).expect("scheme");
        for p in case["pairs"].as_array().expect("pairs") {
            let (prev, r) = (region_of(&p["previous"]), region_of(&p["region"]).expect("region"));
            let value = s.value_after(prev, r).expect("in range");
            assert_eq!(u64::from(value), p["value"].as_u64().expect("value"), "{prev:?} {r:?}");
            assert_eq!(s.is_green_after(prev, r), p["green"].as_bool().expect("green"));
            pairs += 1;
        }
        if let Some(want) = case["green_pairs"].as_u64() {
            let n = config.regions();
            let green = std::iter::once(None)
                .chain((0..n).map(|p| Some(Region::new(p))))
                .flat_map(|p| (0..n).map(move |r| (p, Region::new(r))))
                .filter(|&(p, r)| s.is_green_after(p, r))
                .count();
            assert_eq!(green as u64, want);
        }
        let mut previous = None;
        let mut seen = std::collections::HashSet::new();
        let mut green = 0;
        for t in case["sentences"].as_array().expect("sentences") {
            let e = &embeddings[t["embedding"].as_u64().expect("index") as usize];
            let region = s.region(e).expect("valid embedding");
            assert_eq!(previous, region_of(&t["previous"]));
            assert_eq!(Some(region), region_of(&t["region"]));
            let value = s.value_after(previous, region).expect("in range");
            assert_eq!(u64::from(value), t["value"].as_u64().expect("value"));
            let g = s.is_green_after(previous, region);
            assert_eq!(g, t["green"].as_bool().expect("green"));
            assert_eq!(
                s.accepts_after(previous, e).expect("valid"),
                t["accepted"].as_bool().expect("accepted")
            );
            let repeated = !seen.insert((previous, region));
            assert_eq!(repeated, t["repeated"].as_bool().expect("repeated"));
            green += usize::from(g && !repeated);
            previous = Some(region);
            sentences += 1;
        }
        assert_eq!(seen.len() as u64, case["distinct"].as_u64().expect("distinct"));
        assert_eq!(green as u64, case["green"].as_u64().expect("green"));
        // The chain=none form of the same configuration is version 1's
        // scheme: the previous region changes nothing.
        let plain =
            Semantic::new(&key(case["key"].as_str().expect("key")), config.with_chain(Chain::None)).expect("scheme");
        let r = Region::new(1);
        assert_eq!(plain.value_after(Some(Region::new(0)), r), plain.value(r));
    }
    assert_eq!((pairs, sentences), (9 * 5 * 16 - 3 * 5 * 8, 9 * 14));
}
