//! Layered generation on the real model and the real embedder: the semantic
//! layer's sentence-level rejection (`tracemark_candle::layered`) on top of a
//! `kgw` token layer.
//!
//! Needs the SmolLM2 GGUF at `$TRACEMARK_MODEL` and all-MiniLM-L6-v2 at
//! `$TRACEMARK_EMBEDDER` (`make test-rust` sets both); `#[ignore]`d only so
//! that a bare `cargo test` without them does not fail. They fail, never
//! skip, without them:
//!
//! ```text
//! TRACEMARK_MODEL="$(python3 scripts/fetch.py model)" \
//! TRACEMARK_EMBEDDER="$(python3 scripts/fetch.py embedder)" \
//!     cargo test --release -p tracemark-candle --test layered -- --ignored
//! ```
//!
//! `layered_cost_against_token_only` is also the measurement of
//! `docs/semantic.md` ("Generation"): with `TRACEMARK_LAYERED_PROMPTS=10`
//! and `TRACEMARK_LAYERED_TOKENS=160` it prints one line per prompt and the
//! totals (run it alone, `--test-threads=1 --nocapture`, for the timings).

mod support;

use std::path::PathBuf;
use std::time::Instant;

use support::model_path;
use tokenizers::Tokenizer;
use tracemark_candle::layered::DEFAULT_MAX_CANDIDATES;
use tracemark_candle::{
    chat_prompt, generate, generate_layered, gguf_tokenizer, Arm, Embedder, Layer, Layered, Llama, LoadOptions, Rng,
    Sampling,
};
use tracemark_core::{Key, Region, Scheme, SchemeConfig, Semantic, SemanticConfig};
use tracemark_verifier::detect::semantic::{detect_text, scored_spans};
use tracemark_verifier::{DetectOptions, Detector, TextTokenizer, Verdict};

const TOKEN_SCHEME: &str = "kgw:gamma=0.25,delta=2,context=lefthash:1";
const SEMANTIC: &str = "semantic:gamma=0.25,planes=8,chain=previous";

/// all-MiniLM-L6-v2 at `$TRACEMARK_EMBEDDER`: a test fails, never skips, without it.
fn embedder() -> Embedder {
    let dir = std::env::var_os("TRACEMARK_EMBEDDER")
        .map(PathBuf::from)
        .expect("set TRACEMARK_EMBEDDER to the all-MiniLM-L6-v2 folder (make test-rust does: python3 scripts/fetch.py embedder)");
    Embedder::load(&dir).expect("load the embedder")
}

struct Setup {
    model: Llama,
    tok: Tokenizer,
    embedder: Embedder,
    key: Key,
    config: SchemeConfig,
    scheme: Box<dyn Scheme>,
    semantic: Semantic,
    stop: [u32; 1],
}

fn setup() -> Setup {
    let path = model_path();
    let model = Llama::load(&path, LoadOptions::default()).expect("load");
    let tok = gguf_tokenizer::from_gguf(&path).expect("tokenizer");
    let key = Key::from_bytes([0x25; 32]); // a fixed test key: the checks below hold for any key
    let config: SchemeConfig = TOKEN_SCHEME.parse().expect("token scheme");
    let scheme = config.build(&key, model.config().vocab_size).expect("scheme");
    let semantic =
        Semantic::new(&key, SEMANTIC.parse::<SemanticConfig>().expect("semantic config")).expect("semantic scheme");
    let stop = [gguf_tokenizer::token_id(&tok, "<|im_end|>").expect("id")];
    Setup {
        model,
        tok,
        embedder: embedder(),
        key,
        config,
        scheme,
        semantic,
        stop,
    }
}

impl Setup {
    fn arm(&self, watermark: bool) -> Arm<'_> {
        Arm {
            scheme: watermark.then_some(self.scheme.as_ref()),
            steer: None,
            skip_repeated: false,
            sampling: Sampling::default(),
        }
    }

    fn layer(&self) -> Layer<'_> {
        Layer {
            semantic: &self.semantic,
            embedder: &self.embedder,
            tokenizer: &self.tok,
            max_candidates: DEFAULT_MAX_CANDIDATES,
        }
    }

    fn layered(&self, prompt: &[u32], max_new: usize, seed: u64) -> Layered {
        generate_layered(
            &self.model,
            prompt,
            self.arm(true),
            &self.layer(),
            max_new,
            &self.stop,
            &mut Rng::new(seed),
        )
        .expect("layered generation")
    }

    /// The verifier's view of a text: the regions of its scored sentences
    /// (embedded from the final text alone), whether each is green after its
    /// predecessor, and the semantic test's log10 p.
    fn semantic_view(&self, text: &str) -> (Vec<Region>, Vec<bool>, Option<f64>) {
        let spans = scored_spans(self.semantic.config(), text);
        let sentences: Vec<&str> = spans.iter().map(|s| &text[s.clone()]).collect();
        let embeddings = self.embedder.embed(&sentences).expect("embed");
        let rows: Vec<&[f32]> = embeddings.rows().collect();
        let regions: Vec<Region> = rows.iter().map(|e| self.semantic.region(e).expect("region")).collect();
        let mut previous = None;
        let green = regions
            .iter()
            .map(|&r| {
                let g = self.semantic.is_green_after(previous, r);
                previous = Some(r);
                g
            })
            .collect();
        let detection = detect_text(&self.semantic, text, &rows).expect("semantic detection");
        (regions, green, detection.outcome.log10_p())
    }

    fn token_log10_p(&self, verifier_tok: &TextTokenizer, prompt_text: &str, text: &str) -> (Verdict, f64) {
        let detector = Detector::new(
            &self.key,
            &self.config,
            verifier_tok.vocab_size(),
            DetectOptions::default(),
        )
        .expect("detector");
        let d = detector
            .detect_text(verifier_tok, Some(prompt_text), text)
            .expect("detect");
        (d.verdict, d.outcome.conservative_log10_p())
    }
}

#[test]
#[ignore = "needs the SmolLM2 model and the embedder: run by `make test`"]
fn layered_answer_is_green_detected_by_both_layers_and_deterministic() {
    let s = setup();
    let verifier_tok = TextTokenizer::from_tokenizer(&s.tok).expect("the model's tokenizer wraps");
    let prompt_text = chat_prompt("Explain how photosynthesis works.");
    let prompt = gguf_tokenizer::encode(&s.tok, &prompt_text).expect("encode");
    let out = s.layered(&prompt, 150, 11);
    let st = &out.stats;
    let text = gguf_tokenizer::decode(&s.tok, &out.generation.ids).expect("decode");
    assert_eq!(st.tokens_kept, out.generation.ids.len());
    assert!(st.tokens_generated >= st.tokens_kept);
    assert_eq!(st.candidates, st.candidates_per_sentence.iter().sum::<usize>());
    assert!(st
        .candidates_per_sentence
        .iter()
        .all(|&c| (1..=DEFAULT_MAX_CANDIDATES).contains(&c)));
    assert!(
        st.sentences >= 3,
        "a 150-token answer has several scored sentences: {st:?}\n{text}"
    );

    // The verifier, from the final text alone, finds the steered regions, in
    // order, and each is green after its predecessor except at a cap hit;
    // only an unsteered last sentence may follow them.
    let (regions, green, semantic_log10_p) = s.semantic_view(&text);
    assert_eq!(
        regions.len(),
        st.regions.len() + usize::from(st.unsteered_final),
        "{st:?}\n{text}"
    );
    assert_eq!(regions[..st.regions.len()], st.regions[..], "{text}");
    let red = green[..st.regions.len()].iter().filter(|&&g| !g).count();
    assert!(
        red <= st.cap_hits,
        "{red} red steered sentences, {} cap hits",
        st.cap_hits
    );
    // Every steered sentence green (or a cap hit): the semantic test's
    // p-value is at most that of n green of n distinct at γ = 0.25 (or
    // nearly, with the cap hits and the last sentence).
    let log10_p = semantic_log10_p.expect("tested");
    assert!(log10_p < -1.0, "semantic log10 p {log10_p}, {st:?}");

    // The token layer keeps its power on the layered answer.
    let (verdict, token_log10_p) = s.token_log10_p(&verifier_tok, &prompt_text, &text);
    assert_eq!(
        verdict,
        Verdict::Detected,
        "token layer log10 p {token_log10_p}\n{text}"
    );

    // Deterministic for a seed (a shorter run: the same code path).
    let a = s.layered(&prompt, 60, 5);
    let b = s.layered(&prompt, 60, 5);
    assert_eq!(a.generation.ids, b.generation.ids);
    assert_eq!(a.stats.candidates_per_sentence, b.stats.candidates_per_sentence);
    assert_eq!(a.stats.tokens_generated, b.stats.tokens_generated);
}

#[test]
#[ignore = "needs the SmolLM2 model and the embedder: run by `make test`"]
fn one_candidate_is_plain_token_generation() {
    // With a cap of 1 nothing is resampled: the answer is the token layer's
    // own, token for token, and every sentence is counted as a cap hit or a
    // pass.
    let s = setup();
    let prompt =
        gguf_tokenizer::encode(&s.tok, &chat_prompt("What are the main causes of climate change?")).expect("encode");
    let layer = Layer {
        max_candidates: 1,
        ..s.layer()
    };
    let out = generate_layered(&s.model, &prompt, s.arm(true), &layer, 60, &s.stop, &mut Rng::new(3)).expect("layered");
    let (plain, _) = generate(&s.model, &prompt, &[s.arm(true)], 60, &s.stop, &mut [Rng::new(3)]).expect("generate");
    assert_eq!(out.generation.ids, plain[0].ids);
    assert_eq!(
        out.stats.tokens_generated,
        out.stats.tokens_kept + usize::from(plain[0].stopped)
    );
    assert!(out.stats.candidates_per_sentence.iter().all(|&c| c == 1));
    let nll = |g: &[f32]| g.iter().map(|&x| f64::from(x)).sum::<f64>();
    assert!((nll(&out.generation.nll) - nll(&plain[0].nll)).abs() < 1e-3);
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map_or(default, |v| v.parse().expect("a number"))
}

#[test]
#[ignore = "needs the SmolLM2 model and the embedder: run by `make test`"]
fn layered_cost_against_token_only() {
    let s = setup();
    let verifier_tok = TextTokenizer::from_tokenizer(&s.tok).expect("the model's tokenizer wraps");
    let n_prompts = env_usize("TRACEMARK_LAYERED_PROMPTS", 2);
    let max_new = env_usize("TRACEMARK_LAYERED_TOKENS", 60);
    let prompts: Vec<&str> = include_str!("../../lab/data/prompts.txt")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .take(n_prompts)
        .collect();
    let (mut token_wall, mut layered_wall) = (0.0f64, 0.0f64);
    let (mut generated, mut kept, mut candidates, mut sentences, mut cap_hits, mut max_c) = (0, 0, 0, 0, 0, 0);
    let mut embed = 0.0f64;
    println!(
        "prompt | tokens kept (layered, token-only) | candidates/sentence mean, max | cap hits | generated/kept | wall ratio | semantic log10 p (layered, token-only) | token log10 p (layered, token-only)"
    );
    for (i, p) in prompts.iter().enumerate() {
        let prompt_text = chat_prompt(p);
        let prompt = gguf_tokenizer::encode(&s.tok, &prompt_text).expect("encode");
        let seed = 1000 + i as u64;
        let t = Instant::now();
        let (plain, _) = generate(
            &s.model,
            &prompt,
            &[s.arm(true)],
            max_new,
            &s.stop,
            &mut [Rng::new(seed)],
        )
        .expect("generate");
        let plain_wall = t.elapsed().as_secs_f64();
        let out = s.layered(&prompt, max_new, seed);
        let st = &out.stats;
        let layered_text = gguf_tokenizer::decode(&s.tok, &out.generation.ids).expect("decode");
        let plain_text = gguf_tokenizer::decode(&s.tok, &plain[0].ids).expect("decode");
        let (_, _, sem_layered) = s.semantic_view(&layered_text);
        let (_, _, sem_plain) = s.semantic_view(&plain_text);
        let (_, tok_layered) = s.token_log10_p(&verifier_tok, &prompt_text, &layered_text);
        let (_, tok_plain) = s.token_log10_p(&verifier_tok, &prompt_text, &plain_text);
        let max_here = st.candidates_per_sentence.iter().copied().max().unwrap_or(0);
        println!(
            "{i} | {}, {} | {:.2}, {max_here} | {} | {:.2} | {:.2} | {:.2}, {:.2} | {:.1}, {:.1}",
            st.tokens_kept,
            plain[0].ids.len(),
            st.mean_candidates(),
            st.cap_hits,
            st.tokens_per_kept(),
            st.wall_time.as_secs_f64() / plain_wall,
            sem_layered.unwrap_or(0.0),
            sem_plain.unwrap_or(0.0),
            tok_layered,
            tok_plain,
        );
        token_wall += plain_wall;
        layered_wall += st.wall_time.as_secs_f64();
        embed += st.embed_time.as_secs_f64();
        generated += st.tokens_generated;
        kept += st.tokens_kept;
        candidates += st.candidates;
        sentences += st.candidates_per_sentence.len();
        cap_hits += st.cap_hits;
        max_c = max_c.max(max_here);
        assert!(st.candidates_per_sentence.iter().all(|&c| c <= DEFAULT_MAX_CANDIDATES));
    }
    println!(
        "total: {} prompts, {max_new} max new tokens; steered sentences {sentences}, candidates {candidates} (mean {:.2}, max {max_c}), cap hits {cap_hits}; tokens generated {generated} / kept {kept} = {:.2}; wall layered {layered_wall:.1} s / token-only {token_wall:.1} s = {:.2} (embedding {embed:.1} s)",
        prompts.len(),
        candidates as f64 / sentences.max(1) as f64,
        generated as f64 / kept.max(1) as f64,
        layered_wall / token_wall,
    );
}
