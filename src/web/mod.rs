//! The controller's HTTP side, three listeners: health, readiness and metrics (`health`), the
//! monitor ingestion endpoints (`ingest`, with the syslog listeners beside it), and the monitor
//! dashboard (`dashboard`: pages under `/ui/`, its JSON API under `/api/v1/`).

pub mod dashboard;
pub mod health;
pub mod ingest;
pub mod secret;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Connections one HTTP listener serves at once (one more is closed at once).
pub const MAX_CONNECTIONS: usize = 1_024;
/// A client must send a request's headers within this long (slow-header connections are
/// closed).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `addr` and serves `app` until `shutdown` is cancelled; in-flight requests finish first.
/// At most [`MAX_CONNECTIONS`] connections are served at once and a request's headers must
/// arrive within [`HEADER_TIMEOUT`]; handlers see the peer as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    addr: SocketAddr,
    app: Router,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, String> {
    serve_with(addr, app, shutdown, MAX_CONNECTIONS, HEADER_TIMEOUT).await
}

/// [`serve`] with its limits.
pub async fn serve_with(
    addr: SocketAddr,
    app: Router,
    shutdown: CancellationToken,
    max_connections: usize,
    header_timeout: Duration,
) -> Result<JoinHandle<()>, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| e.to_string())?;
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    Ok(tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                r = listener.accept() => {
                    let Ok((stream, peer)) = r else { continue };
                    while connections.try_join_next().is_some() {}
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        drop(stream);
                        continue;
                    };
                    let app = app.clone().layer(Extension(ConnectInfo(peer)));
                    let stop = shutdown.clone();
                    connections.spawn(connection(stream, app, stop, header_timeout, permit));
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = shutdown.cancelled() => break,
            }
        }
        drop(listener);
        while connections.join_next().await.is_some() {}
    }))
}

async fn connection(
    stream: tokio::net::TcpStream,
    app: Router,
    stop: CancellationToken,
    header_timeout: Duration,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.as_mut().await;
}
