//! `radioactivity --api URL`: audit a suspect model through its OpenAI-compatible endpoint.
//!
//! The test a legal team can run against a rival's closed model (issue 26).
//! It sends prompts (the suspicious accounts' own requests, from our serving
//! logs, and/or new ones), keeps every response in a cache (an audit that
//! crashes or meets a 429 storm resumes without paying twice for a query), and
//! runs two exact tests with the key our answers were served under, per origin
//! of the prompts and for all of them:
//!
//! - **black box**: the suspect's sampled answers, scored like any text;
//! - **probability test**: the log-probabilities the API returned
//!   (`logprobs`/`top_logprobs`), through [`probability_test`];
//! - **reading test** (`--read`): texts never written with the key (human
//!   text, our own unwatermarked answers) sent to the completions route with
//!   `echo`, so that the API returns the suspect's log-probabilities at every
//!   token of them; the same [`probability_test`] over those positions. The
//!   texts do not depend on the key and neither does the suspect under the
//!   null, so the test is exact as the probability test is; texts that carry
//!   our watermark would break that, so the audit refuses them (it tests them
//!   for the watermark first). The API must return, at each position, the
//!   distribution of that token given the ones before it (OpenAI's `echo`,
//!   vLLM's prompt log-probabilities); a response shifted by one position (as
//!   llama-cpp-python's is when the prompt does not begin with the model's BOS
//!   token) is detected from the text alone and refused.
//!
//! The verdict is family-wise over the tests that ran (Bonferroni: detected
//! when the smallest p-value times their number is below `--alpha`).
//!
//! The bearer token is read from an environment variable (`--token-env`),
//! never from a flag, and is never written to a log, a cache file, a report or
//! an error.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tracemark_verifier::{probability_test, Detector, LogprobDoc, Scanner, TextTokenizer, Verdict};

use super::{print_json, Setup};
use crate::args::{ApiArgs, InputKind, RadioArgs};
use crate::exit::{Exit, Failure};
use crate::progress;

/// Where a prompt came from: the harvest (requests the suspicious accounts sent) or new.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Origin {
    /// A request of the suspicious accounts, from our serving logs.
    Harvest,
    /// A prompt the suspect was never asked by the harvesters.
    New,
    /// A text to read (echoed with log-probabilities), never written with the key.
    Read,
}

/// One prompt to send: chat messages or a completion prompt.
#[derive(Clone, Debug)]
pub(crate) struct Prompt {
    origin: Origin,
    /// `(role, content)` of a chat request.
    messages: Option<Vec<(String, String)>>,
    /// A completion request's prompt.
    prompt: Option<String>,
}

fn malformed(path: &Path, line: usize, message: impl Into<String>) -> Failure {
    Failure::BadPrompts {
        source: format!("prompts file {}: line {line}", path.display()),
        message: message.into(),
    }
}

/// One request line: `{"messages": [{"role", "content"}, ...]}` or `{"prompt": "..."}`,
/// with an optional `"origin"` (`harvest` or `new`) that overrides `default`.
fn prompt_of(row: &Value, default: Origin, path: &Path, line: usize) -> Result<Prompt, Failure> {
    let origin = match row.get("origin").and_then(Value::as_str) {
        None => default,
        Some("harvest") => Origin::Harvest,
        Some("new") => Origin::New,
        Some("read") => Origin::Read,
        Some(other) => {
            return Err(malformed(
                path,
                line,
                format!("origin {other:?}: use \"harvest\", \"new\" or \"read\""),
            ))
        }
    };
    if origin == Origin::Read && row.get("prompt").and_then(Value::as_str).is_none() {
        return Err(malformed(path, line, "a text to read needs \"prompt\" (a string)"));
    }
    if let Some(list) = row.get("messages").and_then(Value::as_array) {
        let mut messages = Vec::with_capacity(list.len());
        for m in list {
            let (Some(role), Some(content)) = (
                m.get("role").and_then(Value::as_str),
                m.get("content").and_then(Value::as_str),
            ) else {
                return Err(malformed(
                    path,
                    line,
                    "each message needs \"role\" and \"content\" strings",
                ));
            };
            messages.push((role.to_string(), content.to_string()));
        }
        return Ok(Prompt {
            origin,
            messages: Some(messages),
            prompt: None,
        });
    }
    if let Some(prompt) = row.get("prompt").and_then(Value::as_str) {
        return Ok(Prompt {
            origin,
            messages: None,
            prompt: Some(prompt.to_string()),
        });
    }
    Err(malformed(
        path,
        line,
        "needs \"messages\" (a list) or \"prompt\" (a string)",
    ))
}

fn read_lines(path: &Path) -> Result<String, Failure> {
    crate::input::read_text(path, "prompts")
}

/// The prompts of an audit: `--prompts` (JSONL, each line may name its origin), the
/// harvest's requests (`--harvest`, JSONL), new prompts (`--new-prompts`, one per
/// line, `#` comments skipped) and texts to read (`--read`, JSONL `{"prompt": ...}`);
/// at most `limit` of each origin, the first two interleaved so that a budget spends on
/// both, the texts to read after them.
pub(crate) fn load_prompts(
    prompts: Option<&Path>,
    harvest: Option<&Path>,
    new: Option<&Path>,
    read: Option<&Path>,
    limit: Option<usize>,
) -> Result<Vec<Prompt>, Failure> {
    let mut all = Vec::new();
    for (path, default) in [(prompts, Origin::New), (harvest, Origin::Harvest), (read, Origin::Read)] {
        let Some(path) = path else { continue };
        for (i, line) in read_lines(path)?.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let row: Value =
                serde_json::from_str(line).map_err(|e| malformed(path, i + 1, format!("not JSON ({e})")))?;
            all.push(prompt_of(&row, default, path, i + 1)?);
        }
    }
    if let Some(path) = new {
        for line in read_lines(path)?.lines() {
            if !line.trim().is_empty() && !line.starts_with('#') {
                all.push(Prompt {
                    origin: Origin::New,
                    messages: Some(vec![("user".into(), line.trim().to_string())]),
                    prompt: None,
                });
            }
        }
    }
    let cap = limit.unwrap_or(usize::MAX);
    let by: Vec<Vec<Prompt>> = [Origin::Harvest, Origin::New, Origin::Read]
        .iter()
        .map(|o| all.iter().filter(|p| p.origin == *o).take(cap).cloned().collect())
        .collect();
    let mut merged = Vec::new();
    for i in 0..by[0].len().max(by[1].len()) {
        merged.extend(by[..2].iter().filter_map(|v| v.get(i).cloned()));
    }
    // Texts to read come after (no generation: they are cheap), so that adding them leaves the
    // other prompts' places, and with them their seeds and cache entries, as they were.
    merged.extend(by[2].iter().cloned());
    if merged.is_empty() {
        return Err(Failure::Usage(
            "no prompts: give --harvest (the accounts' requests), --new-prompts, --read, or --prompts".into(),
        ));
    }
    Ok(merged)
}

/// The endpoint, its options and the response cache.
struct Client<'a> {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
    a: &'a ApiArgs,
}

/// Why one request got no answer.
enum Refusal {
    /// Worth another try (429, 5xx, a connection error, a torn body), after this many seconds.
    Retry(String, Option<f64>),
    /// Not worth another try (4xx other than 429).
    Fatal(String),
}

impl Client<'_> {
    fn endpoint(&self, p: &Prompt) -> String {
        let path = if p.messages.is_some() {
            "/chat/completions"
        } else {
            "/completions"
        };
        format!("{}{path}", self.base)
    }

    /// The request body of prompt `i` (its seed is `i`, so a resumed audit asks the same).
    /// A text to read asks for one token, the text echoed, and the log-probabilities.
    fn body(&self, p: &Prompt, i: usize) -> Value {
        let a = self.a;
        if p.origin == Origin::Read {
            return json!({
                "model": a.model, "prompt": p.prompt, "max_tokens": 1, "temperature": 0.0, "seed": i,
                "echo": true, "logprobs": a.top_logprobs,
            });
        }
        let mut body = json!({
            "model": a.model, "max_tokens": a.max_tokens, "temperature": a.temperature, "seed": i, "logprobs": true,
        });
        if let Some(messages) = &p.messages {
            body["messages"] = messages
                .iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect();
            body["top_logprobs"] = json!(a.top_logprobs);
        } else {
            body["prompt"] = json!(p.prompt);
            body["logprobs"] = json!(a.top_logprobs);
        }
        body
    }

    /// The cache file of a request: named by the SHA-256 of its route (`/chat/completions` or
    /// `/completions`) and body, never the token. The host is not in the name, so a suspect that
    /// moves (a new port, a new domain) is not asked again: one cache folder per suspect.
    fn cache_path(&self, cache: &Path, endpoint: &str, body: &Value) -> PathBuf {
        let route = endpoint.strip_prefix(self.base.as_str()).unwrap_or(endpoint);
        let digest = Sha256::digest(json!([route, body]).to_string().as_bytes());
        let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        cache.join(format!("{name}.json"))
    }

    fn cached(&self, cache: &Path, p: &Prompt, i: usize) -> Option<Value> {
        let path = self.cache_path(cache, &self.endpoint(p), &self.body(p, i));
        let text = std::fs::read_to_string(&path).ok()?;
        match serde_json::from_str(&text) {
            Ok(v) => Some(v),
            Err(_) => {
                // A torn write from a crash: ask again.
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    fn once(&self, endpoint: &str, body: &str) -> Result<Value, Refusal> {
        let mut request = self.agent.post(endpoint).header("Content-Type", "application/json");
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let mut response = match request.send(body) {
            Ok(r) => r,
            Err(ureq::Error::Timeout(_)) => return Err(Refusal::Retry("timeout".into(), None)),
            Err(ureq::Error::Io(e)) => return Err(Refusal::Retry(format!("{:?}", e.kind()), None)),
            Err(e) => return Err(Refusal::Retry(error_kind(&e).into(), None)),
        };
        let status = response.status().as_u16();
        if status == 429 || status >= 500 {
            let wait = response
                .headers()
                .get("Retry-After")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0);
            return Err(Refusal::Retry(format!("HTTP {status}"), wait));
        }
        if !(200..300).contains(&status) {
            return Err(Refusal::Fatal(format!("HTTP {status}")));
        }
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| Refusal::Retry(error_kind(&e).into(), None))?;
        serde_json::from_str(&text).map_err(|_| Refusal::Retry("a body that is not JSON".into(), None))
    }

    /// The response to prompt `i`: from the endpoint, retrying 429, 5xx and connection errors with
    /// exponential backoff and jitter (honouring `Retry-After`), saved to the cache before it is returned.
    fn ask(&self, cache: &Path, p: &Prompt, i: usize, log: &Mutex<Vec<String>>) -> Result<Value, Failure> {
        let endpoint = self.endpoint(p);
        let body = self.body(p, i);
        let text = body.to_string();
        let mut delay = self.a.backoff;
        let jitter = RandomState::new();
        let mut attempt = 0;
        let response = loop {
            match self.once(&endpoint, &text) {
                Ok(v) => break v,
                Err(Refusal::Fatal(why)) => {
                    return Err(Failure::Api {
                        message: format!("{endpoint}: {why} for prompt {i}: the request was refused"),
                    })
                }
                Err(Refusal::Retry(why, wait)) => {
                    if attempt == self.a.retries {
                        return Err(Failure::Api {
                            message: format!(
                                "{endpoint}: no answer for prompt {i} after {} tries ({why}); run the audit again: \
                                 the answers so far are cached and are not asked again",
                                attempt + 1
                            ),
                        });
                    }
                    let pause = wait.unwrap_or(delay);
                    lock(log).push(format!("prompt {i}: {why}, retry {} in {pause:.1} s", attempt + 1));
                    let spread = (jitter.hash_one((i, attempt)) % 1000) as f64 / 4000.0;
                    std::thread::sleep(Duration::from_secs_f64(pause * (1.0 + spread)));
                    delay = (delay * 2.0).min(60.0);
                    attempt += 1;
                }
            }
        };
        let path = self.cache_path(cache, &endpoint, &body);
        let part = path.with_extension("part");
        let write = |e| Failure::Write {
            target: path.display().to_string(),
            error: e,
        };
        std::fs::write(&part, response.to_string()).map_err(write)?;
        std::fs::rename(&part, &path).map_err(write)?;
        Ok(response)
    }
}

/// A ureq error in a few words that cannot hold the request's headers.
fn error_kind(e: &ureq::Error) -> &'static str {
    match e {
        ureq::Error::Timeout(_) => "timeout",
        ureq::Error::Io(_) => "connection error",
        ureq::Error::Protocol(_) => "HTTP protocol error",
        ureq::Error::BadUri(_) => "bad URL",
        ureq::Error::BodyExceedsLimit(_) => "response too large",
        _ => "request failed",
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The value a mutex held, once its threads are done.
fn take<T>(m: Mutex<T>) -> T {
    m.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One answer: its text, per sampled token the candidates with their log-probabilities, the
/// completion tokens the API billed, and the model id it returned.
struct Answer {
    text: String,
    steps: Vec<(String, Vec<(String, f64)>)>,
    billed: u64,
    /// Prompt tokens the API billed (a text to read is all prompt).
    prompt_billed: u64,
    model: String,
}

fn parse(response: &Value) -> Answer {
    let choice = response.get("choices").and_then(|c| c.get(0)).unwrap_or(&Value::Null);
    let model = response.get("model").and_then(Value::as_str).unwrap_or("").to_string();
    let billed = response
        .pointer("/usage/completion_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let prompt_billed = response
        .pointer("/usage/prompt_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let str_of = |v: &Value| v.as_str().unwrap_or("").to_string();
    let (text, steps) = if let Some(message) = choice.get("message") {
        let text = message.get("content").map(str_of).unwrap_or_default();
        let content = choice.pointer("/logprobs/content").and_then(Value::as_array);
        let steps = content
            .into_iter()
            .flatten()
            .map(|c| {
                let top = c.get("top_logprobs").and_then(Value::as_array).into_iter().flatten();
                let cands = top
                    .filter_map(|t| Some((t.get("token")?.as_str()?.to_string(), t.get("logprob")?.as_f64()?)))
                    .collect();
                (c.get("token").map(str_of).unwrap_or_default(), cands)
            })
            .collect();
        (text, steps)
    } else {
        let text = choice.get("text").map(str_of).unwrap_or_default();
        let tokens = choice.pointer("/logprobs/tokens").and_then(Value::as_array);
        let tops = choice.pointer("/logprobs/top_logprobs").and_then(Value::as_array);
        let steps = tokens
            .into_iter()
            .flatten()
            .zip(tops.into_iter().flatten())
            .map(|(t, top)| {
                let cands = top
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                    .collect();
                (str_of(t), cands)
            })
            .collect();
        (text, steps)
    };
    Answer {
        text,
        steps,
        billed,
        prompt_billed,
        model,
    }
}

/// Token text (as APIs print it) to id, for the pieces that decode uniquely: ambiguous and
/// undecodable pieces are dropped, a choice that does not depend on the key.
fn piece_map(tokenizer: &TextTokenizer) -> Result<HashMap<String, u32>, Failure> {
    let mut seen: HashMap<String, u32> = HashMap::new();
    let mut clash = HashSet::new();
    for id in 0..tokenizer.vocab_size() as u32 {
        let piece = tokenizer.decode(&[id])?;
        if piece.is_empty() || piece.contains('\u{fffd}') || seen.contains_key(&piece) {
            clash.insert(piece.clone());
        }
        seen.entry(piece).or_insert(id);
    }
    seen.retain(|k, _| !clash.contains(k));
    Ok(seen)
}

/// The budget of one run, and what it spent.
struct Spend {
    next: usize,
    requests: usize,
    tokens: u64,
    failure: Option<Failure>,
}

/// One test of the audit.
#[derive(Serialize)]
struct TestRow {
    origin: &'static str,
    test: &'static str,
    documents: usize,
    log10_p: Option<f64>,
    verdict: Verdict,
    corpus: String,
}

/// The audit's summary: `OUT.json`.
#[derive(Serialize)]
struct Summary {
    format: &'static str,
    endpoint: String,
    model_requested: String,
    models_returned: BTreeSet<String>,
    key_id: String,
    scheme: String,
    prompts: BTreeMap<&'static str, usize>,
    answers: usize,
    queries_paid_this_run: usize,
    answers_from_cache: usize,
    completion_tokens_this_run: u64,
    completion_tokens_total: u64,
    /// Prompt tokens billed (the texts read are all prompt).
    prompt_tokens_total: u64,
    stopped: Option<String>,
    unmapped_answers: usize,
    retries: Vec<String>,
    tests: Vec<TestRow>,
    family_wise: FamilyWise,
    corpora: String,
}

/// The audit's verdict over its tests.
#[derive(Serialize)]
struct FamilyWise {
    /// How many tests ran (the Bonferroni factor).
    tests: usize,
    alpha: f64,
    /// log10 of the smallest p-value times the number of tests (capped at 0).
    log10_p_adjusted: Option<f64>,
    verdict: Verdict,
}

fn write_file(path: &Path, text: &str) -> Result<(), Failure> {
    std::fs::write(path, text).map_err(|error| Failure::Write {
        target: path.display().to_string(),
        error,
    })
}

/// Writes one JSON value per line.
fn write_jsonl(path: &Path, rows: impl IntoIterator<Item = Value>) -> Result<(), Failure> {
    let mut body = String::new();
    for row in rows {
        let _ = writeln!(body, "{row}");
    }
    write_file(path, &body)
}

/// Writes `texts` as a JSONL corpus to `file` and scans it: the aggregate test.
fn scan_texts<T: Serialize>(
    detector: &Detector,
    tokenizer: &TextTokenizer,
    jobs: usize,
    file: &Path,
    texts: &[T],
) -> Result<tracemark_verifier::Detection, Failure> {
    write_jsonl(file, texts.iter().map(|t| json!({ "text": t })))?;
    let scanner = Scanner::new(detector, Some(tokenizer)).jobs(jobs);
    Ok(progress::scan(&scanner, file, |_| {})?.aggregate)
}

/// Runs `radioactivity --api`.
pub(crate) fn run(r: &RadioArgs, url: &str) -> Result<Exit, Failure> {
    let a = &r.api;
    let s = Setup::new(&r.common, InputKind::Text)?;
    let key = s.only_key("--api audits")?;
    let Some(tokenizer) = s.tokenizer.as_ref() else {
        return Err(Failure::Usage(
            "--api needs --tokenizer (our served model's tokenizer.json)".into(),
        ));
    };
    let (Some(cache), Some(out)) = (&a.cache, &a.out) else {
        return Err(Failure::Usage(
            "--api needs --cache DIR (the response cache) and --out PREFIX".into(),
        ));
    };
    let prompts = load_prompts(
        a.prompts.as_deref(),
        a.harvest.as_deref(),
        a.new_prompts.as_deref(),
        a.read.as_deref(),
        a.limit,
    )?;
    let token = std::env::var(&a.token_env).ok().filter(|t| !t.is_empty());
    let create = |dir: &Path| {
        std::fs::create_dir_all(dir).map_err(|error| Failure::Write {
            target: dir.display().to_string(),
            error,
        })
    };
    create(cache)?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        create(parent)?;
    }
    let detector = Detector::new(key, &s.scheme, s.vocab, s.options.clone())?;
    let corpora = PathBuf::from(format!("{}-corpora", out.display()));
    create(&corpora)?;
    refuse_watermarked_reading(&prompts, &detector, tokenizer, &corpora, r.jobs)?;
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs_f64(a.request_timeout)))
        .http_status_as_error(false)
        .build();
    let client = Client {
        agent: config.into(),
        base: url.trim_end_matches('/').to_string(),
        token,
        a,
    };

    // Answers from the cache, then the rest from the endpoint within the budget.
    // Each response is parsed once, when it is read or received.
    let mut responses: BTreeMap<usize, Answer> = BTreeMap::new();
    let mut todo = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        match client.cached(cache, p, i) {
            Some(v) => {
                responses.insert(i, parse(&v));
            }
            None => todo.push(i),
        }
    }
    let from_cache = responses.len();
    let spend = Mutex::new(Spend {
        next: 0,
        requests: 0,
        tokens: 0,
        failure: None,
    });
    let answers = Mutex::new(BTreeMap::new());
    let log = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..a.concurrency.max(1) {
            scope.spawn(|| loop {
                let i = {
                    let mut sp = lock(&spend);
                    let left = sp.requests < a.max_requests && sp.tokens < a.max_tokens_total;
                    if sp.failure.is_some() || sp.next >= todo.len() || !left {
                        return;
                    }
                    sp.next += 1;
                    sp.requests += 1;
                    todo[sp.next - 1]
                };
                match client.ask(cache, &prompts[i], i, &log) {
                    Ok(v) => {
                        let answer = parse(&v);
                        let used = if answer.billed > 0 {
                            answer.billed
                        } else {
                            answer.steps.len() as u64
                        };
                        lock(&spend).tokens += used;
                        lock(&answers).insert(i, answer);
                    }
                    Err(f) => {
                        lock(&spend).failure.get_or_insert(f);
                        return;
                    }
                }
            });
        }
    });
    let spend = take(spend);
    if let Some(f) = spend.failure {
        return Err(f);
    }
    let paid_tokens = spend.tokens;
    let stopped = (spend.next < todo.len()).then(|| "the request or token budget was spent".to_string());
    responses.extend(take(answers));

    // The corpora: per origin, the answers' text (black box) and their log-probabilities.
    let pieces = piece_map(tokenizer)?;
    let mut models = BTreeSet::new();
    let mut unmapped = 0;
    let mut billed_total = 0;
    let mut prompt_billed_total = 0;
    // The texts read, and which text each piece of the reading corpus comes from.
    let mut read_texts = 0;
    let mut read_of: Vec<usize> = Vec::new();
    let mut texts: BTreeMap<Origin, Vec<String>> = BTreeMap::new();
    let mut lps: BTreeMap<Origin, Vec<LogprobDoc>> = BTreeMap::new();
    // The candidates an API listed at a position, as ids (those whose text names one id).
    let candidates = |cands: &[(String, f64)]| -> Vec<(u32, f64)> {
        cands
            .iter()
            .filter(|(_, lp)| *lp <= 0.0)
            .filter_map(|(c, lp)| Some((*pieces.get(c)?, *lp)))
            .collect()
    };
    for (&i, answer) in &responses {
        billed_total += answer.billed;
        prompt_billed_total += answer.prompt_billed;
        if !answer.model.is_empty() {
            models.insert(answer.model.clone());
        }
        let origin = prompts[i].origin;
        // A text read back ends with the one token generated after it: not part of the text.
        let steps = match origin {
            Origin::Read => &answer.steps[..answer.steps.len().saturating_sub(answer.billed.max(1) as usize)],
            _ => &answer.steps[..],
        };
        if origin != Origin::Read && !answer.text.trim().is_empty() {
            texts.entry(origin).or_default().push(answer.text.clone());
        }
        if origin == Origin::Read {
            // A text read back is cut at the tokens whose text does not name one id (special
            // tokens print as nothing): each piece is tested on its own, so no context is
            // guessed. Where it is cut depends on the text alone, not on the key.
            let docs = lps.entry(origin).or_default();
            let mut piece = LogprobDoc::default();
            for (t, cands) in steps {
                if let Some(&id) = pieces.get(t) {
                    piece.ids.push(id);
                    piece.top.push(candidates(cands));
                } else if !piece.ids.is_empty() {
                    docs.push(std::mem::take(&mut piece));
                    read_of.push(read_texts);
                }
            }
            if !piece.ids.is_empty() {
                docs.push(piece);
                read_of.push(read_texts);
            }
            read_texts += 1;
            continue;
        }
        let ids: Option<Vec<u32>> = steps.iter().map(|(t, _)| pieces.get(t).copied()).collect();
        match ids {
            Some(ids) if !ids.is_empty() => {
                let top = steps.iter().map(|(_, cands)| candidates(cands)).collect();
                lps.entry(origin).or_default().push(LogprobDoc {
                    prompt_ids: Vec::new(),
                    ids,
                    top,
                });
            }
            _ if !steps.is_empty() => unmapped += 1,
            _ => {}
        }
    }
    if let Some(read) = lps.get(&Origin::Read) {
        check_alignment(read)?;
    }
    let mut rows = Vec::new();
    let origins: [(&'static str, &[Origin]); 3] = [
        ("harvest", &[Origin::Harvest]),
        ("new", &[Origin::New]),
        ("all", &[Origin::Harvest, Origin::New]),
    ];
    for (name, which) in origins {
        let text_docs: Vec<&String> = which.iter().flat_map(|o| texts.get(o).into_iter().flatten()).collect();
        if !text_docs.is_empty() {
            let file = corpora.join(format!("{name}-black-box.jsonl"));
            let d = scan_texts(&detector, tokenizer, r.jobs, &file, &text_docs)?;
            rows.push(row(name, "black box", text_docs.len(), &d, &file));
        }
        let lp_docs: Vec<&LogprobDoc> = which.iter().flat_map(|o| lps.get(o).into_iter().flatten()).collect();
        if !lp_docs.is_empty() {
            let file = corpora.join(format!("{name}-probability.jsonl"));
            write_jsonl(&file, lp_docs.iter().map(|d| json!({ "ids": d.ids, "top": d.top })))?;
            let d = probability_test(&detector, lp_docs.iter().copied())?;
            rows.push(row(name, "probability", lp_docs.len(), &d, &file));
        }
    }
    if let Some(read) = lps.get(&Origin::Read).filter(|d| !d.is_empty()) {
        let file = corpora.join("read-reading.jsonl");
        write_jsonl(
            &file,
            read.iter()
                .zip(&read_of)
                .map(|(d, text)| json!({ "ids": d.ids, "top": d.top, "text": text })),
        )?;
        let d = probability_test(&detector, read.iter())?;
        rows.push(row("read", "reading", read_texts, &d, &file));
    }
    let family_wise = family_wise(&rows, s.options.alpha);
    let count = |o: Origin| prompts.iter().filter(|p| p.origin == o).count();
    let summary = Summary {
        format: "tracemark-api-audit/1",
        endpoint: url.to_string(),
        model_requested: a.model.clone(),
        models_returned: models,
        key_id: key.id().to_string(),
        scheme: s.scheme.to_string(),
        prompts: BTreeMap::from([
            ("harvest", count(Origin::Harvest)),
            ("new", count(Origin::New)),
            ("read", count(Origin::Read)),
        ]),
        answers: responses.len(),
        queries_paid_this_run: spend.requests,
        answers_from_cache: from_cache,
        completion_tokens_this_run: paid_tokens,
        completion_tokens_total: billed_total,
        prompt_tokens_total: prompt_billed_total,
        stopped,
        unmapped_answers: unmapped,
        retries: take(log),
        tests: rows,
        family_wise,
        corpora: corpora.display().to_string(),
    };
    let json_path = PathBuf::from(format!("{}.json", out.display()));
    let html_path = PathBuf::from(format!("{}.html", out.display()));
    let text = serde_json::to_string_pretty(&summary).map_err(|e| Failure::Write {
        target: json_path.display().to_string(),
        error: e.into(),
    })?;
    write_file(&json_path, &(text + "\n"))?;
    write_file(&html_path, &render_html(&summary))?;
    if r.common.json {
        print_json(&summary)?;
    } else {
        for t in &summary.tests {
            println!(
                "{:<8} {:<12} {:>5} answers  {}",
                t.origin,
                t.test,
                t.documents,
                t.log10_p
                    .map_or("inconclusive".to_string(), |p| format!("p = 10^{p:.2}"))
            );
        }
        let fw = &summary.family_wise;
        println!(
            "family-wise over {} tests at alpha {:e}: {}",
            fw.tests,
            fw.alpha,
            verdict_words(fw.verdict)
        );
        println!(
            "queries paid {}, from cache {}, completion tokens {}{}; report {}",
            summary.queries_paid_this_run,
            summary.answers_from_cache,
            summary.completion_tokens_total,
            summary
                .stopped
                .as_ref()
                .map_or(String::new(), |s| format!(" (stopped: {s})")),
            html_path.display()
        );
    }
    Ok(Exit::from(summary.family_wise.verdict))
}

/// Refuses texts to read that carry our watermark (tested before anything is sent): the
/// reading test is exact only for texts that do not depend on the key. Refusing only
/// when the texts test positive is a decreasing event in the keyed scores, so it can
/// only make the reading test more conservative.
fn refuse_watermarked_reading(
    prompts: &[Prompt],
    detector: &Detector,
    tokenizer: &TextTokenizer,
    corpora: &Path,
    jobs: usize,
) -> Result<(), Failure> {
    let texts: Vec<&str> = prompts
        .iter()
        .filter(|p| p.origin == Origin::Read)
        .filter_map(|p| p.prompt.as_deref())
        .collect();
    if texts.is_empty() {
        return Ok(());
    }
    let d = scan_texts(detector, tokenizer, jobs, &corpora.join("read-texts.jsonl"), &texts)?;
    match d.outcome.log10_p() {
        Some(p) if p < READ_TEXTS_REFUSED_BELOW => Err(Failure::Usage(format!(
            "the --read texts carry this key's watermark (p = 10^{p:.1} over {} texts): a text to read must never \
             have been written with the key (use human text, or answers served without the watermark)",
            texts.len()
        ))),
        _ => Ok(()),
    }
}

/// `log10` of the p-value below which the texts to read count as watermarked.
const READ_TEXTS_REFUSED_BELOW: f64 = -3.0;

/// Refuses echoed log-probabilities that are shifted by one position: at position `i` the
/// API must list the distribution of token `i` given the tokens before it. Its most likely
/// candidate then matches token `i` far more often than token `i + 1`; a shifted response
/// (llama-cpp-python's, when the prompt does not begin with the model's BOS token) has it
/// the other way round. Decided from the text and the suspect's answers alone, not the key.
fn check_alignment(docs: &[LogprobDoc]) -> Result<(), Failure> {
    let (mut same, mut next) = (0usize, 0usize);
    for d in docs {
        for (i, cands) in d.top.iter().enumerate() {
            let Some(&(best, _)) = cands.iter().max_by(|a, b| a.1.total_cmp(&b.1)) else {
                continue;
            };
            same += usize::from(best == d.ids[i]);
            next += usize::from(d.ids.get(i + 1) == Some(&best));
        }
    }
    if next > same && next >= 10 {
        return Err(Failure::Malformed {
            source: "the API's echoed log-probabilities".into(),
            message: format!(
                "they look shifted by one position (the most likely candidate is the next token at {next} positions, \
                 the token itself at {same}): the reading test needs, at each position, the distribution of that \
                 token given the ones before it. llama-cpp-python shifts them when the prompt does not begin with \
                 the model's BOS token"
            ),
        });
    }
    Ok(())
}

fn row(
    origin: &'static str,
    test: &'static str,
    documents: usize,
    d: &tracemark_verifier::Detection,
    file: &Path,
) -> TestRow {
    TestRow {
        origin,
        test,
        documents,
        log10_p: d.outcome.log10_p(),
        verdict: d.verdict,
        corpus: file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

/// Bonferroni over the tests that ran: detected when `min p · n < alpha`.
fn family_wise(rows: &[TestRow], alpha: f64) -> FamilyWise {
    let tested: Vec<f64> = rows.iter().filter_map(|r| r.log10_p).collect();
    let n = tested.len();
    let adjusted = tested
        .iter()
        .copied()
        .reduce(f64::min)
        .map(|p| (p + (n as f64).log10()).min(0.0));
    let verdict = match adjusted {
        None => Verdict::Inconclusive,
        Some(p) if p < alpha.log10() => Verdict::Detected,
        Some(_) => Verdict::NotDetected,
    };
    FamilyWise {
        tests: n,
        alpha,
        log10_p_adjusted: adjusted,
        verdict,
    }
}

fn verdict_words(v: Verdict) -> &'static str {
    match v {
        Verdict::Detected => "detected: the suspect's answers carry our key's watermark",
        Verdict::NotDetected => "not detected",
        _ => "inconclusive (too few answers could be scored)",
    }
}

/// HTML-escapes `s` for text and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn render_html(s: &Summary) -> String {
    let p = |l: Option<f64>| l.map_or("inconclusive".to_string(), |l| format!("10<sup>{l:.2}</sup>"));
    let mut rows = String::new();
    for r in &s.tests {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(r.origin),
            escape(r.test),
            r.documents,
            p(r.log10_p)
        );
    }
    let models: Vec<&str> = s.models_returned.iter().map(String::as_str).collect();
    let models = if models.is_empty() {
        "none".to_string()
    } else {
        models.join(", ")
    };
    let stopped = s
        .stopped
        .as_ref()
        .map_or(String::new(), |why| format!(" Stopped early: {}.", escape(why)));
    let fw = &s.family_wise;
    format!(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>tracemark API audit</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:900px;margin:2em auto}}td,th{{padding:4px 12px;border-bottom:1px solid #ddd;text-align:left}}</style></head>
<body><h1>API audit: did the suspect model learn from our watermarked answers?</h1>
<p><strong>{verdict}</strong> (family-wise over {n} tests at alpha {alpha:e}: the smallest p-value times {n} is {adj}).</p>
<p>Endpoint <code>{endpoint}</code>; model id returned: <code>{models}</code>. Key id <code>{key}</code>, scheme <code>{scheme}</code>.</p>
<p>Prompts: {harvest} from the harvest (the suspicious accounts' own requests), {new} new, {read} texts read (echoed with
log-probabilities; texts never written with the key).
Answers: {answers} ({paid} queries paid in this run, {cached} from the cache); completion tokens: {tokens} in all.{stopped}</p>
<table><tr><th>prompts</th><th>test</th><th>answers</th><th>p-value</th></tr>{rows}</table>
<p>Each p-value is exact (the probability and reading tests: an exact weighted tail, or a conservative bound for gumbel schemes) and is the
chance of a result at least this extreme if the suspect model never learned from text watermarked with this key. The verdict
multiplies the smallest by the number of tests (Bonferroni), so it holds at alpha whichever test is looked at.</p>
</body></html>
"#,
        verdict = verdict_words(fw.verdict),
        n = fw.tests,
        alpha = fw.alpha,
        adj = p(fw.log10_p_adjusted),
        endpoint = escape(&s.endpoint),
        models = escape(&models),
        key = escape(&s.key_id),
        scheme = escape(&s.scheme),
        harvest = s.prompts.get("harvest").copied().unwrap_or(0),
        new = s.prompts.get("new").copied().unwrap_or(0),
        read = s.prompts.get("read").copied().unwrap_or(0),
        answers = s.answers,
        paid = s.queries_paid_this_run,
        cached = s.answers_from_cache,
        tokens = s.completion_tokens_total,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_and_completion_responses_parse() {
        let chat = json!({"model": "m", "usage": {"completion_tokens": 2}, "choices": [{"message": {"content": "Hi there"},
            "logprobs": {"content": [{"token": "Hi", "logprob": -0.1, "top_logprobs": [{"token": "Hi", "logprob": -0.1},
            {"token": "Hello", "logprob": -2.5}]}, {"token": " there", "logprob": -0.3, "top_logprobs": []}]}}]});
        let a = parse(&chat);
        assert_eq!((a.text.as_str(), a.billed, a.model.as_str()), ("Hi there", 2, "m"));
        assert_eq!(a.steps.len(), 2);
        assert_eq!(
            a.steps[0].1,
            vec![("Hi".to_string(), -0.1), ("Hello".to_string(), -2.5)]
        );
        let completion = json!({"choices": [{"text": "ab", "logprobs": {"tokens": ["a", "b"],
            "top_logprobs": [{"a": -0.5}, {"b": -0.1, "c": -3.0}]}}]});
        let a = parse(&completion);
        assert_eq!((a.text.as_str(), a.billed, a.steps.len()), ("ab", 0, 2));
        // Anything else is an empty answer, not a panic.
        for v in [
            json!(null),
            json!({"choices": []}),
            json!({"choices": [{"message": 3}]}),
            json!([1, 2]),
        ] {
            let a = parse(&v);
            assert!(a.text.is_empty() && a.steps.is_empty());
        }
    }

    #[test]
    fn the_family_wise_verdict_is_bonferroni() {
        let t = |l: Option<f64>| TestRow {
            origin: "all",
            test: "x",
            documents: 1,
            log10_p: l,
            verdict: Verdict::NotDetected,
            corpus: String::new(),
        };
        let fw = family_wise(&[t(Some(-6.2)), t(Some(-1.0)), t(None), t(Some(-0.2))], 1e-6);
        assert_eq!(fw.tests, 3);
        let adj = fw.log10_p_adjusted.expect("tested");
        assert!((adj - (-6.2 + 3f64.log10())).abs() < 1e-12);
        assert_eq!(fw.verdict, Verdict::NotDetected); // 10^-6.2 · 3 > 1e-6
        assert_eq!(
            family_wise(&[t(Some(-7.0)), t(Some(-1.0))], 1e-6).verdict,
            Verdict::Detected
        );
        assert_eq!(family_wise(&[t(None)], 1e-6).verdict, Verdict::Inconclusive);
    }

    #[test]
    fn prompts_interleave_by_origin_and_refuse_bad_lines() {
        let dir = std::env::temp_dir().join(format!("tracemark-api-prompts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let harvest = dir.join("requests.jsonl");
        std::fs::write(
            &harvest,
            "{\"messages\": [{\"role\": \"user\", \"content\": \"q1\"}]}\n\n{\"prompt\": \"q2\"}\n",
        )
        .expect("write");
        let new = dir.join("new.txt");
        std::fs::write(&new, "# comment\nn1\nn2\nn3\n").expect("write");
        let p = load_prompts(None, Some(&harvest), Some(&new), None, None).expect("prompts");
        let origins: Vec<Origin> = p.iter().map(|p| p.origin).collect();
        use Origin::{Harvest as H, New as N};
        assert_eq!(origins, vec![H, N, H, N, N]);
        assert_eq!(p[2].prompt.as_deref(), Some("q2"));
        assert_eq!(
            load_prompts(None, Some(&harvest), Some(&new), None, Some(1))
                .expect("prompts")
                .len(),
            2
        );
        std::fs::write(&harvest, "{\"x\": 1}\n").expect("write");
        let e = load_prompts(None, Some(&harvest), None, None, None).expect_err("bad line");
        assert!(e.to_string().contains("line 1: needs \"messages\""), "{e}");
        std::fs::write(&harvest, "not json\n").expect("write");
        let e = load_prompts(None, Some(&harvest), None, None, None).expect_err("bad line");
        assert!(e.to_string().contains("line 1: not JSON"), "{e}");
        let e = load_prompts(None, None, None, None, None).expect_err("no prompts");
        assert!(e.to_string().contains("no prompts"), "{e}");
        // Texts to read: their own origin, after the others, and only as completion prompts.
        let read = dir.join("read.jsonl");
        std::fs::write(&read, "{\"prompt\": \"r1\"}\n{\"prompt\": \"r2\"}\n").expect("write");
        let p = load_prompts(None, None, Some(&new), Some(&read), None).expect("prompts");
        let origins: Vec<Origin> = p.iter().map(|p| p.origin).collect();
        assert_eq!(origins, vec![N, N, N, Origin::Read, Origin::Read]);
        std::fs::write(&read, "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}]}\n").expect("write");
        let e = load_prompts(None, None, None, Some(&read), None).expect_err("chat to read");
        assert!(e.to_string().contains("a text to read needs \"prompt\""), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_text_to_read_asks_for_its_echo() {
        use clap::Parser as _;
        let cli =
            super::super::Cli::try_parse_from(["tracemark", "radioactivity", "--key", "k", "--api", "http://x/v1"])
                .expect("parses");
        let super::super::Command::Radioactivity(r) = cli.command else {
            panic!("not radioactivity")
        };
        let args = *r.api;
        let client = Client {
            agent: ureq::Agent::config_builder().build().into(),
            base: "http://127.0.0.1:9/v1".into(),
            token: None,
            a: &args,
        };
        let p = Prompt {
            origin: Origin::Read,
            messages: None,
            prompt: Some("a text".into()),
        };
        let body = client.body(&p, 3);
        assert_eq!(body["echo"], json!(true));
        assert_eq!(body["max_tokens"], json!(1));
        assert_eq!(body["logprobs"], json!(5));
        assert!(client.endpoint(&p).ends_with("/completions") && !client.endpoint(&p).contains("chat"));
    }

    #[test]
    fn shifted_echo_log_probabilities_are_refused() {
        // Candidates whose best is the token itself: aligned.
        let ids: Vec<u32> = (0..40).map(|i| i % 7).collect();
        let aligned: Vec<Vec<(u32, f64)>> = ids.iter().map(|&t| vec![(t, -0.1), (99, -3.0)]).collect();
        let doc = LogprobDoc {
            prompt_ids: Vec::new(),
            ids: ids.clone(),
            top: aligned,
        };
        assert!(check_alignment(std::slice::from_ref(&doc)).is_ok());
        // The same lists one position late: the best is the next token.
        let mut shifted = doc.clone();
        shifted.top = (0..ids.len())
            .map(|i| vec![(ids.get(i + 1).copied().unwrap_or(99), -0.1), (99, -3.0)])
            .collect();
        let e = check_alignment(&[shifted]).expect_err("shifted");
        assert!(e.to_string().contains("shifted by one position"), "{e}");
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
