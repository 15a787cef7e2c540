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
//! - **Size limits** (413) and a **time limit** per request (503), and
//!   streaming sessions bounded by number and by memory (per session, per
//!   token, in all), so that no request can hold the service.
//! - **Responses** are at most `RESPONSE_FACTOR` times their request plus
//!   `RESPONSE_BASE` bytes: past it, long strings are cut, and marks and a
//!   scan's per-document results past the bound are counted, not listed.
//! - **Logs** are JSON lines on standard error: method, path, status,
//!   latency, the token's name (never the token), sizes, SHA-256 digests,
//!   key ids and results; texts and ids only with `--log-texts`.

mod conn;
mod limits;
mod logs;
mod memory;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
use tracemark_candle::embed::Embedder;
use tracemark_core::{Key, SchemeConfig, Semantic};
use tracemark_verifier::internal::sha256_hex;
use tracemark_verifier::serving::SchemeSource;
use tracemark_verifier::text::Deadline;
use tracemark_verifier::{
    Dedup, DetectOptions, Detection, DetectionStream, Detector, Error, Keyring, KeyringDetection, KeyringDetector,
    Scanner, TextTokenizer, WindowOptions,
};

pub(crate) use conn::ConnLimits;
use limits::{Admission, Budget, RateLimiter};
pub(crate) use limits::{Budgets, TokenTable};
use logs::{account, ErrorCode, Sampler, ACCOUNT};

use crate::exit::Failure;
use crate::semantic::{semantic_layer, LayerError};

/// The OpenAPI description of the service, served at `/openapi.json`.
const OPENAPI: &str = include_str!("openapi.json");

/// Idle streaming sessions expire after this long.
const STREAM_IDLE: Duration = Duration::from_secs(600);

/// Tokens one streaming session may hold, whatever its memory budget.
const STREAM_MAX_TOKENS: usize = 1_000_000;

/// Bytes a streaming session is charged for each token it holds (prompt and
/// completion): an upper bound on what it keeps, measured on this build (the
/// ids, 4 bytes, and a scored observation, 32, each doubled for the vectors'
/// spare capacity; its entry in the deduplication set, a 16-byte slot at a
/// load between 1/4 and 1/2, so 32 to 64 bytes: 136 at most), so that RSS
/// stays under the budget (`make test-serve-abuse` measures about 80 bytes
/// a token of RSS).
pub(crate) const STREAM_BYTES_PER_TOKEN: usize = 144;

/// Bytes a streaming session is charged when it opens (its table entry,
/// id, owner and empty state).
const STREAM_BASE_BYTES: usize = 4 << 10;

/// A response is at most this many times its request's body...
pub(crate) const RESPONSE_FACTOR: usize = 4;
/// ... plus this many bytes.
pub(crate) const RESPONSE_BASE: usize = 1 << 20;
/// Strings of a response longer than this (a canonicalisation change's
/// `from` and `to` code points) are cut to `STRING_KEPT` bytes.
const LONG_STRING: usize = 1024;
const STRING_KEPT: usize = 256;

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
    /// Memory all streaming sessions may hold, in bytes (503 past it).
    pub(crate) stream_memory: usize,
    /// Memory one streaming session may hold, in bytes (413 past it).
    pub(crate) stream_session_memory: usize,
    /// Streaming sessions one API token may hold (429 past it).
    pub(crate) token_streams: usize,
    /// Memory the streaming sessions of one API token may hold, in bytes (429 past it).
    pub(crate) token_stream_memory: usize,
    pub(crate) log_texts: bool,
}

/// A key the service tests with, the label it is listed under and where
/// its scheme came from (reported with each detection, as the CLI does).
pub(crate) struct ServedKey {
    pub(crate) label: String,
    pub(crate) key: Key,
    pub(crate) scheme_source: SchemeSource,
}

/// The semantic layer the service offers (`--semantic`): each served key's
/// scheme, in the order of the keys, and the sentence embedder, loaded once.
pub(crate) struct SemanticLayer {
    pub(crate) schemes: Vec<Semantic>,
    pub(crate) embedder: Embedder,
}

/// One key's detectors: plain, with marks, with a window search, with both.
struct KeyDetectors {
    label: String,
    key_id: String,
    scheme_source: SchemeSource,
    variants: [Detector; 4],
}

impl KeyDetectors {
    fn get(&self, window: bool, marks: bool) -> &Detector {
        &self.variants[usize::from(window) * 2 + usize::from(marks)]
    }
}

/// A streaming session: who owns it and which key it tests, outside its
/// lock; its state behind a lock of its own (the table's lock is held only
/// to find, add or remove a session, never while one is scored).
struct Session {
    key: usize,
    owner: String,
    /// Milliseconds since the service started, at its last use.
    used: AtomicU64,
    state: Arc<tokio::sync::Mutex<SessionState>>,
}

struct SessionState {
    stream: DetectionStream,
    charge: Charge,
}

/// Bytes of the streaming budgets (the service's and a token's) a session
/// holds; given back when it is dropped (closed, expired, or the service stops).
struct Charge {
    all: Arc<AtomicUsize>,
    token: Arc<AtomicUsize>,
    bytes: usize,
}

/// Which streaming budget a charge would pass.
enum Over {
    Session,
    Token,
    All,
}

impl Charge {
    /// `more` bytes, if the session, its token and the service stay within their budgets.
    fn grow(&mut self, more: usize, c: &Config) -> Result<(), Over> {
        if self.bytes + more > c.stream_session_memory {
            return Err(Over::Session);
        }
        let take = |pool: &AtomicUsize, limit: usize| {
            pool.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held + more <= limit).then_some(held + more)
            })
            .is_ok()
        };
        if !take(&self.token, c.token_stream_memory) {
            return Err(Over::Token);
        }
        if !take(&self.all, c.stream_memory) {
            self.token.fetch_sub(more, Ordering::AcqRel);
            return Err(Over::All);
        }
        self.bytes += more;
        Ok(())
    }

    fn shrink(&mut self, less: usize) {
        let less = less.min(self.bytes);
        self.all.fetch_sub(less, Ordering::AcqRel);
        self.token.fetch_sub(less, Ordering::AcqRel);
        self.bytes -= less;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.shrink(self.bytes);
    }
}

/// What every request shares.
pub(crate) struct State {
    config: Config,
    keys: Vec<KeyDetectors>,
    keyring: Option<KeyringDetector>,
    tokenizer: Option<TextTokenizer>,
    semantic: Option<SemanticLayer>,
    tokens: TokenTable,
    limiter: RateLimiter,
    streams: Mutex<HashMap<String, Arc<Session>>>,
    /// Bytes charged to every streaming session.
    stream_bytes: Arc<AtomicUsize>,
    /// Bytes charged to the streaming sessions of each API token (by name).
    token_stream_bytes: HashMap<String, Arc<AtomicUsize>>,
    /// When freed memory is given back to the system.
    trim: Arc<memory::Trim>,
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

/// Bytes of a scan's response kept for its summary (the aggregate detection,
/// long strings cut): per-document results get the rest of the bound.
const SCAN_SUMMARY_RESERVE: usize = 64 << 10;

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
        semantic: Option<SemanticLayer>,
    ) -> Result<Arc<Self>, Failure> {
        let options = |window: bool, marks: bool| DetectOptions {
            dedup: config.dedup,
            alpha: config.alpha,
            marks,
            window: window.then_some(WindowOptions::default()),
            ..DetectOptions::default()
        };
        let mut built = Vec::new();
        let mut keyring = Keyring::new();
        for k in &keys {
            let make = |w, m| Detector::new(&k.key, &config.scheme, config.vocab, options(w, m));
            built.push(KeyDetectors {
                label: k.label.clone(),
                key_id: k.key.id().to_string(),
                scheme_source: k.scheme_source.clone(),
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
            limiter: RateLimiter::new(&tokens, config.max_body),
            keys: built,
            keyring,
            tokenizer,
            semantic,
            streams: Mutex::new(HashMap::new()),
            stream_bytes: Arc::new(AtomicUsize::new(0)),
            token_stream_bytes: tokens
                .names()
                .map(|n| (n.to_string(), Arc::new(AtomicUsize::new(0))))
                .collect(),
            trim: Arc::new(memory::Trim::new()),
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

    /// Drops the streaming sessions idle for `STREAM_IDLE` (their memory goes back to the budgets).
    fn expire_streams(&self) {
        let now = self.now_ms();
        let idle = STREAM_IDLE.as_millis() as u64;
        let expired: Vec<Arc<Session>> = match self.streams.lock() {
            Ok(mut streams) => {
                let ids: Vec<String> = streams
                    .iter()
                    .filter(|(_, v)| now.saturating_sub(v.used.load(Ordering::Acquire)) >= idle)
                    .map(|(k, _)| k.clone())
                    .collect();
                ids.iter().filter_map(|id| streams.remove(id)).collect()
            }
            Err(_) => Vec::new(),
        };
        if !expired.is_empty() {
            tracing::info!(event = "streams_expired", sessions = expired.len());
            self.trim.soon();
        }
    }

    /// Milliseconds since the service started.
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// A connection closed by hyper before a request reached the routes
    /// (431, a header timeout, a malformed head): logged like a request
    /// without a token, sampled.
    fn connection_closed(&self, status: u16, outcome: &'static str) {
        if self.sampler.admit(status, "-", None) {
            tracing::info!(
                event = "connection_closed",
                method = "-",
                path = "-",
                status,
                token = "-",
                outcome
            );
        }
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
        if matches!(e, Error::DeadlineExceeded) {
            // Work stopped at the request's deadline: the 503 of `timed_out`.
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "the request took longer than this service's time limit",
            );
        }
        if matches!(e, Error::UncutRun { .. }) {
            // Too long to tokenise under the time limit: a size the client can change.
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "uncut_run", e.to_string());
        }
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
    memory::limit_arenas();
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
        let keeper = Arc::clone(&state);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                keeper.expire_streams();
                if keeper.trim.due() {
                    // Off the async workers: trimming walks the allocator's arenas.
                    let _ = tokio::task::spawn_blocking(memory::give_back).await;
                }
            }
        });
        let sampler = Arc::clone(&state);
        let on_close = move |status: u16, outcome: &'static str| sampler.connection_closed(status, outcome);
        conn::serve(listener, router(state), limits, on_close, shutdown()).await
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
                truncated = a.truncated,
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

/// The API token of an admitted request: its name (logged) and digest (its budgets).
struct Who {
    name: String,
    digest: String,
}

/// Admits a request: a known token within its rate of requests and its
/// budget of tokens scored.
fn admit(s: &State, headers: &HeaderMap) -> ApiResult<Who> {
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
        Ok(()) => Ok(Who {
            name: entry.name.clone(),
            digest: entry.digest.clone(),
        }),
        Err((budget, retry_after)) => {
            // Logged by the access log, counted past a few lines an interval.
            let limit = match budget {
                Budget::Scored => format!("{} tokens scored a minute", entry.scored_per_minute),
                Budget::Requests => format!("{} requests a minute", entry.per_minute),
            };
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("this API token's limit ({limit}) is reached; retry after {retry_after} s"),
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

/// The cost of a request: its declared `Content-Length`, or the body limit
/// when none is declared.
fn declared(s: &State, headers: &HeaderMap) -> usize {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(s.config.max_body)
        .min(s.config.max_body)
}

/// Admits a request by cost (`declared` bytes), at once or not at all: its
/// token's concurrency and budget of bytes (429) and the service's in-flight
/// bytes (503), all with `Retry-After`.
fn reserve(s: &State, who: &Who, declared: usize, started: Instant) -> ApiResult<Ticket> {
    let busy = |status, code, message: String| {
        let mut e = ApiError::new(status, code, message);
        e.retry_after = Some(1);
        e
    };
    let token = s
        .per_token
        .get(&who.name)
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
    if let Admission::Limited { retry_after } = s.limiter.take_bytes(&who.digest, declared as u64, Instant::now()) {
        let mut e = busy(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "this API token's budget of request bytes ({} a minute) is spent; retry after {retry_after} s",
                s.tokens.lookup_digest(&who.digest).map_or(0, |e| e.bytes_per_minute)
            ),
        );
        e.retry_after = Some(retry_after);
        return Err(e);
    }
    let units = u32::try_from(kib(declared)).unwrap_or(u32::MAX);
    let bytes = Arc::clone(&s.inflight).try_acquire_many_owned(units).map_err(|_| {
        busy(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "this service is at its limit of request bytes in flight: retry in a second".into(),
        )
    })?;
    account(|a| a.cost = declared as u64);
    let large = declared > LARGE_REQUEST;
    if large {
        s.trim.soon();
    }
    Ok(Ticket {
        deadline: started + s.config.timeout,
        large,
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
    let trim = ticket.large.then(|| Arc::clone(&s.trim));
    let task = tokio::task::spawn_blocking(move || {
        let _slots = (slot, large);
        if Instant::now() >= deadline {
            return None;
        }
        let out = work(deadline);
        if let Some(t) = trim {
            // What the work freed goes back to the system within a second or so.
            t.soon();
        }
        Some(out)
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
    /// Also test the semantic layer (text, one key, a service started with --semantic).
    #[serde(default)]
    semantic: bool,
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

    /// Detection, stopped at `deadline` (canonicalisation, tokenisation and
    /// scoring check it as they go).
    fn detect(&self, d: &Detector, tokenizer: Option<&TextTokenizer>, deadline: Deadline) -> Result<Detection, Error> {
        match self {
            Subject::Text { text, prompt } => {
                let tokenizer = tokenizer.ok_or_else(|| Error::Tokenizer {
                    message: "this service was started without --tokenizer: send ids".into(),
                })?;
                d.detect_text_until(tokenizer, prompt.as_deref(), text, deadline)
            }
            Subject::Ids { ids, prompt } => d.detect_ids_until(prompt, ids, deadline),
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
    let ticket = reserve(&s, &who, declared(&s, &headers), started)?;
    let bytes = read_body(&s, body).await?;
    let request_len = bytes.len();
    let mut request: DetectRequest = parse_json(&bytes)?;
    drop(bytes);
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
    if request.semantic {
        if s.semantic.is_none() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "semantic",
                "this service was started without --semantic",
            ));
        }
        if !matches!(subject, Subject::Text { .. }) {
            return Err(ApiError::bad_request(
                "the semantic layer tests text: send \"text\", not ids",
            ));
        }
        if key.is_none() {
            return Err(ApiError::bad_request(
                "the semantic layer is for one key: name it with \"key_id\"",
            ));
        }
    }
    let semantic = request.semantic;
    let digest_logged = subject.sha256();
    let logged = s.config.log_texts.then(|| match &subject {
        Subject::Text { text, .. } => text.clone(),
        Subject::Ids { ids, .. } => format!("{ids:?}"),
    });
    let state = Arc::clone(&s);
    let response = blocking(&s, &ticket, move |deadline| {
        let deadline = Deadline::at(deadline);
        let tokenizer = state.tokenizer.as_ref();
        Ok(match key {
            Some(i) => {
                let detector = state.keys[i].get(window, marks);
                let mut d = subject.detect(detector, tokenizer, deadline)?;
                d.scheme_source = Some(state.keys[i].scheme_source.clone());
                if let (true, Some(layer), Subject::Text { text, .. }) = (semantic, &state.semantic, &subject) {
                    semantic_layer(&mut d, detector, &layer.schemes[i], &layer.embedder, text, deadline).map_err(
                        |e| match e {
                            LayerError::Verifier(e) => ApiError::from(e),
                            LayerError::Embedder(m) => ApiError::new(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "embedder",
                                format!("the sentence embedder failed: {m}"),
                            ),
                        },
                    )?;
                }
                DetectResponse::Single(d)
            }
            None => match &state.keyring {
                Some(kd) => {
                    let mut k = kd.detect_with(|d| subject.detect(d, tokenizer, deadline))?;
                    if let (Some(b), Some(best)) = (k.best, k.best_detection.as_mut()) {
                        best.scheme_source = state.keys.get(b).map(|key| key.scheme_source.clone());
                    }
                    DetectResponse::Keyring(k)
                }
                None => return Err(ApiError::bad_request("no key to test")),
            },
        })
    })
    .await?;
    let (verdict, log10_p, key_id, scored) = match &response {
        DetectResponse::Single(d) => (
            verdict_name(d.verdict),
            d.verdict_log10_p(),
            d.key_id.to_string(),
            d.counts.scored,
        ),
        DetectResponse::Keyring(k) => (
            "keyring",
            k.best.and_then(|b| k.keys[b].log10_p()),
            "keyring".into(),
            k.best_detection.as_ref().map_or(0, |d| d.counts.scored),
        ),
    };
    s.limiter.charge_scored(&who.digest, scored as u64, Instant::now());
    account(|a| {
        a.event = Some("detect");
        a.key_id = Some(key_id);
        a.verdict = Some(verdict);
        a.log10_p = log10_p;
        a.sha256 = Some(digest_logged);
        a.text = logged;
    });
    // Written once; only a response past its bound is taken apart and cut.
    let limit = response_limit(request_len);
    let written = serde_json::to_vec(&response).map_err(|_| internal("the response"))?;
    if written.len() <= limit {
        return Ok(([(header::CONTENT_TYPE, "application/json")], written).into_response());
    }
    drop(written);
    let mut value = serde_json::to_value(&response).map_err(|_| internal("the response"))?;
    drop(response);
    bound_detection(&mut value, limit);
    Ok(Json(value).into_response())
}

fn internal(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("{what} could not be written"),
    )
}

/// The most bytes a response to a request body of `request` bytes may hold.
fn response_limit(request: usize) -> usize {
    RESPONSE_FACTOR.saturating_mul(request).saturating_add(RESPONSE_BASE)
}

/// Bytes of `v` as JSON.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// Cuts every string of `v` longer than `LONG_STRING` bytes to `STRING_KEPT`,
/// saying how much was left out (a canonicalisation change's code points can
/// be as long as the text: `U+0301 ` for each of a million accents).
fn cut_long_strings(v: &mut Value) {
    match v {
        Value::String(text) if text.len() > LONG_STRING => {
            let mut end = STRING_KEPT;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let more = text.len() - end;
            text.truncate(end);
            text.push_str(&format!(" … ({more} bytes more)"));
        }
        Value::Array(items) => items.iter_mut().for_each(cut_long_strings),
        Value::Object(fields) => fields.values_mut().for_each(cut_long_strings),
        _ => {}
    }
}

/// Bounds a detection's JSON that is over `limit` bytes: long strings cut,
/// then marks past the bound left out and counted in `marks_omitted`.
fn bound_detection(v: &mut Value, limit: usize) {
    cut_long_strings(v);
    if json_len(v) <= limit {
        return;
    }
    let Some(Value::Array(marks)) = v.get_mut("marks").map(std::mem::take) else {
        return;
    };
    let total = marks.len();
    v["marks"] = Value::Array(Vec::new());
    let mut used = json_len(v) + ",\"marks_omitted\":".len() + 20;
    let mut kept = Vec::new();
    for m in marks {
        let size = json_len(&m) + 1;
        if used + size > limit {
            break;
        }
        used += size;
        kept.push(m);
    }
    let omitted = total - kept.len();
    v["marks"] = Value::Array(kept);
    v["marks_omitted"] = json!(omitted);
    account(|a| a.truncated = Some(omitted as u64));
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
    let ticket = reserve(&s, &who, declared(&s, &headers), started)?;
    let bytes = read_body(&s, body).await?;
    // Per-document results fill what the bound leaves after the summary; the rest are counted.
    let budget = response_limit(bytes.len()).saturating_sub(SCAN_SUMMARY_RESERVE);
    let Some(key) = s.key(q.key_id.as_deref())? else {
        return Err(ApiError::bad_request("a scan tests one key: name it with ?key_id="));
    };
    let state = Arc::clone(&s);
    let (summary, documents, omitted) = blocking(&s, &ticket, move |deadline| {
        let detector = state.keys[key].get(false, false);
        let scanner = Scanner::new(detector, state.tokenizer.as_ref())
            .jobs(1)
            .deadline(Deadline::at(deadline));
        let mut documents = Vec::new();
        let (mut used, mut omitted) = (0usize, 0usize);
        let corpus = UntilDeadline {
            inner: std::io::Cursor::new(&bytes[..]),
            deadline,
        };
        let summary = scanner.scan(corpus, |d| {
            if omitted > 0 {
                omitted += 1;
                return;
            }
            let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
            cut_long_strings(&mut v);
            let size = json_len(&v) + 1;
            if used + size > budget {
                omitted += 1;
            } else {
                used += size;
                documents.push(v);
            }
        });
        if Instant::now() >= deadline {
            // Stopped between documents: the blocking() caller answers 503.
            return Err(ApiError::bad_request("deadline"));
        }
        let mut summary = summary?;
        summary.aggregate.scheme_source = Some(state.keys[key].scheme_source.clone());
        Ok((summary, documents, omitted))
    })
    .await?;
    s.limiter
        .charge_scored(&who.digest, summary.aggregate.counts.scored as u64, Instant::now());
    account(|a| {
        a.event = Some("scan");
        a.key_id = Some(s.keys[key].key_id.clone());
        a.verdict = Some(verdict_name(summary.aggregate.verdict));
        a.documents = Some(summary.documents as u64);
        a.truncated = (omitted > 0).then_some(omitted as u64);
    });
    let mut summary = serde_json::to_value(&summary).map_err(|_| internal("the summary"))?;
    cut_long_strings(&mut summary);
    Ok(Json(json!({ "summary": summary, "documents": documents, "documents_omitted": omitted })).into_response())
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

/// A running result of a streaming session (its report when `key` is given).
fn running(id: &str, key: Option<&KeyDetectors>, stream: &DetectionStream) -> ApiResult<Value> {
    let report = match (key, stream.is_empty()) {
        (Some(k), false) => {
            let mut d = k.get(false, false).stream_report(stream)?;
            d.scheme_source = Some(k.scheme_source.clone());
            Some(d)
        }
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

/// The answer when a streaming session would pass a memory budget.
fn over_budget(c: &Config, over: Over) -> ApiError {
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    let mut e = match over {
        Over::Session => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "a streaming session holds at most {:.1} MiB (about {} tokens, at {STREAM_BYTES_PER_TOKEN} bytes a token): \
                     open another session",
                    mib(c.stream_session_memory),
                    c.stream_session_memory / STREAM_BYTES_PER_TOKEN
                ),
            )
        }
        Over::Token => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "stream_quota",
            format!(
                "this API token's streaming sessions hold {:.1} MiB, its limit: close one (DELETE)",
                mib(c.token_stream_memory)
            ),
        ),
        Over::All => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "stream_memory",
            format!(
                "the streaming sessions of this service hold {:.1} MiB, its limit: retry later",
                mib(c.stream_memory)
            ),
        ),
    };
    e.retry_after = Some(if matches!(over, Over::Token) { 60 } else { 10 });
    e
}

fn table_unavailable() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "session table unavailable",
    )
}

async fn stream_open(Extract(s): Extract<Arc<State>>, headers: HeaderMap, body: Body) -> ApiResult<Response> {
    let started = Instant::now();
    let who = admit(&s, &headers)?;
    let _ticket = reserve(&s, &who, declared(&s, &headers), started)?;
    let bytes = read_body(&s, body).await?;
    let request: StreamOpen = parse_json(&bytes)?;
    drop(bytes);
    let Some(key) = s.key(request.key_id.as_deref())? else {
        return Err(ApiError::bad_request("a stream tests one key: name it with \"key_id\""));
    };
    if request.prompt_ids.len() > STREAM_MAX_TOKENS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("a streaming session holds at most {STREAM_MAX_TOKENS} tokens"),
        ));
    }
    let detector = s.keys[key].get(false, false);
    let stream = detector.stream(&request.prompt_ids)?;
    let token_pool = s
        .token_stream_bytes
        .get(&who.name)
        .cloned()
        .ok_or_else(table_unavailable)?;
    let mut charge = Charge {
        all: Arc::clone(&s.stream_bytes),
        token: token_pool,
        bytes: 0,
    };
    let id = random_id()?;
    let value = running(&id, None, &stream)?;
    {
        let mut streams = s.streams.lock().map_err(|_| table_unavailable())?;
        if streams.len() >= s.config.max_streams {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                "this service holds as many streaming sessions as it may: close one (DELETE) or wait",
            );
            e.retry_after = Some(10);
            return Err(e);
        }
        if streams.values().filter(|v| v.owner == who.name).count() >= s.config.token_streams {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "stream_quota",
                format!(
                    "this API token holds {} streaming sessions, its limit: close one (DELETE)",
                    s.config.token_streams
                ),
            );
            e.retry_after = Some(60);
            return Err(e);
        }
        charge
            .grow(
                STREAM_BASE_BYTES + request.prompt_ids.len() * STREAM_BYTES_PER_TOKEN,
                &s.config,
            )
            .map_err(|o| over_budget(&s.config, o))?;
        streams.insert(
            id.clone(),
            Arc::new(Session {
                key,
                owner: who.name.clone(),
                used: AtomicU64::new(s.now_ms()),
                state: Arc::new(tokio::sync::Mutex::new(SessionState { stream, charge })),
            }),
        );
    }
    account(|a| {
        a.event = Some("stream_open");
        a.key_id = Some(s.keys[key].key_id.clone());
    });
    Ok((StatusCode::CREATED, Json(value)).into_response())
}

/// The caller's session `id` (its last use set to now); the table's lock is held for the look-up only.
fn find_session(s: &State, id: &str, who: &Who) -> ApiResult<Arc<Session>> {
    let streams = s.streams.lock().map_err(|_| table_unavailable())?;
    match streams.get(id) {
        Some(session) if session.owner == who.name => {
            session.used.store(s.now_ms(), Ordering::Release);
            Ok(Arc::clone(session))
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_stream",
            "no such streaming session (it may have expired)",
        )),
    }
}

/// The session's own lock, waited for until the request's deadline.
async fn lock_session(
    s: &State,
    session: &Session,
    ticket: &Ticket,
) -> ApiResult<tokio::sync::OwnedMutexGuard<SessionState>> {
    let until = tokio::time::Instant::from_std(ticket.deadline);
    tokio::time::timeout_at(until, Arc::clone(&session.state).lock_owned())
        .await
        .map_err(|_| timed_out(s))
}

/// Adds ids to a session: charged to its memory budgets first, scored on the
/// CPU pool under the session's own lock, before the request's deadline. A
/// push is all or nothing; one that ends past the deadline is answered 503
/// although its ids were added (GET the session for its count of tokens).
async fn stream_push(
    Extract(s): Extract<Arc<State>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let started = Instant::now();
    let who = admit(&s, &headers)?;
    let ticket = reserve(&s, &who, declared(&s, &headers), started)?;
    let bytes = read_body(&s, body).await?;
    let request: StreamPush = parse_json(&bytes)?;
    drop(bytes);
    let session = find_session(&s, &id, &who)?;
    let guard = lock_session(&s, &session, &ticket).await?;
    let state = Arc::clone(&s);
    let key = session.key;
    let sid = id.clone();
    let (value, scored) = blocking(&s, &ticket, move |_deadline| {
        let mut g = guard;
        let held = g.stream.len();
        if held + request.ids.len() > STREAM_MAX_TOKENS {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("a streaming session holds at most {STREAM_MAX_TOKENS} tokens"),
            ));
        }
        let more = request.ids.len() * STREAM_BYTES_PER_TOKEN;
        g.charge
            .grow(more, &state.config)
            .map_err(|o| over_budget(&state.config, o))?;
        let d = state.keys[key].get(false, false);
        let before = g.stream.scored();
        if let Err(e) = d.push(&mut g.stream, &request.ids) {
            g.charge.shrink(more);
            return Err(e.into());
        }
        Ok((
            running(&sid, Some(&state.keys[key]), &g.stream)?,
            g.stream.scored() - before,
        ))
    })
    .await?;
    s.limiter.charge_scored(&who.digest, scored as u64, Instant::now());
    account(|a| {
        a.event = Some("stream_push");
        a.key_id = Some(s.keys[key].key_id.clone());
    });
    Ok(Json(value).into_response())
}

/// The running report of the caller's session `id`, on the CPU pool; with
/// `close`, the session is removed from the table (its memory goes back to
/// the budgets once no request holds it).
async fn stream_report(s: Arc<State>, id: String, headers: HeaderMap, close: bool) -> ApiResult<Response> {
    let started = Instant::now();
    let who = admit(&s, &headers)?;
    let ticket = reserve(&s, &who, 0, started)?;
    let session = find_session(&s, &id, &who)?;
    let guard = lock_session(&s, &session, &ticket).await?;
    let state = Arc::clone(&s);
    let key = session.key;
    let sid = id.clone();
    let (value, held) = blocking(&s, &ticket, move |_deadline| {
        Ok((
            running(&sid, Some(&state.keys[key]), &guard.stream)?,
            guard.charge.bytes,
        ))
    })
    .await?;
    if close {
        if let Ok(mut streams) = s.streams.lock() {
            if streams.get(&id).is_some_and(|v| Arc::ptr_eq(v, &session)) {
                streams.remove(&id);
            }
        }
        if held > LARGE_REQUEST {
            s.trim.soon();
        }
    }
    account(|a| {
        a.event = Some(if close { "stream_close" } else { "stream_get" });
        a.key_id = Some(s.keys[key].key_id.clone());
    });
    Ok(Json(value).into_response())
}

async fn stream_get(
    Extract(s): Extract<Arc<State>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    stream_report(s, id, headers, false).await
}

async fn stream_close(
    Extract(s): Extract<Arc<State>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    stream_report(s, id, headers, true).await
}
