//! The detection service behind `tracemark serve`: an axum application on a
//! tokio runtime.
//!
//! What it defends, and how:
//! - **Keys** are loaded from files at start and never leave the process:
//!   responses, errors and logs carry key ids only.
//! - **API tokens** are stored as SHA-256 digests; a request without a known
//!   bearer token gets 401 before its body is read.
//! - **Rate limits** per token (a token bucket: `rate` a minute, `burst` at
//!   once; 429 with `Retry-After`). A public detector is an oracle: an
//!   attacker who can ask "is this watermarked?" without limit can learn the
//!   green lists from the answers (watermark stealing, Pang et al.; Jovanović
//!   et al.) or tune a paraphrase until the verdict flips. The limit bounds
//!   the queries per token; issuing tokens to known parties bounds the
//!   tokens.
//! - **Size limits** (413) and a **time limit** per request (503), and a
//!   bounded number of streaming sessions, so that no request can hold the
//!   service.
//! - **Logs** are JSON lines on standard error: method, path, status,
//!   latency, the token's name (never the token), sizes, SHA-256 digests,
//!   key ids and results; texts and ids only with `--log-texts`.

mod conn;
mod limits;
mod logs;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use axum::body::Body;
use axum::extract::{Path, Query, State as Extract};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracemark_core::{Key, SchemeConfig};
use tracemark_verifier::{
    sha256_hex, Dedup, DetectOptions, Detection, DetectionStream, Detector, Error, Keyring, KeyringDetection,
    KeyringDetector, Scanner, TextTokenizer, WindowOptions,
};

pub(crate) use conn::ConnLimits;
pub(crate) use limits::TokenTable;
use limits::{Admission, RateLimiter};
use logs::{account, ErrorCode, Sampler, ACCOUNT};

use crate::exit::Failure;

/// The OpenAPI description of the service, served at `/openapi.json`.
const OPENAPI: &str = include_str!("openapi.json");

/// Idle streaming sessions expire after this long.
const STREAM_IDLE: Duration = Duration::from_secs(600);

/// Tokens one streaming session may hold.
const STREAM_MAX_TOKENS: usize = 1_000_000;

/// The service's settings.
pub(crate) struct Config {
    pub(crate) scheme: SchemeConfig,
    pub(crate) vocab: usize,
    pub(crate) alpha: f64,
    pub(crate) dedup: Dedup,
    pub(crate) max_body: usize,
    pub(crate) timeout: Duration,
    /// How long a request body may take to arrive (408 after).
    pub(crate) body_timeout: Duration,
    /// Bytes of requests admitted at once, service-wide (503 at once above).
    pub(crate) max_inflight_bytes: usize,
    /// Requests of one API token in flight at once (429 at once above).
    pub(crate) token_concurrency: usize,
    /// Detections running at once (threads of the CPU pool).
    pub(crate) cpu_workers: usize,
    pub(crate) max_streams: usize,
    pub(crate) log_texts: bool,
}

/// A key the service tests with, and the label it is listed under.
pub(crate) struct ServedKey {
    pub(crate) label: String,
    pub(crate) key: Key,
}

/// One key's detectors: plain, with marks, with a window search, with both.
struct KeyDetectors {
    label: String,
    key_id: String,
    variants: [Detector; 4],
}

impl KeyDetectors {
    fn get(&self, window: bool, marks: bool) -> &Detector {
        &self.variants[usize::from(window) * 2 + usize::from(marks)]
    }
}

/// A streaming session.
struct Session {
    key: usize,
    owner: String,
    stream: DetectionStream,
    used: Instant,
}

/// What every request shares.
pub(crate) struct State {
    config: Config,
    keys: Vec<KeyDetectors>,
    keyring: Option<KeyringDetector>,
    tokenizer: Option<TextTokenizer>,
    tokens: TokenTable,
    limiter: RateLimiter,
    streams: Mutex<HashMap<String, Session>>,
    started: Instant,
    /// Log lines anyone can cause at will, counted past a few an interval.
    sampler: Sampler,
    /// Admission by cost: KiB of requests in flight, service-wide.
    inflight: Arc<Semaphore>,
    /// Requests in flight per API token (by name).
    per_token: HashMap<String, Arc<Semaphore>>,
    /// CPU slots: detections running at once.
    cpu: Arc<Semaphore>,
    /// CPU slots large requests may hold: one fewer than `cpu`, so a small request always finds one.
    cpu_large: Arc<Semaphore>,
}

/// A request whose body is larger than this is large: it runs on at most
/// `cpu_workers - 1` CPU slots.
const LARGE_REQUEST: usize = 64 << 10;

/// Requests without a known token, 429s and 503s for load: this many lines
/// a status and route in each `LOG_INTERVAL`, then one line with the count.
const LOG_PER_INTERVAL: u64 = 10;
const LOG_INTERVAL: Duration = Duration::from_secs(10);

impl State {
    /// Builds every detector once.
    pub(crate) fn new(
        config: Config,
        keys: Vec<ServedKey>,
        tokenizer: Option<TextTokenizer>,
        tokens: TokenTable,
    ) -> Result<Arc<Self>, Failure> {
        let options = |window: bool, marks: bool| DetectOptions {
            dedup: config.dedup,
            alpha: config.alpha,
            marks,
            window: window.then_some(WindowOptions { min_scored: 32 }),
            ..DetectOptions::default()
        };
        let mut built = Vec::new();
        let mut keyring = Keyring::new();
        for k in &keys {
            let make = |w, m| Detector::new(&k.key, &config.scheme, config.vocab, options(w, m));
            built.push(KeyDetectors {
                label: k.label.clone(),
                key_id: k.key.id().to_string(),
                variants: [
                    make(false, false)?,
                    make(false, true)?,
                    make(true, false)?,
                    make(true, true)?,
                ],
            });
            keyring.push(k.label.clone(), k.key.clone());
        }
        let keyring = (keys.len() > 1)
            .then(|| KeyringDetector::new(&keyring, &config.scheme, config.vocab, options(false, false)))
            .transpose()?;
        Ok(Arc::new(State {
            limiter: RateLimiter::new(&tokens),
            keys: built,
            keyring,
            tokenizer,
            streams: Mutex::new(HashMap::new()),
            started: Instant::now(),
            sampler: Sampler::new(LOG_INTERVAL, LOG_PER_INTERVAL),
            inflight: Arc::new(Semaphore::new(kib(config.max_inflight_bytes).max(kib(config.max_body)))),
            per_token: tokens
                .names()
                .map(|n| (n.to_string(), Arc::new(Semaphore::new(config.token_concurrency.max(1)))))
                .collect(),
            cpu: Arc::new(Semaphore::new(config.cpu_workers.max(1))),
            cpu_large: Arc::new(Semaphore::new(config.cpu_workers.saturating_sub(1).max(1))),
            config,
            tokens,
        }))
    }

    /// The index of the key `key_id` names, or the only key when none is named.
    fn key(&self, key_id: Option<&str>) -> Result<Option<usize>, ApiError> {
        match key_id {
            Some(id) => self
                .keys
                .iter()
                .position(|k| k.key_id == id || k.label == id)
                .map(Some)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::NOT_FOUND,
                        "unknown_key",
                        format!("no key {id:?} here: GET /v1/keys lists them"),
                    )
                }),
            None if self.keys.len() == 1 => Ok(Some(0)),
            None => Ok(None),
        }
    }
}

/// An error response: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::EmptyInput => "empty_input",
            Error::WrongTokenizer { .. } => "wrong_tokenizer",
            Error::InvalidUtf8 { .. } => "invalid_utf8",
            Error::Tokenizer { .. } => "tokenizer",
            _ => "unprocessable",
        };
        // The verifier's messages name positions and options, never key bytes.
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": { "code": self.code, "message": self.message } }));
        let mut r = (self.status, body).into_response();
        r.extensions_mut().insert(ErrorCode(self.code));
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if self.status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may never come: this connection is done.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tracemark\""),
            );
        }
        r
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The builds the service runs on: `threads` workers, until Ctrl-C or SIGTERM.
pub(crate) fn run(
    state: Arc<State>,
    listen: SocketAddr,
    threads: usize,
    mut limits: ConnLimits,
) -> std::io::Result<()> {
    init_logs();
    limits.max_connections = conn::connections_that_fit(limits.max_connections);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .max_blocking_threads(threads.max(1) * 2)
        .enable_all()
        .build()?;
    let limits = &limits;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let local = listener.local_addr()?;
        tracing::info!(
            event = "listening",
            address = %local,
            keys = state.keys.len(),
            tokens = state.tokens.len(),
            scheme = %state.config.scheme,
            max_connections = limits.max_connections,
            tool = tracemark_verifier::TOOL,
        );
        // The address on standard output, for scripts that asked for port 0.
        println!("listening on http://{local}");
        let flusher = Arc::clone(&state);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(LOG_INTERVAL);
            loop {
                every.tick().await;
                flusher.sampler.flush();
            }
        });
        conn::serve(listener, router(state), limits, shutdown()).await
    })?;
    // Detections still running past the shutdown deadline are not waited for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRACEMARK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .try_init();
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!(event = "shutdown");
}

/// The routes.
pub(crate) fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi))
        .route("/v1/keys", get(keys))
        .route("/v1/detect", post(detect))
        .route("/v1/scan", post(scan))
        .route("/v1/streams", post(stream_open))
        .route(
            "/v1/streams/{id}",
            post(stream_push).get(stream_get).delete(stream_close),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), access_log))
        .with_state(state)
}

/// Longest request path written to the log (unmatched paths are the client's own).
const LOGGED_PATH: usize = 120;

/// One line for every request: method, path, status, the token's name, bytes
/// in and out, cost, latency and outcome, with what the handler found.
/// Requests anyone can send at any rate are sampled (see [`Sampler`]).
async fn access_log(
    Extract(s): Extract<Arc<State>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = match request.extensions().get::<axum::extract::MatchedPath>() {
        Some(m) => m.as_str().to_string(),
        None => {
            let p = request.uri().path();
            let mut end = p.len().min(LOGGED_PATH);
            while !p.is_char_boundary(end) {
                end -= 1;
            }
            p[..end].to_string()
        }
    };
    let (response, a) = ACCOUNT
        .scope(std::cell::RefCell::new(logs::Account::default()), async move {
            let response = next.run(request).await;
            (response, ACCOUNT.with(|a| a.take()))
        })
        .await;
    let status = response.status().as_u16();
    let outcome = match response.extensions().get::<ErrorCode>() {
        Some(code) => code.0,
        None if status < 400 => "ok",
        None => "error",
    };
    let sampled = a.token.is_none() || status == 429 || outcome == "overloaded";
    if sampled && !s.sampler.admit(status, &path, a.token.as_deref()) {
        return response;
    }
    let bytes_out = axum::body::HttpBody::size_hint(response.body()).exact();
    let latency_us = started.elapsed().as_micros() as u64;
    let token = a.token.as_deref().unwrap_or("-");
    let event = a.event.unwrap_or("request");
    macro_rules! line {
        ($level:ident) => {
            tracing::$level!(
                event,
                method = %method,
                path = %path,
                status,
                token = %token,
                bytes_in = a.bytes_in,
                bytes_out,
                cost = a.cost,
                latency_us,
                outcome,
                key_id = a.key_id.as_deref(),
                verdict = a.verdict,
                log10_p = a.log10_p,
                sha256 = a.sha256.as_deref(),
                documents = a.documents,
                text = a.text.as_deref(),
            )
        };
    }
    if status >= 500 {
        line!(warn);
    } else {
        line!(info);
    }
    response
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint: GET /openapi.json describes the API",
    )
}

async fn health(Extract(s): Extract<Arc<State>>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "tool": tracemark_verifier::TOOL,
        "spec": tracemark_core::SPEC_VERSION,
        "keys": s.keys.len(),
        "uptime_s": s.started.elapsed().as_secs(),
    }))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Admits a request: a known token within its rate. Returns the token's name.
fn admit(s: &State, headers: &HeaderMap) -> ApiResult<String> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send an API token: Authorization: Bearer <token>",
        ));
    };
    let Some(entry) = s.tokens.lookup(token) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown API token",
        ));
    };
    account(|a| a.token = Some(entry.name.clone()));
    match s.limiter.admit(&entry.digest, Instant::now()) {
        Admission::Admitted => Ok(entry.name.clone()),
        Admission::Limited { retry_after } => {
            // Logged by the access log, counted past a few lines an interval.
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "this API token's limit ({} requests a minute) is reached; retry after {retry_after} s",
                    entry.per_minute
                ),
            );
            e.retry_after = Some(retry_after);
            Err(e)
        }
    }
}

/// The body, up to the size limit (413 above it), within the body timeout (408 after it).
async fn read_body(s: &State, body: Body) -> ApiResult<axum::body::Bytes> {
    let read = axum::body::to_bytes(body, s.config.max_body);
    match tokio::time::timeout(s.config.body_timeout, read).await {
        Ok(Ok(bytes)) => {
            account(|a| {
                a.bytes_in = bytes.len() as u64;
                a.cost = a.cost.max(bytes.len() as u64);
            });
            Ok(bytes)
        }
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the request body is larger than this service's limit of {} bytes",
                s.config.max_body
            ),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the request body did not arrive within this service's limit of {} s",
                s.config.body_timeout.as_secs()
            ),
        )),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not the JSON this endpoint takes: {e}")))
}

/// Whole KiB, rounded up: the unit of the in-flight cost semaphore.
fn kib(bytes: usize) -> usize {
    bytes.div_ceil(1024).max(1)
}

/// A request admitted by cost: holds its token's concurrency slot and its
/// share of the service's in-flight bytes until it is dropped.
struct Ticket {
    deadline: Instant,
    large: bool,
    _token: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

/// Admits a request with a body by cost, at once or not at all: its
/// token's concurrency (429) and the service's in-flight bytes (503), both
/// with `Retry-After`. The cost is the declared `Content-Length`, or the
/// body limit when none is declared.
fn reserve(s: &State, who: &str, headers: &HeaderMap, started: Instant) -> ApiResult<Ticket> {
    let busy = |status, code, message: String| {
        let mut e = ApiError::new(status, code, message);
        e.retry_after = Some(1);
        e
    };
    let token = s
        .per_token
        .get(who)
        .and_then(|sem| Arc::clone(sem).try_acquire_owned().ok())
        .ok_or_else(|| {
            busy(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_concurrent",
                format!(
                    "this API token has {} requests in flight, its limit: wait for one to finish",
                    s.config.token_concurrency
                ),
            )
        })?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(s.config.max_body)
        .min(s.config.max_body);
    let units = u32::try_from(kib(declared)).unwrap_or(u32::MAX);
    let bytes = Arc::clone(&s.inflight).try_acquire_many_owned(units).map_err(|_| {
        busy(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "this service is at its limit of request bytes in flight: retry in a second".into(),
        )
    })?;
    account(|a| a.cost = declared as u64);
    Ok(Ticket {
        deadline: started + s.config.timeout,
        large: declared > LARGE_REQUEST,
        _token: token,
        _bytes: bytes,
    })
}

fn timed_out(s: &State) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "timeout",
        format!(
            "the request took longer than this service's limit of {} s",
            s.config.timeout.as_secs()
        ),
    )
}

/// Runs `work` on the CPU pool (a slot of `--cpu-workers`; large requests
/// only on all but one) before the ticket's deadline. The slot is held
/// until the work ends, also when its request has timed out; `work` gets
/// the deadline to stop at. A result past the deadline is a 503, never a 200.
async fn blocking<T: Send + 'static>(
    s: &State,
    ticket: &Ticket,
    work: impl FnOnce(Instant) -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    let deadline = ticket.deadline;
    let until = tokio::time::Instant::from_std(deadline);
    let large = if ticket.large {
        match tokio::time::timeout_at(until, Arc::clone(&s.cpu_large).acquire_owned()).await {
            Ok(Ok(p)) => Some(p),
            _ => return Err(timed_out(s)),
        }
    } else {
        None
    };
    let Ok(Ok(slot)) = tokio::time::timeout_at(until, Arc::clone(&s.cpu).acquire_owned()).await else {
        return Err(timed_out(s));
    };
    let task = tokio::task::spawn_blocking(move || {
        let _slots = (slot, large);
        if Instant::now() >= deadline {
            return None;
        }
        Some(work(deadline))
    });
    match tokio::time::timeout_at(until, task).await {
        Ok(Ok(Some(result))) if Instant::now() < deadline => result,
        Ok(Ok(_)) | Err(_) => Err(timed_out(s)),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the detection failed",
        )),
    }
}

/// A corpus that ends in an error at the deadline: a scan stops between documents.
struct UntilDeadline<R> {
    inner: R,
    deadline: Instant,
}

impl<R: std::io::Read> std::io::Read for UntilDeadline<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if Instant::now() >= self.deadline {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline"));
        }
        self.inner.read(buf)
    }
}

impl<R: std::io::BufRead> std::io::BufRead for UntilDeadline<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if Instant::now() >= self.deadline {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline"));
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
    }
}

#[derive(Serialize)]
struct KeyInfo<'a> {
    key_id: &'a str,
    label: &'a str,
    scheme: String,
}

async fn keys(Extract(s): Extract<Arc<State>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    admit(&s, &headers)?;
    let keys: Vec<KeyInfo<'_>> = s
        .keys
        .iter()
        .map(|k| KeyInfo {
            key_id: &k.key_id,
            label: &k.label,
            scheme: s.config.scheme.to_string(),
        })
        .collect();
    Ok(Json(
        json!({ "keys": keys, "vocab_size": s.config.vocab, "text": s.tokenizer.is_some() }),
    ))
}

/// A detection request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DetectRequest {
    text: Option<String>,
    prompt: Option<String>,
    ids: Option<Vec<u32>>,
    prompt_ids: Option<Vec<u32>>,
    key_id: Option<String>,
    #[serde(default)]
    window: bool,
    #[serde(default)]
    marks: bool,
}

/// What a detection request tests.
enum Subject {
    Text { text: String, prompt: Option<String> },
    Ids { ids: Vec<u32>, prompt: Vec<u32> },
}

impl Subject {
    fn of(r: &mut DetectRequest) -> ApiResult<Self> {
        match (r.text.take(), r.ids.take()) {
            (Some(text), None) => {
                if r.prompt_ids.is_some() {
                    return Err(ApiError::bad_request("with text, give the prompt as text (\"prompt\")"));
                }
                Ok(Subject::Text {
                    text,
                    prompt: r.prompt.take(),
                })
            }
            (None, Some(ids)) => {
                if r.prompt.is_some() {
                    return Err(ApiError::bad_request(
                        "with ids, give the prompt as ids (\"prompt_ids\")",
                    ));
                }
                Ok(Subject::Ids {
                    ids,
                    prompt: r.prompt_ids.take().unwrap_or_default(),
                })
            }
            _ => Err(ApiError::bad_request("give exactly one of \"text\" or \"ids\"")),
        }
    }

    fn sha256(&self) -> String {
        match self {
            Subject::Text { text, .. } => sha256_hex(text.as_bytes()),
            Subject::Ids { ids, .. } => sha256_hex(&ids.iter().flat_map(|i| i.to_le_bytes()).collect::<Vec<u8>>()),
        }
    }

    fn detect(&self, d: &Detector, tokenizer: Option<&TextTokenizer>) -> Result<Detection, Error> {
        match self {
            Subject::Text { text, prompt } => {
                let tokenizer = tokenizer.ok_or_else(|| Error::Tokenizer {
                    message: "this service was started without --tokenizer: send ids".into(),
                })?;
                d.detect_text(tokenizer, prompt.as_deref(), text)
            }
            Subject::Ids { ids, prompt } => d.detect_ids(prompt, ids),
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum DetectResponse {
    Single(Detection),
    Keyring(KeyringDetection),
}

async fn detect(Extract(s): Extract<Arc<State>>, headers: HeaderMap, body: Body) -> ApiResult<Response> {
    let started = Instant::now();
    let who = admit(&s, &headers)?;
    let ticket = reserve(&s, &who, &headers, started)?;
    let bytes = read_body(&s, body).await?;
    let mut request: DetectRequest = parse_json(&bytes)?;
    let subject = Subject::of(&mut request)?;
    if matches!(subject, Subject::Text { .. }) && s.tokenizer.is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "tokenizer",
            "this service was started without --tokenizer: send ids",
        ));
    }
    let key = s.key(request.key_id.as_deref())?;
    let (window, marks) = (request.window, request.marks);
    if key.is_none() && (window || marks) {
        return Err(ApiError::bad_request(
            "window and marks are for one key: name it with \"key_id\"",
        ));
    }
    let digest_logged = subject.sha256();
    let logged = s.config.log_texts.then(|| match &subject {
        Subject::Text { text, .. } => text.clone(),
        Subject::Ids { ids, .. } => format!("{ids:?}"),
    });
    let state = Arc::clone(&s);
    let response = blocking(&s, &ticket, move |_deadline| {
        let tokenizer = state.tokenizer.as_ref();
        Ok(match key {
            Some(i) => DetectResponse::Single(subject.detect(state.keys[i].get(window, marks), tokenizer)?),
            None => match &state.keyring {
                Some(kd) => DetectResponse::Keyring(kd.detect_with(|d| subject.detect(d, tokenizer))?),
                None => return Err(ApiError::bad_request("no key to test")),
            },
        })
    })
    .await?;
    let (verdict, log10_p, key_id) = match &response {
        DetectResponse::Single(d) => (verdict_name(d.verdict), d.verdict_log10_p(), d.key_id.to_string()),
        DetectResponse::Keyring(k) => ("keyring", k.best.and_then(|b| k.keys[b].log10_p()), "keyring".into()),
    };
    account(|a| {
        a.event = Some("detect");
        a.key_id = Some(key_id);
        a.verdict = Some(verdict);
        a.log10_p = log10_p;
        a.sha256 = Some(digest_logged);
        a.text = logged;
    });
    Ok(Json(response).into_response())
}

fn verdict_name(v: tracemark_verifier::Verdict) -> &'static str {
    match v {
        tracemark_verifier::Verdict::Detected => "detected",
        tracemark_verifier::Verdict::NotDetected => "not_detected",
        _ => "inconclusive",
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanQuery {
    key_id: Option<String>,
}

async fn scan(
    Extract(s): Extract<Arc<State>>,
    q: Result<Query<ScanQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let started = Instant::now();
    let who = admit(&s, &headers)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let ticket = reserve(&s, &who, &headers, started)?;
    let bytes = read_body(&s, body).await?;
    let Some(key) = s.key(q.key_id.as_deref())? else {
        return Err(ApiError::bad_request("a scan tests one key: name it with ?key_id="));
    };
    let state = Arc::clone(&s);
    let (summary, documents) = blocking(&s, &ticket, move |deadline| {
        let detector = state.keys[key].get(false, false);
        let scanner = Scanner::new(detector, state.tokenizer.as_ref()).jobs(1);
        let mut documents = Vec::new();
        let corpus = UntilDeadline {
            inner: std::io::Cursor::new(&bytes[..]),
            deadline,
        };
        let summary = scanner.scan(corpus, |d| documents.push(d.clone()));
        if Instant::now() >= deadline {
            // Stopped between documents: the blocking() caller answers 503.
            return Err(ApiError::bad_request("deadline"));
        }
        let summary = summary?;
        Ok((summary, documents))
    })
    .await?;
    account(|a| {
        a.event = Some("scan");
        a.key_id = Some(s.keys[key].key_id.clone());
        a.verdict = Some(verdict_name(summary.aggregate.verdict));
        a.documents = Some(summary.documents as u64);
    });
    Ok(Json(json!({ "summary": summary, "documents": documents })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamOpen {
    key_id: Option<String>,
    #[serde(default)]
    prompt_ids: Vec<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamPush {
    ids: Vec<u32>,
}

/// A running result of a streaming session.
fn running(id: &str, d: Option<&Detector>, stream: &DetectionStream) -> ApiResult<Value> {
    let report = match (d, stream.is_empty()) {
        (Some(d), false) => Some(d.stream_report(stream)?),
        _ => None,
    };
    Ok(json!({
        "stream_id": id,
        "tokens": stream.len(),
        "scored": stream.scored(),
        "report": report,
    }))
}

fn random_id() -> ApiResult<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "no randomness for a session id",
        )
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

async fn stream_open(Extract(s): Extract<Arc<State>>, headers: HeaderMap, body: Body) -> ApiResult<Response> {
    let who = admit(&s, &headers)?;
    let bytes = read_body(&s, body).await?;
    let request: StreamOpen = parse_json(&bytes)?;
    let Some(key) = s.key(request.key_id.as_deref())? else {
        return Err(ApiError::bad_request("a stream tests one key: name it with \"key_id\""));
    };
    let detector = s.keys[key].get(false, false);
    let stream = detector.stream(&request.prompt_ids)?;
    let id = random_id()?;
    let now = Instant::now();
    let mut streams = s.streams.lock().map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "session table unavailable",
        )
    })?;
    streams.retain(|_, v| now.duration_since(v.used) < STREAM_IDLE);
    if streams.len() >= s.config.max_streams {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            "this service holds as many streaming sessions as it may: close one (DELETE) or wait",
        ));
    }
    let value = running(&id, None, &stream)?;
    streams.insert(
        id.clone(),
        Session {
            key,
            owner: who.clone(),
            stream,
            used: now,
        },
    );
    account(|a| {
        a.event = Some("stream_open");
        a.key_id = Some(s.keys[key].key_id.clone());
    });
    Ok((StatusCode::CREATED, Json(value)).into_response())
}

/// Runs `f` on the session `id` of the caller `who`.
fn with_session<T>(s: &State, id: &str, who: &str, f: impl FnOnce(&mut Session) -> ApiResult<T>) -> ApiResult<T> {
    let mut streams = s.streams.lock().map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "session table unavailable",
        )
    })?;
    match streams.get_mut(id) {
        Some(session) if session.owner == who => {
            session.used = Instant::now();
            f(session)
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_stream",
            "no such streaming session (it may have expired)",
        )),
    }
}

async fn stream_push(
    Extract(s): Extract<Arc<State>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let who = admit(&s, &headers)?;
    let bytes = read_body(&s, body).await?;
    let request: StreamPush = parse_json(&bytes)?;
    let value = with_session(&s, &id, &who, |session| {
        if session.stream.len() + request.ids.len() > STREAM_MAX_TOKENS {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("a streaming session holds at most {STREAM_MAX_TOKENS} tokens"),
            ));
        }
        let d = s.keys[session.key].get(false, false);
        d.push(&mut session.stream, &request.ids)?;
        running(&id, Some(d), &session.stream)
    })?;
    Ok(Json(value).into_response())
}

/// The running report of the caller's session `id`.
fn current(s: &State, id: &str, who: &str) -> ApiResult<Value> {
    with_session(s, id, who, |session| {
        running(id, Some(s.keys[session.key].get(false, false)), &session.stream)
    })
}

async fn stream_get(
    Extract(s): Extract<Arc<State>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = admit(&s, &headers)?;
    let value = current(&s, &id, &who)?;
    Ok(Json(value).into_response())
}

async fn stream_close(
    Extract(s): Extract<Arc<State>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let who = admit(&s, &headers)?;
    let value = current(&s, &id, &who)?;
    if let Ok(mut streams) = s.streams.lock() {
        streams.remove(&id);
    }
    Ok(Json(value).into_response())
}
