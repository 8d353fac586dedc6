//! The routes: the API under `/api/`, the page and its assets, the OpenAPI
//! description. Static files are compiled in; nothing is read from disk.

use crate::compute::{self, Shared};
use crate::Config;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use matcalc::api::{self, ApiError, ApiErrorKind, ServerErrorKind};
use std::sync::Arc;
use tokio::sync::Semaphore;

const INDEX: &str = include_str!("../static/index.html");
const APP_JS: &str = include_str!("../static/app.js");
const STYLE: &str = include_str!("../static/style.css");
const OPENAPI: &str = include_str!("../openapi.json");

/// The page may load only its own scripts and styles, and talk only to this server.
const CSP: &str =
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The application: every route, with the limits of `config`.
pub fn router(config: Config) -> Router {
    let shared = Shared {
        slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
        config: config.clone(),
    };
    Router::new()
        .route("/", get(|| async { asset(INDEX, "text/html; charset=utf-8") }))
        .route(
            "/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route("/style.css", get(|| async { asset(STYLE, "text/css; charset=utf-8") }))
        .route("/openapi.json", get(|| async { asset(OPENAPI, "application/json") }))
        .route("/api/parse", post(parse))
        .route("/api/derive", post(derive))
        .route("/api/eval", post(eval))
        .route("/api/check", post(check))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(config.max_body))
        .with_state(shared)
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn not_found() -> Response {
    let e = ApiError::request(
        ApiErrorKind::Server(ServerErrorKind::Request),
        "no such page",
        "the page is at /, the API under /api/ (see /openapi.json)",
    );
    compute::error(StatusCode::NOT_FOUND, &e)
}

/// The response for a body that could not be read (413 when too large).
fn rejected(r: BytesRejection, max: usize) -> Response {
    let status = r.status();
    let e = if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::request(
            ApiErrorKind::Server(ServerErrorKind::Request),
            format!("the request body is larger than {} KiB", max / 1024),
            "send a shorter expression or fewer values",
        )
    } else {
        ApiError::request(
            ApiErrorKind::Server(ServerErrorKind::Request),
            format!("the request body could not be read: {r}"),
            "send a JSON object",
        )
    };
    compute::error(status, &e)
}

macro_rules! endpoint {
    ($name:ident, $f:path) => {
        async fn $name(State(s): State<Shared>, b: Result<Bytes, BytesRejection>) -> Response {
            match b {
                Ok(b) => compute::run(&s, &b, $f).await,
                Err(r) => rejected(r, s.config.max_body),
            }
        }
    };
}

endpoint!(parse, api::parse);
endpoint!(derive, api::derive);
endpoint!(eval, api::eval);
endpoint!(check, api::check);
