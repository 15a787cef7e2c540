//! The real model: our tokenizer and forward pass against references, and an
//! end-to-end watermark round trip.
//!
//! Needs the SmolLM2 GGUF (`python3 scripts/fetch.py model`, which `make test`
//! runs); `#[ignore]`d only so that a bare `cargo test` without it does not
//! fail. `make test` runs these with `--ignored`, and they fail if the model
//! is missing.

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use tracemark_core::{Key, SchemeConfig};
use tracemark_examples::generate::{generate, Arm, Rng, Sampling};
use tracemark_examples::model::{KvCache, Llama, LoadOptions};
use tracemark_examples::{chat_prompt, gguf_tokenizer, model_path};
use tracemark_verifier::{DetectOptions, Detector, TextTokenizer, Verdict};

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
#[ignore = "needs the SmolLM2 model: run by `make test`"]
fn tokenizer_matches_reference_ids_and_round_trips_real_text() {
    let tok = gguf_tokenizer::from_gguf(&model_path().expect("model")).expect("tokenizer");
    // Reference ids from llama.cpp's tokenizer for this model.
    assert_eq!(
        gguf_tokenizer::encode(&tok, "Hello world").expect("encode"),
        [19556, 905]
    );
    let im_start = gguf_tokenizer::token_id(&tok, "<|im_start|>").expect("special");
    let ids = gguf_tokenizer::encode(&tok, &chat_prompt("Hi")).expect("encode");
    assert_eq!(ids[0], im_start, "special tokens in the template are single tokens");
    // Digits split one by one, no prefix space.
    let digits = gguf_tokenizer::encode(&tok, "2024").expect("encode");
    assert_eq!(digits.len(), 4);
    let mut texts = vec![
        "The quick brown fox jumps over the lazy dog.".to_string(),
        "fn main() {\n    println!(\"héllo, wörld — ünïcode ✓ 你好\");\n}\n".to_string(),
        "  leading spaces,\ttabs\n\n\nand   runs of   spaces  ".to_string(),
    ];
    if let Ok(path) = std::env::var("TRACEMARK_HUMAN_TEXT") {
        let corpus = std::fs::read_to_string(path).expect("corpus");
        texts.extend(corpus.lines().step_by(97).take(150).map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["text"]
                .as_str()
                .expect("text")
                .to_string()
        }));
    }
    let mut tokens = 0;
    for t in &texts {
        let ids = gguf_tokenizer::encode(&tok, t).expect("encode");
        tokens += ids.len();
        assert_eq!(&tok.decode(&ids, false).expect("decode"), t);
    }
    assert!(tokens > 1000 || std::env::var("TRACEMARK_HUMAN_TEXT").is_err());
}

#[test]
#[ignore = "needs the SmolLM2 model: run by `make test`"]
fn forward_matches_candle_quantized_llama() {
    let path = model_path().expect("model");
    // Same weights as candle's reference: no requantization.
    let ours = Llama::load(&path, LoadOptions { requantize_q8: false }).expect("load");
    let mut file = std::fs::File::open(&path).expect("open");
    let ct = gguf_file::Content::read(&mut file).expect("gguf");
    let mut reference =
        candle_transformers::models::quantized_llama::ModelWeights::from_gguf(ct, &mut file, &Device::Cpu)
            .expect("reference");
    let tok = gguf_tokenizer::from_gguf(&path).expect("tokenizer");
    let prompt = gguf_tokenizer::encode(&tok, &chat_prompt("Explain how a bicycle works.")).expect("encode");
    let mut cache = KvCache::new();
    let a = ours
        .forward(std::slice::from_ref(&prompt), &mut cache, false)
        .expect("forward")
        .squeeze(0)
        .expect("squeeze");
    let input = Tensor::new(prompt.as_slice(), &Device::Cpu)
        .expect("tensor")
        .unsqueeze(0)
        .expect("batch");
    let b = reference
        .forward(&input, 0)
        .expect("reference forward")
        .squeeze(0)
        .expect("squeeze");
    let (a, b) = (a.to_vec1::<f32>().expect("vec"), b.to_vec1::<f32>().expect("vec"));
    assert!(
        max_abs_diff(&a, &b) < 1e-2,
        "prompt logits differ by {}",
        max_abs_diff(&a, &b)
    );
    // All positions at once equal position-by-position decoding.
    let seq: Vec<u32> = prompt.iter().copied().take(24).collect();
    let all = ours
        .forward(std::slice::from_ref(&seq), &mut KvCache::new(), true)
        .expect("all")
        .squeeze(0)
        .expect("s")
        .to_vec2::<f32>()
        .expect("v");
    let mut fresh = KvCache::new();
    for (i, &t) in seq.iter().enumerate() {
        let one = ours
            .forward(&[vec![t]], &mut fresh, false)
            .expect("one")
            .squeeze(0)
            .expect("s")
            .to_vec1::<f32>()
            .expect("v");
        assert!(max_abs_diff(&one, &all[i]) < 1e-2, "position {i}");
    }
    // Ten decode steps through our KV cache equal candle's cache-free forward
    // over the whole sequence. (candle 0.11.1's own KV-cached path drifts from
    // its cache-free one after the first decode step, by up to ~0.9 in the
    // logits, so the cache-free path is the reference.)
    let mut seq = prompt.clone();
    let mut token = a
        .iter()
        .enumerate()
        .max_by(|x, y| x.1.total_cmp(y.1))
        .map(|(i, _)| i as u32)
        .expect("argmax");
    for _ in 0..10 {
        seq.push(token);
        let ours_step = ours
            .forward(&[vec![token]], &mut cache, false)
            .expect("step")
            .squeeze(0)
            .expect("s")
            .to_vec1::<f32>()
            .expect("v");
        reference.clear_kv_cache();
        let input = Tensor::new(seq.as_slice(), &Device::Cpu)
            .expect("t")
            .unsqueeze(0)
            .expect("b");
        let full = reference
            .forward(&input, 0)
            .expect("ref")
            .squeeze(0)
            .expect("s")
            .to_vec1::<f32>()
            .expect("v");
        assert!(
            max_abs_diff(&ours_step, &full) < 1e-2,
            "step logits differ by {}",
            max_abs_diff(&ours_step, &full)
        );
        token = ours_step
            .iter()
            .enumerate()
            .max_by(|x, y| x.1.total_cmp(y.1))
            .map(|(i, _)| i as u32)
            .expect("argmax");
    }
}

#[test]
#[ignore = "needs the SmolLM2 model: run by `make test`"]
fn watermarked_generation_is_detected_from_text_and_plain_is_not() {
    let path = model_path().expect("model");
    let model = Llama::load(&path, LoadOptions::default()).expect("load");
    let tok = gguf_tokenizer::from_gguf(&path).expect("tokenizer");
    let dir = std::env::temp_dir().join(format!("tracemark-model-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let tok_path = dir.join("tokenizer.json");
    gguf_tokenizer::save(&tok, &tok_path).expect("save");
    let verifier_tok = TextTokenizer::from_file(&tok_path).expect("exported tokenizer loads");
    assert_eq!(verifier_tok.vocab_size(), model.config().vocab_size);
    let key = Key::generate().expect("rng");
    let config: SchemeConfig = "kgw:gamma=0.25,delta=2,context=lefthash:1".parse().expect("cfg");
    let scheme = config.build(&key, model.config().vocab_size).expect("scheme");
    let sampling = Sampling {
        temperature: 1.0,
        top_k: None,
        top_p: None,
    };
    let arms = [
        Arm {
            scheme: Some(scheme.as_ref()),
            skip_repeated: false,
            sampling,
        },
        Arm {
            scheme: None,
            skip_repeated: false,
            sampling,
        },
    ];
    let prompt_text = chat_prompt("Describe a walk through a busy city market.");
    let prompt = gguf_tokenizer::encode(&tok, &prompt_text).expect("encode");
    let stop = [gguf_tokenizer::token_id(&tok, "<|im_end|>").expect("id")];
    let (gens, timing) =
        generate(&model, &prompt, &arms, 120, &stop, &mut [Rng::new(7), Rng::new(8)]).expect("generate");
    assert!(
        timing.watermark < timing.forward / 100,
        "watermark work must be < 1% of decoding"
    );
    let detector = Detector::new(&key, &config, verifier_tok.vocab_size(), DetectOptions::default()).expect("detector");
    let verdicts: Vec<Verdict> = gens
        .iter()
        .map(|g| {
            let text = gguf_tokenizer::decode(&tok, &g.ids).expect("decode");
            detector
                .detect_text(&verifier_tok, Some(&prompt_text), &text)
                .expect("detect")
                .verdict
        })
        .collect();
    assert_eq!(verdicts, [Verdict::Detected, Verdict::NotDetected], "{gens:?}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
