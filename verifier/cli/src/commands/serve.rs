//! `serve`: the HTTP detection service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tracemark_verifier::Dedup;

use crate::args::ModelArgs;
use crate::exit::{Exit, Failure};
use crate::input::load_key;
use crate::semantic::{load_embedder, semantic_scheme};
use crate::server::{self, Budgets, Config, ConnLimits, SemanticLayer, ServedKey, TokenTable};

/// What `serve` takes.
#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on. Loopback by default: put a TLS-terminating proxy in front to serve others
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub(crate) listen: SocketAddr,
    /// Key file to serve; repeat for several. Loaded once at start; only key ids ever leave the server
    #[arg(long, required = true)]
    pub(crate) key: Vec<PathBuf>,
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// API tokens: a file of lines `sha256:<hex of the token> <name> [requests per minute [burst]]
    /// [bytes=<per minute>] [scored=<per minute>]` (`printf %s "$TOKEN" | sha256sum`); the tokens
    /// themselves are never stored
    #[arg(long)]
    pub(crate) tokens: PathBuf,
    /// Requests per minute per API token, unless its line says otherwise
    #[arg(long, default_value_t = 120)]
    pub(crate) rate: u32,
    /// Requests an API token may make at once above its rate (the bucket's size)
    #[arg(long, default_value_t = 20)]
    pub(crate) burst: u32,
    /// Request body bytes per minute per API token, unless its line says otherwise (`bytes=`);
    /// a quarter of it, or one --max-body, may come at once (429 with Retry-After past it)
    #[arg(long, default_value_t = 64 << 20)]
    pub(crate) token_bytes_per_minute: u64,
    /// Tokens scored per minute per API token, unless its line says otherwise (`scored=`); charged
    /// once a detection has counted them, so a token in debt waits (429 with Retry-After)
    #[arg(long, default_value_t = 16_000_000)]
    pub(crate) token_scored_per_minute: u64,
    /// Largest request body, in bytes (413 above)
    #[arg(long, default_value_t = 1 << 20)]
    pub(crate) max_body: usize,
    /// Longest time a request may take, in seconds (503 after)
    #[arg(long, default_value_t = 30)]
    pub(crate) timeout: u64,
    /// Seconds a request body may take to arrive once its head is read (408 after; slow uploads
    /// hold a connection and a buffer)
    #[arg(long, default_value_t = 30)]
    pub(crate) body_timeout: u64,
    /// Seconds from a connection's opening, or its previous response, to a complete request head:
    /// closes idle keep-alive connections and clients that never finish their headers
    #[arg(long, default_value_t = 10)]
    pub(crate) header_timeout: u64,
    /// Connections served at once; more are closed at once. Lowered at start to fit below the
    /// open-file limit (whose soft value is raised to the hard one where allowed)
    #[arg(long, default_value_t = 4096)]
    pub(crate) max_connections: usize,
    /// Seconds a shutdown (Ctrl-C, SIGTERM) waits for requests in flight before it drops them
    #[arg(long, default_value_t = 10)]
    pub(crate) shutdown_timeout: u64,
    /// Bytes of request bodies admitted at once, service-wide (declared Content-Length, or
    /// --max-body when none is declared); past it 503 with Retry-After at once, never a queue.
    /// Detection needs about 100 times a text's size in memory: size it to the RAM
    #[arg(long, default_value_t = 8 << 20)]
    pub(crate) max_inflight_bytes: usize,
    /// Requests one API token may have in flight at once (429 with Retry-After above)
    #[arg(long, default_value_t = 64)]
    pub(crate) token_concurrency: usize,
    /// Detections running at once, off the async workers (0 = one per core); requests with
    /// bodies above 64 KiB get all but one of them, so small ones always find a free one
    #[arg(long, default_value_t = 0)]
    pub(crate) cpu_workers: usize,
    /// Streaming sessions held at once (idle ones expire after 10 minutes; 503 past it)
    #[arg(long, default_value_t = 1024)]
    pub(crate) max_streams: usize,
    /// Memory all streaming sessions may hold, in bytes (each token held is charged 144 bytes,
    /// each session 4 KiB; 503 past it). RSS stays under the service's base plus this
    #[arg(long, default_value_t = 1 << 30)]
    pub(crate) stream_memory: usize,
    /// Memory one streaming session may hold, in bytes (413 past it: about 466,000 tokens by default)
    #[arg(long, default_value_t = 64 << 20)]
    pub(crate) stream_session_memory: usize,
    /// Streaming sessions one API token may hold at once (429 past it)
    #[arg(long, default_value_t = 64)]
    pub(crate) token_streams: usize,
    /// Memory the streaming sessions of one API token may hold, in bytes (429 past it)
    #[arg(long, default_value_t = 256 << 20)]
    pub(crate) token_stream_memory: usize,
    /// Significance level of every verdict
    #[arg(long, default_value_t = 1e-6)]
    pub(crate) alpha: f64,
    /// Deduplication of repeated (context, token) observations
    #[arg(long, default_value = "pair")]
    pub(crate) dedup: Dedup,
    /// Log the texts and ids of requests (off: logs hold sizes, digests and results only)
    #[arg(long)]
    pub(crate) log_texts: bool,
    /// Worker threads (0 = one per core)
    #[arg(long, default_value_t = 0)]
    pub(crate) threads: usize,
    /// Offer the semantic layer under each served key (a scheme string,
    /// `semantic:gamma=0.25,planes=8`): a text detect with `"semantic": true`
    /// also tests it, and its verdict stands on both layers (SPEC 15.4). Needs
    /// --tokenizer; the embedder is loaded once at start (about 90 MB)
    #[arg(long, value_name = "SCHEME")]
    pub(crate) semantic: Option<String>,
    /// The sentence embedder's folder for --semantic (all-MiniLM-L6-v2, from
    /// `python3 scripts/fetch.py embedder`); default $TRACEMARK_EMBEDDER, else
    /// where that script puts it
    #[arg(long, value_name = "DIR", requires = "semantic")]
    pub(crate) embedder: Option<PathBuf>,
}

/// Runs `serve` until interrupted (Ctrl-C or SIGTERM).
pub(crate) fn run(a: ServeArgs) -> Result<Exit, Failure> {
    let tokenizer = a.model.load_tokenizer()?;
    let vocab = match (&tokenizer, a.model.vocab) {
        (_, Some(v)) => v,
        (Some(t), None) => t.vocab_size(),
        (None, None) => {
            return Err(Failure::Usage(
                "serve needs --tokenizer (to detect text) or --vocab (ids only)".into(),
            ))
        }
    };
    let mut keys = Vec::new();
    let mut scheme: Option<tracemark_core::SchemeConfig> = None;
    let fingerprint = tokenizer.as_ref().map(|t| t.info().fingerprint.clone());
    for path in &a.key {
        let key = load_key(path)?;
        // Every key is tested with one scheme: --scheme, else the first key's manifest's.
        let (own, mut scheme_source) = a.model.resolve_scheme(path, &key, fingerprint.as_deref())?;
        match &scheme {
            None => scheme = Some(own),
            Some(first) if *first != own => {
                let w =
                    format!("this service tests every key with the first key's scheme {first}; this key's is {own}");
                eprintln!("WARNING: {w}");
                scheme_source.warning = Some(w);
            }
            Some(_) => {}
        }
        let label = path
            .file_stem()
            .map_or_else(|| key.id().to_string(), |s| s.to_string_lossy().into_owned());
        keys.push(ServedKey {
            label,
            key,
            scheme_source,
        });
    }
    let budgets = Budgets {
        rate: a.rate,
        burst: a.burst,
        bytes_per_minute: a.token_bytes_per_minute.max(1),
        scored_per_minute: a.token_scored_per_minute.max(1),
    };
    let tokens = TokenTable::load(&a.tokens, budgets)?;
    let Some(scheme) = scheme else {
        return Err(Failure::Usage("serve needs at least one --key".into()));
    };
    let config = Config {
        scheme,
        vocab,
        alpha: a.alpha,
        dedup: a.dedup,
        max_body: a.max_body,
        timeout: Duration::from_secs(a.timeout.max(1)),
        body_timeout: Duration::from_secs(a.body_timeout.max(1)),
        max_inflight_bytes: a.max_inflight_bytes,
        token_concurrency: a.token_concurrency.max(1),
        cpu_workers: if a.cpu_workers == 0 {
            std::thread::available_parallelism().map_or(2, usize::from)
        } else {
            a.cpu_workers
        },
        max_streams: a.max_streams,
        stream_memory: a.stream_memory,
        stream_session_memory: a.stream_session_memory.min(a.stream_memory),
        token_streams: a.token_streams.max(1),
        token_stream_memory: a.token_stream_memory.min(a.stream_memory),
        log_texts: a.log_texts,
    };
    let semantic = match &a.semantic {
        None => None,
        Some(_) if tokenizer.is_none() => {
            return Err(Failure::Usage("--semantic tests text: give --tokenizer as well".into()))
        }
        Some(scheme) => Some(SemanticLayer {
            schemes: keys
                .iter()
                .map(|k| semantic_scheme(&k.key, scheme))
                .collect::<Result<_, _>>()?,
            embedder: load_embedder(a.embedder.as_deref())?,
        }),
    };
    let state = server::State::new(config, keys, tokenizer, tokens, semantic)?;
    let threads = if a.threads == 0 {
        std::thread::available_parallelism().map_or(2, usize::from)
    } else {
        a.threads
    };
    let limits = ConnLimits {
        max_connections: a.max_connections.max(1),
        header_timeout: Duration::from_secs(a.header_timeout.max(1)),
        shutdown_timeout: Duration::from_secs(a.shutdown_timeout),
    };
    server::run(state, a.listen, threads, limits).map_err(|error| match error.kind() {
        // Exit code as before (an input problem); the message says what is wrong.
        std::io::ErrorKind::AddrInUse => Failure::Read {
            source: format!("--listen {}", a.listen),
            error: std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "port {} is taken: another process listens on it (stop it, or choose another --listen; \
                     port 0 picks a free one)",
                    a.listen.port()
                ),
            ),
        },
        _ => Failure::Write {
            target: format!("serving on {}", a.listen),
            error,
        },
    })?;
    Ok(Exit::Success)
}
