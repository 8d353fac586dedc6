//! Running one API call: parse the body, take a slot, compute on a thread of
//! its own with a time bound, turn the outcome into a response.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use matcalc::api::{ApiError, ApiErrorKind, ServerErrorKind};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Semaphore};

/// Stack of a computation thread: the engine recurses over trees up to the
/// parser's depth bound (the CLI gives it the same). Reserved, not committed.
const STACK: usize = 1 << 30;

/// What the handlers share.
#[derive(Clone)]
pub struct Shared {
    /// Free computation slots.
    pub slots: Arc<Semaphore>,
    /// The limits.
    pub config: crate::Config,
}

/// A JSON response with a status.
pub fn json(status: StatusCode, body: String) -> Response {
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// An error response.
pub fn error(status: StatusCode, e: &ApiError) -> Response {
    let body = serde_json::to_string(e).unwrap_or_else(|_| format!("{{\"message\":{:?}}}", e.message));
    json(status, body)
}

fn server_error(kind: ServerErrorKind, message: impl Into<String>, hint: &str) -> ApiError {
    ApiError::request(ApiErrorKind::Server(kind), message, hint)
}

/// Parse the body as `Req`, run `f` on it within the limits, answer with its
/// result as JSON (200), its error (400), or the server's own errors: 422 when
/// it takes too long, 503 when every slot is taken, 500 on a panic.
pub async fn run<Req, Res>(shared: &Shared, body: &[u8], f: fn(&Req) -> Result<Res, ApiError>) -> Response
where
    Req: DeserializeOwned + Send + 'static,
    Res: Serialize + 'static,
{
    let req: Req = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            let e = server_error(
                ServerErrorKind::Request,
                format!("the request body is not a valid request: {e}"),
                "send a JSON object such as {\"expr\": \"x'*A*x\", \"wrt\": [\"x\"]} (see /openapi.json)",
            );
            return error(StatusCode::BAD_REQUEST, &e);
        }
    };
    let cfg = &shared.config;
    let permit = match tokio::time::timeout(cfg.queue_wait, shared.slots.clone().acquire_owned()).await {
        Ok(Ok(p)) => p,
        _ => {
            let e = server_error(
                ServerErrorKind::Busy,
                format!("the server is busy ({} computations running)", cfg.concurrency),
                "try again in a few seconds",
            );
            return error(StatusCode::SERVICE_UNAVAILABLE, &e);
        }
    };
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("matcalc-compute".into())
        .stack_size(STACK)
        .spawn(move || {
            // The slot is held until the computation really ends, even after a timeout.
            let _permit = permit;
            let out = catch_unwind(AssertUnwindSafe(|| f(&req).map(|r| serde_json::to_string(&r))));
            let _ = tx.send(out);
        });
    if spawned.is_err() {
        let e = server_error(ServerErrorKind::Busy, "could not start a computation", "try again");
        return error(StatusCode::SERVICE_UNAVAILABLE, &e);
    }
    outcome(tokio::time::timeout(cfg.timeout, rx).await, cfg.timeout)
}

type Outcome = Result<
    Result<std::thread::Result<Result<serde_json::Result<String>, ApiError>>, oneshot::error::RecvError>,
    tokio::time::error::Elapsed,
>;

fn outcome(o: Outcome, limit: Duration) -> Response {
    match o {
        Ok(Ok(Ok(Ok(Ok(body))))) => json(StatusCode::OK, body),
        Ok(Ok(Ok(Err(e)))) => error(StatusCode::BAD_REQUEST, &e),
        Err(_) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &server_error(
                ServerErrorKind::Timeout,
                format!("the computation took longer than {} s", limit.as_secs_f64()),
                "simplify the expression, lower the order, or use smaller dimensions",
            ),
        ),
        Ok(Ok(Ok(Ok(Err(_))))) | Ok(Ok(Err(_))) | Ok(Err(_)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &server_error(
                ServerErrorKind::Internal,
                "internal failure (this is a bug in matcalc; please report it with the request)",
                "the same request will fail again; a different formulation may work",
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    fn shared() -> Shared {
        Shared {
            slots: Arc::new(Semaphore::new(1)),
            config: crate::Config::default(),
        }
    }

    fn boom(_: &serde_json::Value) -> Result<serde_json::Value, ApiError> {
        panic!("a bug in the engine")
    }

    fn echo(v: &serde_json::Value) -> Result<serde_json::Value, ApiError> {
        Ok(v.clone())
    }

    async fn body(r: Response) -> serde_json::Value {
        serde_json::from_slice(&to_bytes(r.into_body(), 1 << 20).await.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_panic_is_a_500_and_frees_its_slot() {
        let s = shared();
        let r = run(&s, b"{}", boom).await;
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body(r).await["kind"], "internal");
        // The slot came back: the next call runs.
        let r = run(&s, b"{\"a\": 1}", echo).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body(r).await, serde_json::json!({"a": 1}));
    }
}
