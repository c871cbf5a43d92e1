//! Syslog over UDP and TCP (RFC 3164 and RFC 5424; octet-counted or newline framing): no one
//! to answer, so rate-limited lines are counted and dropped.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::*;

/// Records syslog messages (no one to answer: rate-limited lines are counted and dropped).
async fn syslog_batch(ingest: &Ingest, source: &str, messages: &[Vec<u8>]) {
    if messages.is_empty() {
        return;
    }
    let mut c = Collector::new(ingest.inner.attribution.index_when_ready().await);
    for (i, m) in messages.iter().enumerate() {
        for line in m.split(|b| *b == b'\n') {
            c.line(|| format!("{source} message {}", i + 1), line);
        }
    }
    let (deltas, report) = c.finish();
    if let Some(e) = report.errors.first() {
        ingest.sample_warning(source, e);
    }
    if ingest.inner.syslog_budget.take(report.lines).is_err() {
        ingest
            .inner
            .metrics
            .lines(source, "rate_limited", report.lines);
        return;
    }
    count(&ingest.inner.metrics, source, &report);
    if !deltas.is_empty()
        && let Err(e) = ingest.inner.recorder.record_later(deltas).await
    {
        warn!(error = %e, "syslog: not recorded");
    }
}

/// Serves syslog over UDP (one message per datagram) until `shutdown`.
pub async fn serve_syslog_udp(
    addr: SocketAddr,
    ingest: Ingest,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, String> {
    let socket = tokio::net::UdpSocket::bind(addr)
        .await
        .map_err(|e| e.to_string())?;
    Ok(tokio::spawn(async move {
        let mut buf = vec![0u8; SYSLOG_MAX];
        loop {
            tokio::select! {
                r = socket.recv_from(&mut buf) => {
                    let Ok((n, _)) = r else { continue };
                    let message = buf.get(..n).unwrap_or_default().to_vec();
                    syslog_batch(&ingest, "syslog_udp", &[message]).await;
                }
                _ = shutdown.cancelled() => break,
            }
        }
    }))
}

/// Serves syslog over TCP (RFC 6587: octet-counted `<len> <msg>` or newline-terminated) until
/// `shutdown`. At most `syslog_tcp_max_connections` connections are served (one more is closed
/// at once), a connection silent for `syslog_tcp_idle_timeout` is closed, and each holds at most
/// an 8 KiB read buffer, one message and [`SYSLOG_BATCH_BYTES`] of messages waiting to be
/// recorded.
pub async fn serve_syslog_tcp(
    addr: SocketAddr,
    ingest: Ingest,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| e.to_string())?;
    let max = ingest.inner.config.syslog_tcp_max_connections.max(1);
    Ok(tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        let mut last_refusal: Option<Instant> = None;
        loop {
            tokio::select! {
                r = listener.accept() => {
                    let Ok((stream, peer)) = r else { continue };
                    // Finished connections are reaped here, so the set holds live ones only.
                    while connections.try_join_next().is_some() {}
                    if connections.len() >= max {
                        ingest.inner.metrics.request("syslog_tcp", StatusCode::SERVICE_UNAVAILABLE);
                        if last_refusal.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                            last_refusal = Some(Instant::now());
                            warn!(%peer, max, "syslog: connection refused, too many open (--syslog-tcp-max-connections; sampled)");
                        }
                        drop(stream);
                        continue;
                    }
                    let ingest = ingest.clone();
                    let stop = shutdown.clone();
                    connections.spawn(async move {
                        if let Err(e) = syslog_connection(stream, &ingest, stop).await {
                            warn!(%peer, error = %e, "syslog connection closed");
                        }
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = shutdown.cancelled() => break,
            }
        }
        connections.shutdown().await;
    }))
}

/// Bytes of messages a connection gathers before recording them.
pub const SYSLOG_BATCH_BYTES: usize = 64 * 1024;
/// Read buffer of a syslog TCP connection.
const SYSLOG_READ_BUFFER: usize = 8 * 1024;

/// Messages read from one connection are recorded together while more are already buffered.
async fn syslog_connection(
    stream: tokio::net::TcpStream,
    ingest: &Ingest,
    stop: CancellationToken,
) -> Result<(), String> {
    let idle = ingest.inner.config.syslog_tcp_idle_timeout;
    let mut reader = BufReader::with_capacity(SYSLOG_READ_BUFFER, stream);
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0usize;
    loop {
        let message = tokio::select! {
            m = tokio::time::timeout(idle, read_frame(&mut reader)) => match m {
                Ok(m) => m,
                Err(_) => Err(format!("idle for {} s (--syslog-tcp-idle-timeout)", idle.as_secs())),
            },
            _ = stop.cancelled() => Ok(None),
        };
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                // What was read before the error is recorded.
                syslog_batch(ingest, "syslog_tcp", &batch).await;
                return Err(e);
            }
        };
        let Some(message) = message else {
            syslog_batch(ingest, "syslog_tcp", &batch).await;
            return Ok(());
        };
        bytes += message.len();
        batch.push(message);
        if reader.buffer().is_empty() || batch.len() >= 1_000 || bytes >= SYSLOG_BATCH_BYTES {
            syslog_batch(ingest, "syslog_tcp", &batch).await;
            batch.clear();
            bytes = 0;
        }
    }
}

/// Most digits of an octet count (`SYSLOG_MAX` has 5).
const OCTET_COUNT_DIGITS: usize = 5;

/// One RFC 6587 frame: octet-counted when it starts with 1 to 5 digits and a space, else up to
/// a newline (a line that starts with digits, such as a timestamp, is a line).
pub(super) async fn read_frame<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
) -> Result<Option<Vec<u8>>, String> {
    let mut prefix: Vec<u8> = Vec::with_capacity(OCTET_COUNT_DIGITS + 1);
    loop {
        let next = match r.fill_buf().await {
            Ok([]) => None,
            Ok(b) => Some(b[0]),
            Err(e) => return Err(e.to_string()),
        };
        match next {
            None if prefix.is_empty() => return Ok(None),
            None => return Ok(Some(prefix)),
            Some(c) if c.is_ascii_digit() && prefix.len() < OCTET_COUNT_DIGITS => {
                prefix.push(c);
                r.consume(1);
            }
            Some(b' ') if !prefix.is_empty() => {
                r.consume(1);
                let digits = std::str::from_utf8(&prefix).unwrap_or("");
                let n: usize = digits
                    .parse()
                    .map_err(|_| format!("octet count {digits:?} is not a number"))?;
                if n > SYSLOG_MAX {
                    return Err(format!("message of {n} octets is over {SYSLOG_MAX}"));
                }
                let mut msg = vec![0u8; n];
                r.read_exact(&mut msg)
                    .await
                    .map_err(|e| format!("truncated message: {e}"))?;
                return Ok(Some(msg));
            }
            Some(_) => break,
        }
    }
    let mut msg = prefix;
    let room = SYSLOG_MAX + 1 - msg.len();
    let mut limited = r.take(u64::try_from(room).unwrap_or(u64::MAX));
    limited
        .read_until(b'\n', &mut msg)
        .await
        .map_err(|e| e.to_string())?;
    if msg.len() > SYSLOG_MAX {
        return Err(format!("line over {SYSLOG_MAX} bytes without a newline"));
    }
    Ok(Some(msg))
}
