//! The accept loop: plain HTTP or TLS on hyper, one task a connection. A service that fails
//! ([`Reset`]) makes hyper close the connection without an answer, which is how a connection
//! reset fault is simulated (an axum handler cannot do that).
//!
//! The pieces both simulators (this one and [`vrnisim`](crate::vrnisim)) start and stop their
//! listener with live here too: [`bind_loopback`], [`accept_until`], [`serve_connection`] and
//! [`Stopper`].

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Reset, Resp, Sim};

/// Binds `addr`, which must be a loopback address (a simulator's admin API has no
/// authentication); returns the listener and the address it got. `Err`: why not.
pub(crate) async fn bind_loopback(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), String> {
    if !addr.ip().is_loopback() {
        return Err("the simulator (and its unauthenticated admin API) binds loopback only".into());
    }
    let listener = TcpListener::bind(addr).await.map_err(|e| e.to_string())?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    Ok((listener, bound))
}

/// A simulator's running accept loop: [`shutdown`](Stopper::shutdown) stops it and waits for
/// it; dropping it stops it too.
pub(crate) struct Stopper {
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Stopper {
    /// Spawns `serve`, which ends once the token it is given is cancelled.
    pub(crate) fn spawn<F>(serve: impl FnOnce(CancellationToken) -> F) -> Stopper
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(stop.clone()));
        Stopper {
            stop,
            task: Some(task),
        }
    }

    /// Stops the accept loop (and every connection) and waits for the loop to end.
    pub(crate) async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Stopper {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Accepts connections until `shutdown` is cancelled; each is handed to `serve` on a task of
/// its own, with the token that stops it.
pub(crate) async fn accept_until<F>(
    listener: TcpListener,
    shutdown: CancellationToken,
    mut serve: impl FnMut(TcpStream, SocketAddr, CancellationToken) -> F,
) where
    F: Future<Output = ()> + Send + 'static,
{
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                tokio::spawn(serve(stream, peer, shutdown.clone()));
            }
            _ = shutdown.cancelled() => break,
        }
    }
}

/// Serves connections until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    sim: Arc<Sim>,
    shutdown: CancellationToken,
) {
    accept_until(listener, shutdown, |stream, peer, stop| {
        connection(stream, peer, tls.clone(), sim.clone(), stop)
    })
    .await;
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    sim: Arc<Sim>,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    match tls {
        Some(acceptor) => {
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.as_ref().to_vec());
            serve_connection(stream, service(sim, peer, cert), stop).await;
        }
        None => serve_connection(stream, service(sim, peer, None), stop).await,
    }
}

/// HTTP/1 on one connection until it ends or `stop` is cancelled.
pub(crate) async fn serve_connection<I, S>(io: I, svc: S, stop: CancellationToken)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc);
    tokio::select! {
        _ = conn => {}
        _ = stop.cancelled() => {}
    }
}

fn service(
    sim: Arc<Sim>,
    peer: SocketAddr,
    cert: Option<Vec<u8>>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Resp,
    Error = Reset,
    Future = impl std::future::Future<Output = Result<Resp, Reset>> + Send,
> + Clone {
    hyper::service::service_fn(move |req: Request<Incoming>| {
        let sim = sim.clone();
        let cert = cert.clone();
        async move { sim.handle(req, peer, cert).await }
    })
}
