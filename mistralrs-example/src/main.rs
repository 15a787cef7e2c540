//! tracemark in mistral.rs: the watermark as a `CustomLogitsProcessor`,
//! generating from the SmolLM2 GGUF on CPU, then verified from the token ids.
//!
//! ```sh
//! make mistralrs-demo        # builds this crate once (mistral.rs is a large build), runs it
//! ```
//!
//! mistral.rs hands each request's processor the row of raw logits (rank 1,
//! f32, on the CPU) and every id of the sequence so far (prompt included),
//! after its penalties and before temperature and sampling: exactly what
//! `tracemark_core::Scheme::process` takes. The key is the server's; the
//! request only carries the processor.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{bail, Context, Result};
use mistralrs::{CustomLogitsProcessor, GgufModelBuilder, RequestBuilder, Tensor, TextMessageRole, TokenSource};
use tracemark_core::{Key, Scheme, SchemeConfig};
use tracemark_verifier::{DetectOptions, Detector};

/// The watermark for one request: the keyed scheme (built at the first row,
/// when the vocabulary is known) and the ids it saw, for verification.
struct Watermark {
    key: Key,
    config: SchemeConfig,
    scheme: OnceLock<Box<dyn Scheme>>,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    prompt: Option<usize>,
    context: Vec<u32>,
    vocab: usize,
}

impl Watermark {
    fn new(key: Key, config: SchemeConfig) -> Self {
        Self {
            key,
            config,
            scheme: OnceLock::new(),
            seen: Mutex::new(Seen::default()),
        }
    }
}

impl CustomLogitsProcessor for Watermark {
    fn apply(&self, logits: &Tensor, context: &[u32]) -> mistralrs::Result<Tensor> {
        let mut row: Vec<f32> = logits.to_vec1::<f32>()?;
        let scheme = match self.scheme.get() {
            Some(s) => s,
            None => {
                let s = self
                    .config
                    .build(&self.key, row.len())
                    .map_err(|e| mcandle::Error::msg(e.to_string()))?;
                self.scheme.get_or_init(|| s)
            }
        };
        scheme
            .process(context, &mut row)
            .map_err(|e| mcandle::Error::msg(e.to_string()))?;
        let mut seen = self.seen.lock().map_err(|_| mcandle::Error::msg("poisoned"))?;
        seen.prompt.get_or_insert(context.len());
        seen.context = context.to_vec();
        seen.vocab = row.len();
        let n = row.len();
        Tensor::from_vec(row, n, logits.device())
    }
}

/// Records the ids of an unwatermarked generation the same way.
struct Recorder(Mutex<Seen>);

impl CustomLogitsProcessor for Recorder {
    fn apply(&self, logits: &Tensor, context: &[u32]) -> mistralrs::Result<Tensor> {
        let mut seen = self.0.lock().map_err(|_| mcandle::Error::msg("poisoned"))?;
        seen.prompt.get_or_insert(context.len());
        seen.context = context.to_vec();
        seen.vocab = logits.dims1()?;
        Ok(logits.clone())
    }
}

const PROMPTS: [&str; 3] = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a bicycle gear works to a curious child.",
    "Describe your ideal weekend in a small mountain town.",
];
const SCHEME: &str = "kgw:gamma=0.25,delta=2,context=lefthash:1";

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(gguf) = args.next() else {
        bail!("usage: tracemark-mistralrs-example MODEL.gguf [KEY_FILE]  (no key file: a fresh random key)");
    };
    let gguf = PathBuf::from(gguf);
    let key = match args.next() {
        Some(f) => Key::load(&f).with_context(|| format!("loading the key file {f}"))?,
        None => Key::generate()?,
    };
    println!("key id {}, scheme {SCHEME}", key.id());
    let config: SchemeConfig = SCHEME.parse()?;
    let dir = gguf.parent().context("model path has no directory")?;
    let file = gguf.file_name().context("model path has no file name")?;
    // A local directory: mistral.rs reads the GGUF (weights, tokenizer, chat template) and contacts no hub.
    let model = GgufModelBuilder::new(dir.to_string_lossy(), vec![file.to_string_lossy()])
        .with_force_cpu()
        .with_token_source(TokenSource::None)
        .build()
        .await?;
    let (mut detected_marked, mut false_alarms) = (0, 0);
    for prompt in PROMPTS {
        for watermarked in [true, false] {
            let wm = Arc::new(Watermark::new(key.clone(), config.clone()));
            let rec = Arc::new(Recorder(Mutex::new(Seen::default())));
            let processor: Arc<dyn CustomLogitsProcessor> = if watermarked { wm.clone() } else { rec.clone() };
            let request = RequestBuilder::new()
                .set_sampler_temperature(0.8)
                .set_sampler_topk(40)
                .set_sampler_topp(0.95)
                .set_sampler_max_len(160)
                .add_logits_processor(processor)
                .add_message(TextMessageRole::User, prompt);
            let response = model.send_chat_request(request).await?;
            let text = response.choices[0].message.content.clone().unwrap_or_default();
            let seen = if watermarked { wm.seen.lock() } else { rec.0.lock() };
            let seen = seen.map_err(|_| anyhow::anyhow!("poisoned"))?;
            let start = seen.prompt.unwrap_or(seen.context.len());
            let detector = Detector::new(&key, &config, seen.vocab, DetectOptions::default())?;
            // The ids the processor saw: the prompt, then every generated id but the last.
            let detection = detector.detect_ids(&seen.context[..start], &seen.context[start..])?;
            let log10_p = detection.conservative_verdict_log10_p();
            let detected = log10_p <= -6.0;
            println!(
                "[{}] p = 10^{log10_p:.1} ({} tokens): {}\n    {}",
                if watermarked { "WATERMARKED" } else { "PLAIN" },
                seen.context.len() - start,
                if detected {
                    "WATERMARK DETECTED"
                } else {
                    "no watermark detected"
                },
                text.chars().take(160).collect::<String>().replace('\n', " ")
            );
            match (watermarked, detected) {
                (true, true) => detected_marked += 1,
                (false, true) => false_alarms += 1,
                _ => {}
            }
        }
    }
    println!(
        "{detected_marked} of {} watermarked answers detected at 1e-6; {false_alarms} plain answers flagged",
        PROMPTS.len()
    );
    // A 160-token answer is detected most of the time, not always (its power depends on its entropy);
    // a plain answer flagged at 1e-6 would be a failure.
    if false_alarms > 0 || detected_marked == 0 {
        bail!("unexpected verdicts");
    }
    Ok(())
}
