//! HTTP routes of the vRNI simulator (`/api/ni/...` and `/admin/...`).

// Handlers build their error answers as `Response`s early and return them; boxing each would
// only add noise to a test simulator.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{Call, Faults, Sim, StoredFlow};
use crate::nsxsim::server::net::{accept_until, serve_connection};

/// Most ids one `POST /entities/fetch` takes (the reference: "Max batch size is 1000").
pub const MAX_FETCH: usize = 1000;
/// Most results one page holds (the API guide: `size` "can be set to a maximum of 10000").
pub const MAX_PAGE: usize = 10_000;
/// Results per page when `size` is not given.
pub const DEFAULT_PAGE: usize = 10;

fn api_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"code": status.as_u16(), "message": message, "details": []})),
    )
        .into_response()
}

impl Sim {
    fn log(&self, method: &str, path: &str, status: StatusCode, cursor: Option<String>) {
        let at_ms = self.started.elapsed().as_millis() as u64;
        if let Ok(mut c) = self.calls.lock() {
            c.push(Call {
                method: method.into(),
                path: path.into(),
                status: status.as_u16(),
                at_ms,
                cursor,
            });
        }
    }

    /// Faults and authentication of an API call; `Err` is the answer.
    fn gate(&self, headers: &HeaderMap) -> Result<(), Response> {
        let number = self
            .calls
            .lock()
            .map(|c| c.iter().filter(|x| x.path != "/api/ni/auth/token").count() as u64 + 1)
            .unwrap_or(1);
        let faults = self.faults.lock().map(|f| f.clone()).unwrap_or_default();
        if faults.expire_tokens.contains(&number)
            && let Ok(mut t) = self.tokens.lock()
        {
            t.clear();
        }
        if faults.throttle.contains(&number) {
            let mut r = api_error(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
            if let Ok(v) = HeaderValue::from_str(&faults.retry_after_secs.to_string()) {
                r.headers_mut().insert("Retry-After", v);
            }
            return Err(r);
        }
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("NetworkInsight "))
            .map(str::trim);
        let valid = token.is_some_and(|t| {
            self.tokens
                .lock()
                .map(|m| m.get(t).is_some_and(|exp| *exp > std::time::Instant::now()))
                .unwrap_or(false)
        });
        if valid {
            Ok(())
        } else {
            Err(api_error(StatusCode::UNAUTHORIZED, "Unauthorized"))
        }
    }
}

fn finish(sim: &Sim, method: &str, path: &str, cursor: Option<String>, r: Response) -> Response {
    sim.log(method, path, r.status(), cursor);
    r
}

#[derive(Deserialize)]
struct Domain {
    domain_type: Option<String>,
    value: Option<String>,
}

#[derive(Deserialize)]
struct UserCredential {
    username: Option<String>,
    password: Option<String>,
    domain: Option<Domain>,
}

async fn create_token(State(sim): State<Arc<Sim>>, body: axum::body::Bytes) -> Response {
    let path = "/api/ni/auth/token";
    let r = (|| {
        let c: UserCredential = serde_json::from_slice(&body)
            .map_err(|e| api_error(StatusCode::BAD_REQUEST, &format!("bad body: {e}")))?;
        let (Some(user), Some(password)) = (c.username, c.password) else {
            return Err(api_error(
                StatusCode::BAD_REQUEST,
                "username and password are required",
            ));
        };
        let domain = c
            .domain
            .ok_or_else(|| api_error(StatusCode::BAD_REQUEST, "domain is required"))?;
        let ldap = match domain.domain_type.as_deref() {
            Some("LOCAL") => None,
            Some("LDAP") => Some(domain.value.ok_or_else(|| {
                api_error(StatusCode::BAD_REQUEST, "domain.value is required for LDAP")
            })?),
            _ => {
                return Err(api_error(
                    StatusCode::BAD_REQUEST,
                    "domain.domain_type must be LOCAL or LDAP",
                ));
            }
        };
        let ok = sim
            .users
            .get(&user)
            .is_some_and(|u| u.password == password && u.ldap_domain == ldap);
        if !ok {
            return Err(api_error(StatusCode::UNAUTHORIZED, "Unauthorized"));
        }
        let serial = sim.tokens.lock().map(|t| t.len()).unwrap_or(0);
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{serial}:{}",
            sim.started.elapsed().as_nanos(),
            std::process::id()
        ));
        let expiry_ms = jiff::Timestamp::now().as_millisecond()
            + i64::try_from(sim.token_ttl.as_millis()).unwrap_or(i64::MAX / 2);
        if let Ok(mut t) = sim.tokens.lock() {
            t.insert(token.clone(), std::time::Instant::now() + sim.token_ttl);
        }
        Ok((
            StatusCode::OK,
            Json(json!({"token": token, "expiry": expiry_ms})),
        )
            .into_response())
    })();
    finish(&sim, "POST", path, None, r.unwrap_or_else(|e| e))
}

async fn delete_token(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    let r = match sim.gate(&headers) {
        Ok(()) => {
            if let (Some(t), Ok(mut m)) = (
                headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("NetworkInsight ")),
                sim.tokens.lock(),
            ) {
                m.remove(t.trim());
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    };
    finish(&sim, "DELETE", "/api/ni/auth/token", None, r)
}

fn encode_cursor(offset: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("offset:{offset}"))
}

fn decode_cursor(c: &str) -> Option<usize> {
    let raw = base64::engine::general_purpose::STANDARD.decode(c).ok()?;
    String::from_utf8(raw)
        .ok()?
        .strip_prefix("offset:")?
        .parse()
        .ok()
}

/// One page of flow ids matching `filter` in `[start, end]`.
fn page(
    sim: &Sim,
    filter: Option<&super::filter::Expr>,
    start: Option<i64>,
    end: Option<i64>,
    size: Option<usize>,
    cursor: Option<&str>,
) -> Result<Value, Response> {
    let offset = match cursor.filter(|c| !c.is_empty()) {
        Some(c) => {
            decode_cursor(c).ok_or_else(|| api_error(StatusCode::BAD_REQUEST, "invalid cursor"))?
        }
        None => 0,
    };
    let size = size.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let now = jiff::Timestamp::now().as_second();
    let end = end.unwrap_or(now);
    let start = start.unwrap_or(end - 86_400);
    let mut hits: Vec<(i64, String)> = sim
        .flows
        .lock()
        .map(|f| {
            f.iter()
                .filter(|s| s.time >= start && s.time <= end)
                .filter(|s| filter.is_none_or(|e| e.matches(&s.flow)))
                .filter_map(|s| {
                    s.flow
                        .get("entity_id")
                        .and_then(Value::as_str)
                        .map(|id| (s.time, id.to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    hits.sort();
    let total = hits.len();
    let results: Vec<Value> = hits
        .iter()
        .skip(offset)
        .take(size)
        .map(|(t, id)| json!({"entity_id": id, "entity_type": "Flow", "time": t}))
        .collect();
    let next = offset + results.len();
    let mut body = json!({
        "results": results,
        "total_count": total,
        "start_time": start,
        "end_time": end,
    });
    if next < total
        && let Some(o) = body.as_object_mut()
    {
        o.insert("cursor".into(), json!(encode_cursor(next)));
    }
    Ok(body)
}

#[derive(Deserialize)]
struct TimeRange {
    start_time: Option<i64>,
    end_time: Option<i64>,
}

#[derive(Deserialize)]
struct SearchRequest {
    entity_type: Option<String>,
    filter: Option<String>,
    size: Option<usize>,
    cursor: Option<String>,
    time_range: Option<TimeRange>,
}

async fn search(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let req: Result<SearchRequest, _> = serde_json::from_slice(&body);
    let cursor = req.as_ref().ok().and_then(|r| r.cursor.clone());
    let r = (|| {
        sim.gate(&headers)?;
        let req = req.map_err(|e| api_error(StatusCode::BAD_REQUEST, &format!("bad body: {e}")))?;
        if req.entity_type.as_deref() != Some("Flow") {
            return Err(api_error(
                StatusCode::BAD_REQUEST,
                "the simulator searches entity_type Flow only",
            ));
        }
        let filter = req
            .filter
            .as_deref()
            .filter(|f| !f.trim().is_empty())
            .map(super::filter::parse)
            .transpose()
            .map_err(|e| api_error(StatusCode::BAD_REQUEST, &format!("invalid filter: {e}")))?;
        let (start, end) = req
            .time_range
            .map(|t| (t.start_time, t.end_time))
            .unwrap_or((None, None));
        let body = page(
            &sim,
            filter.as_ref(),
            start,
            end,
            req.size,
            req.cursor.as_deref(),
        )?;
        Ok((StatusCode::OK, Json(body)).into_response())
    })();
    finish(
        &sim,
        "POST",
        "/api/ni/search",
        cursor,
        r.unwrap_or_else(|e| e),
    )
}

#[derive(Deserialize)]
struct ListQuery {
    size: Option<usize>,
    cursor: Option<String>,
    start_time: Option<i64>,
    end_time: Option<i64>,
}

async fn list_flows(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let cursor = q.cursor.clone();
    let r = sim.gate(&headers).and_then(|()| {
        page(
            &sim,
            None,
            q.start_time,
            q.end_time,
            q.size,
            q.cursor.as_deref(),
        )
        .map(|b| (StatusCode::OK, Json(b)).into_response())
    });
    finish(
        &sim,
        "GET",
        "/api/ni/entities/flows",
        cursor,
        r.unwrap_or_else(|e| e),
    )
}

fn find(sim: &Sim, id: &str) -> Option<StoredFlow> {
    sim.flows.lock().ok().and_then(|f| {
        f.iter()
            .find(|s| s.flow.get("entity_id").and_then(Value::as_str) == Some(id))
            .cloned()
    })
}

async fn get_flow(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let r = sim.gate(&headers).and_then(|()| {
        find(&sim, &id)
            .map(|s| (StatusCode::OK, Json(s.flow)).into_response())
            .ok_or_else(|| api_error(StatusCode::NOT_FOUND, &format!("flow {id} not found")))
    });
    finish(
        &sim,
        "GET",
        "/api/ni/entities/flows/{id}",
        None,
        r.unwrap_or_else(|e| e),
    )
}

#[derive(Deserialize)]
struct FetchId {
    entity_id: String,
    entity_type: Option<String>,
    time: Option<i64>,
}

#[derive(Deserialize)]
struct FetchRequest {
    entity_ids: Vec<FetchId>,
}

async fn fetch(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let r = (|| {
        sim.gate(&headers)?;
        let req: FetchRequest = serde_json::from_slice(&body)
            .map_err(|e| api_error(StatusCode::BAD_REQUEST, &format!("bad body: {e}")))?;
        if req.entity_ids.len() > MAX_FETCH {
            return Err(api_error(
                StatusCode::BAD_REQUEST,
                &format!("at most {MAX_FETCH} entity_ids per request"),
            ));
        }
        let results: Vec<Value> = req
            .entity_ids
            .iter()
            .filter_map(|id| {
                let s = find(&sim, &id.entity_id)?;
                Some(json!({
                    "entity_id": id.entity_id,
                    "entity_type": id.entity_type.clone().unwrap_or_else(|| "Flow".into()),
                    "time": id.time.unwrap_or(s.time),
                    "entity": s.flow,
                }))
            })
            .collect();
        Ok((StatusCode::OK, Json(json!({"results": results}))).into_response())
    })();
    finish(
        &sim,
        "POST",
        "/api/ni/entities/fetch",
        None,
        r.unwrap_or_else(|e| e),
    )
}

async fn put_flows(State(sim): State<Arc<Sim>>, Json(flows): Json<Vec<StoredFlow>>) -> StatusCode {
    if let Ok(mut f) = sim.flows.lock() {
        *f = flows;
    }
    StatusCode::NO_CONTENT
}

async fn put_faults(State(sim): State<Arc<Sim>>, Json(faults): Json<Faults>) -> StatusCode {
    if let Ok(mut f) = sim.faults.lock() {
        *f = faults;
    }
    StatusCode::NO_CONTENT
}

async fn get_calls(State(sim): State<Arc<Sim>>) -> Json<Vec<Call>> {
    Json(sim.calls.lock().map(|c| c.clone()).unwrap_or_default())
}

/// The routes.
pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route(
            "/api/ni/auth/token",
            post(create_token).delete(delete_token),
        )
        .route("/api/ni/search", post(search))
        .route("/api/ni/entities/flows", get(list_flows))
        .route("/api/ni/entities/flows/{id}", get(get_flow))
        .route("/api/ni/entities/fetch", post(fetch))
        .route("/admin/flows", put(put_flows))
        .route("/admin/faults", put(put_faults))
        .route("/admin/calls", get(get_calls))
        .with_state(sim)
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    sim: Arc<Sim>,
    shutdown: CancellationToken,
) {
    let app = router(sim);
    accept_until(listener, shutdown, |stream, _peer, stop| {
        let svc = hyper_util::service::TowerToHyperService::new(app.clone());
        let tls = tls.clone();
        async move {
            match tls {
                Some(acceptor) => {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    serve_connection(stream, svc, stop).await;
                }
                None => serve_connection(stream, svc, stop).await,
            }
        }
    })
    .await;
}
