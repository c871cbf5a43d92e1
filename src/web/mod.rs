//! The controller's HTTP side, one listener: health, readiness and metrics (`health`) and the
//! monitor ingestion endpoints (`ingest`, with the syslog listeners beside it), and the monitor
//! dashboard (`dashboard`: pages under `/ui/`, its JSON API under `/api/v1/`).

pub mod dashboard;
pub mod health;
pub mod ingest;

use std::net::SocketAddr;

use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Binds `addr` and serves `app` until `shutdown` turns true; in-flight requests finish first.
pub async fn serve(
    addr: SocketAddr,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| e.to_string())?;
    Ok(tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
    }))
}
