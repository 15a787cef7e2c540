//! Connections: the accept loop, its cap, the header read timeout and the
//! graceful shutdown with a deadline.
//!
//! axum's own `serve` accepts every connection and waits for it forever; a
//! client that opens connections and sends nothing (no token needed) holds
//! a file descriptor each until the process runs out of them. Here:
//! - at most `max_connections` connections are served at once (a semaphore);
//!   one more is closed at once, before a byte is read, and counted;
//! - hyper's header read timeout closes a connection that has not sent a
//!   complete request head within `header_timeout` of opening or of its
//!   previous response: idle keep-alive connections and slow headers alike;
//! - a connection that hyper closes before its request reaches the routes
//!   (a head too large, 431; a URI too long, 414; a malformed head, 400; no
//!   complete head within the timeout) is reported to `on_close` with the
//!   status answered (408 for a header timeout, where nothing is sent), so
//!   that the access log misses no status;
//! - on Ctrl-C or SIGTERM the listener closes, every connection is told to
//!   finish its request in flight and close, and after `shutdown_timeout`
//!   the rest are dropped.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::logs::Every;

/// How connections are bounded.
pub(crate) struct ConnLimits {
    /// Connections served at once.
    pub(crate) max_connections: usize,
    /// From a connection's opening (or its previous response) to a complete request head.
    pub(crate) header_timeout: Duration,
    /// How long a shutdown waits for requests in flight.
    pub(crate) shutdown_timeout: Duration,
}

/// File descriptors kept for everything but connections: the key, tokenizer
/// and token files, logs, the runtime's own, a margin.
const RESERVED_FDS: u64 = 128;

/// Raises the soft open-file limit to the hard one where allowed and returns
/// the number of connections that fit below it (`wanted` at most).
pub(crate) fn connections_that_fit(wanted: usize) -> usize {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let limit = getrlimit(Resource::Nofile);
        let mut soft = limit.current;
        if let (Some(cur), Some(max)) = (limit.current, limit.maximum) {
            if cur < max {
                let raised = Rlimit {
                    current: Some(max),
                    maximum: Some(max),
                };
                if setrlimit(Resource::Nofile, raised).is_ok() {
                    soft = Some(max);
                }
            }
        } else if limit.current.is_some() && limit.maximum.is_none() {
            // The hard limit is infinite: ask for what we need, no more.
            let want = wanted as u64 + RESERVED_FDS;
            let raised = Rlimit {
                current: Some(want),
                maximum: None,
            };
            if limit.current < Some(want) && setrlimit(Resource::Nofile, raised).is_ok() {
                soft = Some(want);
            }
        }
        match soft {
            Some(soft) => {
                let fit = usize::try_from(soft.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(usize::MAX);
                if fit < wanted {
                    tracing::warn!(
                        event = "max_connections_lowered",
                        wanted,
                        max_connections = fit,
                        open_file_limit = soft,
                        "the open-file limit leaves room for fewer connections than --max-connections: raise `ulimit -n`"
                    );
                }
                wanted.min(fit)
            }
            None => wanted,
        }
    }
    #[cfg(not(unix))]
    {
        wanted
    }
}

/// The status and outcome of a connection hyper ended with `e` before the
/// routes saw a request; `None` when the client simply went away.
fn closed_by_hyper(e: &hyper::Error) -> Option<(u16, &'static str)> {
    if e.is_timeout() {
        Some((408, "header_timeout"))
    } else if e.is_parse_too_large() {
        if e.to_string().to_ascii_lowercase().contains("uri") {
            Some((414, "uri_too_long"))
        } else {
            Some((431, "headers_too_large"))
        }
    } else if e.is_parse() {
        Some((400, "malformed_head"))
    } else {
        None
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains;
/// `on_close(status, outcome)` hears of the connections hyper closed itself.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &ConnLimits,
    on_close: impl Fn(u16, &'static str) + Clone + Send + Sync + 'static,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let max = limits.max_connections.clamp(1, 1 << 20);
    let slots = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let refused = Arc::new(AtomicU64::new(0));
    let mut refused_log = Every::new(Duration::from_secs(10));
    let mut accept_errors = Every::new(Duration::from_secs(10));
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors or a connection reset before accept: wait a little
                    // rather than spin, and say so once in a while.
                    if let Some(count) = accept_errors.tick() {
                        tracing::warn!(event = "accept_failed", error = %error, count);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            let n = refused.fetch_add(1, Ordering::Relaxed) + 1;
            if let Some(count) = refused_log.tick() {
                tracing::warn!(
                    event = "connections_refused",
                    count,
                    total = n,
                    max_connections = max,
                    "connections closed at once: the service holds --max-connections"
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let mut stop = stop_rx.clone();
        let on_close = on_close.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Some((status, outcome)) = ended.as_ref().err().and_then(closed_by_hyper) {
                on_close(status, outcome);
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let open = max - slots.available_permits();
    let drained = tokio::time::timeout(
        limits.shutdown_timeout,
        slots.acquire_many(u32::try_from(max).unwrap_or(u32::MAX)),
    )
    .await;
    match drained {
        Ok(_) => tracing::info!(event = "drained", connections = open),
        Err(_) => tracing::warn!(
            event = "shutdown_deadline",
            connections_dropped = max - slots.available_permits(),
            shutdown_timeout_s = limits.shutdown_timeout.as_secs(),
        ),
    }
    Ok(())
}
