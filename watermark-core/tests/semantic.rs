//! The golden vectors of the semantic partition (SPEC §15.3),
//! `testdata/semantic/v1.json`, written by the independent reference
//! `testdata/semantic/gen_semantic.py`, and the reference mean
//! `testdata/semantic/reference-mean-v1.json`. Projections and margins are
//! compared bit for bit: the spec fixes the order of every `f64` operation.

use std::path::PathBuf;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tracemark_core::{word_count, Key, Region, Semantic, SemanticConfig, REFERENCE_MEAN, REFERENCE_MEAN_SHA256};

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

#[test]
fn golden_vectors() {
    let file = read("v1.json");
    assert_eq!(file["spec"], tracemark_core::SPEC_VERSION);
    let embeddings: Vec<Vec<f32>> = file["embeddings"]
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
        .collect();
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
