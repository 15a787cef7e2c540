//! The golden vectors of `testdata/vectors/`, written by the independent
//! reference implementation `testdata/gen_vectors.py` from docs/SPEC.md.
//! Every kgw row is checked through every instruction-set path this CPU has.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;
use tracemark_core::internal::Isa;
use tracemark_core::internal::{gumbel_uniform, scheme_prf_words, siphash_words, tournament_g_sum};
use tracemark_core::mix::{mix, value16};
use tracemark_core::{Context, Gumbel, GumbelConfig, Key, Kgw, KgwConfig, Scheme, Tournament, TournamentConfig};

fn load(name: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/vectors")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file: Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(file["spec"], tracemark_core::SPEC_VERSION);
    let cases = file["cases"].as_array().expect("cases").clone();
    assert!(!cases.is_empty(), "{name} has no cases");
    cases
}

fn key(hex: &Value) -> Key {
    let hex = hex.as_str().expect("hex string");
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    Key::from_slice(&bytes).expect("32 bytes")
}

fn hex_u64(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().expect("hex string"), 16).expect("hex u64")
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("int") as u32)
        .collect()
}

fn logits(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().map_or(f32::NEG_INFINITY, |f| f as f32))
        .collect()
}

fn context(v: &Value) -> Context {
    v.as_str().expect("context string").parse().expect("valid context")
}

#[test]
fn keys() {
    for case in load("keys") {
        let k = key(&case["key"]);
        assert_eq!(k.id().to_string(), case["key_id"]);
        assert_eq!(k.to_file_string().as_str(), case["key_file"]);
        assert!(Key::from_file_str(case["key_file"].as_str().expect("str")).expect("parses") == k);
        for d in case["derived"].as_array().expect("derived") {
            let child = k.derive(d["label"].as_str().expect("label")).expect("valid label");
            assert!(child == key(&d["key"]));
            assert_eq!(child.id().to_string(), d["key_id"]);
        }
        let chain = &case["derived_chain"];
        let labels: Vec<&str> = chain["labels"]
            .as_array()
            .expect("labels")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut child = k.clone();
        for l in labels {
            child = child.derive(l).expect("valid label");
        }
        assert!(child == key(&chain["key"]));
        for (scheme, words) in case["scheme_prf_keys"].as_object().expect("object") {
            let (k0, k1) = scheme_prf_words(&k, scheme);
            assert_eq!((k0, k1), (hex_u64(&words[0]), hex_u64(&words[1])), "{scheme}");
        }
        for m in case["serving_macs"].as_array().expect("serving_macs") {
            let mac = k.serving_mac(
                m["scheme"].as_str().expect("scheme"),
                m["tokenizer"].as_str().expect("tokenizer"),
            );
            let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, m["mac"], "{m}");
        }
    }
}

#[test]
fn prf() {
    for case in load("prf") {
        let words = u32s(&case["words"]);
        let got = siphash_words(hex_u64(&case["k0"]), hex_u64(&case["k1"]), words[0], &words[1..]);
        assert_eq!(got, hex_u64(&case["prf"]), "{case}");
    }
}

#[test]
fn mix_and_value16() {
    for case in load("mix") {
        let seed = hex_u64(&case["seed"]);
        let w = case["word"].as_u64().expect("word") as u32;
        assert_eq!(u64::from(mix(seed, w)), case["mix"].as_u64().expect("mix"));
        assert_eq!(
            u64::from(value16(seed, w.wrapping_mul(2))),
            case["value16_of_2w"].as_u64().expect("v")
        );
        assert_eq!(
            u64::from(value16(seed, w.wrapping_mul(2).wrapping_add(1))),
            case["value16_of_2w_plus_1"].as_u64().expect("v")
        );
    }
}

fn build(scheme: &str, k: &Key, ctx: Context, vocab: usize) -> Box<dyn Scheme> {
    match scheme {
        "kgw" => Box::new(Kgw::new(k, KgwConfig::new(0.25, 1.0, ctx).expect("cfg"), vocab).expect("kgw")),
        "tournament" => Box::new(
            Tournament::new(k, TournamentConfig::new(30, 40, 1.0, ctx).expect("cfg"), vocab).expect("tournament"),
        ),
        "gumbel" => Box::new(Gumbel::new(k, GumbelConfig::new(1.0, ctx).expect("cfg"), vocab).expect("gumbel")),
        other => panic!("unknown scheme {other}"),
    }
}

#[test]
fn contexts() {
    for case in load("contexts") {
        let k = key(&case["key"]);
        let scheme = build(
            case["scheme"].as_str().expect("scheme"),
            &k,
            context(&case["context"]),
            128_256,
        );
        let history = u32s(&case["history"]);
        let cs = scheme.seeder().context_seed(&history);
        match &case["context_key"] {
            Value::Null => assert!(cs.is_none(), "{case}"),
            want => {
                let cs = cs.expect("seed");
                assert_eq!(cs.key, hex_u64(want), "{case}");
                let seeds: BTreeMap<String, Value> = BTreeMap::deserialize(&case["token_seeds"]).expect("token seeds");
                for (t, s) in seeds {
                    let t: u32 = t.parse().expect("token");
                    assert_eq!(scheme.seeder().token_seed(&cs, t), hex_u64(&s), "token {t} in {case}");
                }
            }
        }
    }
}

#[test]
fn kgw() {
    let mut rows_checked = 0;
    for case in load("kgw") {
        let k = key(&case["key"]);
        let vocab = case["vocab"].as_u64().expect("vocab") as usize;
        let gamma = case["gamma"].as_f64().expect("gamma");
        let delta = case["delta"].as_f64().expect("delta") as f32;
        let config = KgwConfig::new(gamma, delta, context(&case["context"])).expect("config");
        assert_eq!(
            u64::from(config.green_threshold()),
            case["green_threshold"].as_u64().expect("G")
        );
        let history = u32s(&case["history"]);
        for isa in [Isa::Portable, Isa::Avx2, Isa::Avx512] {
            let Some(kgw) = Kgw::new(&k, config.clone(), vocab).expect("kgw").with_isa(isa) else {
                continue;
            };
            for (t, v) in case["values"].as_object().expect("values") {
                let t: u32 = t.parse().expect("token");
                let obs = kgw.observe(&history, t).expect("in range").expect("long enough");
                assert_eq!(u64::from(obs.value), v.as_u64().expect("value"), "token {t} in {case}");
                assert_eq!(obs.context_key, hex_u64(&case["context_key"]));
                assert_eq!(
                    Some(case["green"][t.to_string()].as_bool().expect("bool")),
                    kgw.is_green(&history, t).expect("ok")
                );
            }
            if let Some(bits) = case.get("row_in_bits") {
                let mut row: Vec<f32> = u32s(bits).into_iter().map(f32::from_bits).collect();
                kgw.process(&history, &mut row).expect("processes");
                let got: Vec<u32> = row.iter().map(|x| x.to_bits()).collect();
                assert_eq!(got, u32s(&case["row_out_bits"]), "{isa:?} {case}");
                rows_checked += 1;
            }
            // Large vocabularies: the whole processed row must agree with the per-token values.
            if vocab > 1000 {
                let mut row = vec![0.0f32; vocab];
                kgw.process(&history, &mut row).expect("processes");
                let cs = kgw.seeder().context_seed(&history).expect("seed");
                for t in (0..vocab as u32).step_by(97).chain([vocab as u32 - 1]) {
                    let green = kgw.value(kgw.seeder().token_seed(&cs, t), t) < u32::from(config.green_threshold());
                    assert_eq!(row[t as usize], if green { delta } else { 0.0 }, "{isa:?} token {t}");
                }
            }
        }
    }
    assert!(rows_checked > 0);
}

#[test]
fn tournament() {
    for case in load("tournament") {
        let k = key(&case["key"]);
        let layers = case["layers"].as_u64().expect("m") as usize;
        let config = TournamentConfig::new(
            layers,
            case["top_k"].as_u64().expect("k") as usize,
            case["temperature"].as_f64().expect("T") as f32,
            context(&case["context"]),
        )
        .expect("config")
        .with_leaves(case["leaves"].as_u64().expect("N") as usize)
        .expect("leaves");
        let mut row = logits(&case["logits"]);
        let t = Tournament::new(&k, config, row.len()).expect("tournament");
        let history = u32s(&case["history"]);
        for ((tok, value), g) in u32s(&case["candidates"])
            .into_iter()
            .zip(u32s(&case["values"]))
            .zip(u32s(&case["g_sums"]))
        {
            let obs = t.observe(&history, tok).expect("ok").expect("seed");
            assert_eq!(obs.value, value, "token {tok}");
            assert_eq!(tournament_g_sum(value, layers), g);
        }
        t.process(&history, &mut row).expect("processes");
        for (got, want) in row.iter().zip(case["log_probs"].as_array().expect("log probs")) {
            match want.as_f64() {
                None => assert_eq!(*got, f32::NEG_INFINITY),
                Some(w) => assert!((f64::from(*got) - w).abs() <= 2e-6 * w.abs().max(1.0), "{got} vs {w}"),
            }
        }
    }
}

#[test]
fn gumbel() {
    for case in load("gumbel") {
        let k = key(&case["key"]);
        let row = logits(&case["logits"]);
        let config = GumbelConfig::new(
            case["temperature"].as_f64().expect("T") as f32,
            context(&case["context"]),
        )
        .expect("cfg");
        let g = Gumbel::new(&k, config, row.len()).expect("gumbel");
        let history = u32s(&case["history"]);
        for (tok, value) in u32s(&case["values"]).into_iter().enumerate() {
            let obs = g.observe(&history, tok as u32).expect("ok").expect("seed");
            assert_eq!(obs.value, value);
            let u = case["uniforms"][tok].as_f64().expect("u");
            let s = case["scores"][tok].as_f64().expect("score");
            assert_eq!(gumbel_uniform(value), u);
            assert!((g.score(value) - s).abs() <= 1e-12 * s.max(1.0));
        }
        let selected = g.select(&history, &row).expect("ok").expect("watermarked");
        assert_eq!(
            u64::from(selected),
            case["selected"].as_u64().expect("selected"),
            "{case}"
        );
        let mut processed = row.clone();
        g.process(&history, &mut processed).expect("ok");
        assert_eq!(processed.iter().filter(|x| **x != f32::NEG_INFINITY).count(), 1);
        assert_eq!(processed[selected as usize], row[selected as usize]);
    }
}

#[test]
fn there_are_at_least_forty_cases() {
    let n: usize = ["keys", "prf", "mix", "contexts", "kgw", "tournament", "gumbel"]
        .iter()
        .map(|f| load(f).len())
        .sum();
    assert!(n >= 40, "{n}");
}
