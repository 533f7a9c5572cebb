//! The admin HTTP server on its own address: `/metrics` (Prometheus text,
//! behind a bearer token when one is configured), `/healthz` (the process
//! answers), `/readyz` (at least one healthy engine node and not draining).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::metrics::METRICS;

/// A request's headers must arrive within this (a slow client cannot hold
/// a connection open by dribbling them).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrapes and probes are quick; no admin connection lives longer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Requests are a line and a few headers.
const MAX_REQUEST_BYTES: usize = 16 * 1024;
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What /readyz reports on: whether the gateway drains, and how many
/// engine nodes pass their health checks.
#[derive(Clone)]
pub struct Readiness {
    pub draining: Arc<AtomicBool>,
    pub healthy_nodes: Arc<dyn Fn() -> usize + Send + Sync>,
}

/// Binds the admin address and serves it in the background. With
/// `metrics_token`, /metrics answers only `Authorization: Bearer <token>`
/// (the probes stay open: the kubelet sends no credentials).
pub async fn start(
    listen: &str,
    readiness: Readiness,
    metrics_token: Option<String>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let metrics_token: Option<Arc<str>> = metrics_token.map(Into::into);
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding admin address {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let socket = match listener.accept().await {
                Ok((socket, _)) => socket,
                Err(e) => {
                    // Out of descriptors, say: back off instead of spinning.
                    tracing::warn!("admin accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let readiness = readiness.clone();
            let token = metrics_token.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| respond(req, readiness.clone(), token.clone()));
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(MAX_REQUEST_BYTES)
                    .serve_connection(TokioIo::new(socket), service);
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
            });
        }
    });
    Ok((addr, task))
}

/// Whether the request carries the bearer token (compared in constant
/// time).
fn authorized(req: &Request<Incoming>, token: &str) -> bool {
    req.headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| crate::auth::constant_time_eq(given.as_bytes(), token.as_bytes()))
}

async fn respond(
    req: Request<Incoming>,
    readiness: Readiness,
    metrics_token: Option<Arc<str>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let text = |status: StatusCode, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
            .expect("response")
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into()));
    }
    Ok(match req.uri().path() {
        "/metrics" if metrics_token.is_some_and(|t| !authorized(&req, &t)) => Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(hyper::header::WWW_AUTHENTICATE, "Bearer realm=\"metrics\"")
            .body(Full::new(Bytes::from("bearer token required\n")))
            .expect("response"),
        "/metrics" => Response::builder()
            .header("content-type", prometheus::TEXT_FORMAT)
            .body(Full::new(Bytes::from(METRICS.render())))
            .expect("response"),
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            if readiness.draining.load(Ordering::Relaxed) {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into())
            } else if (readiness.healthy_nodes)() == 0 {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no healthy engine node\n".into(),
                )
            } else {
                text(StatusCode::OK, "ready\n".into())
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    })
}
