//! The accept loop: plain HTTP or TLS on hyper, one task a connection. A service that fails
//! ([`Reset`]) makes hyper close the connection without an answer, which is how a connection
//! reset fault is simulated (an axum handler cannot do that).

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{Reset, Resp, Sim};

/// Serves connections until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    sim: Arc<Sim>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let sim = sim.clone();
                let tls = tls.clone();
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    connection(stream, peer, tls, sim, stop).await;
                });
            }
            _ = shutdown.changed() => break,
        }
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    sim: Arc<Sim>,
    stop: watch::Receiver<bool>,
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

/// HTTP/1 on one connection until it ends or the simulator stops.
async fn serve_connection<I, S>(io: I, svc: S, mut stop: watch::Receiver<bool>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Resp, Error = Reset> + Send,
    S::Future: Send + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc);
    tokio::select! {
        _ = conn => {}
        _ = stop.changed() => {}
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
