//! `matcalc serve`: the web page and the JSON API over HTTP.
//!
//! This crate has no math in it. It routes requests to [`matcalc::api`],
//! bounds what a request may cost, and serves the page (HTML, JS and CSS
//! compiled into the binary, no network needed). Limits, each in [`Config`]:
//!
//! * request bodies over 64 KiB are refused with 413;
//! * each computation runs on its own thread (with a large stack, like the
//!   CLI) and the request gets 422 when it takes longer than the time bound;
//!   a thread cannot be killed, so it finishes in the background while still
//!   holding its slot;
//! * at most [`Config::concurrency`] computations run at once; a request that
//!   cannot get a slot within [`Config::queue_wait`] gets 503;
//! * a panic in the engine is caught and becomes a 500 (a bug, never bad input);
//! * requests never touch the file system; the server binds 127.0.0.1 unless
//!   told otherwise.
#![warn(missing_docs)]

mod compute;
mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

pub use routes::router;

/// Limits of the server.
#[derive(Clone, Debug)]
pub struct Config {
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Time bound for one computation.
    pub timeout: Duration,
    /// Computations that may run at once.
    pub concurrency: usize,
    /// How long a request waits for a free slot before a 503.
    pub queue_wait: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_body: 64 * 1024,
            timeout: Duration::from_secs(5),
            concurrency: 3,
            queue_wait: Duration::from_millis(500),
        }
    }
}

/// Serve on a bound listener until `shutdown` completes, then finish the
/// requests in flight and return.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(config))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Run the server on `host:port` until Ctrl-C (SIGINT), printing the address
/// (`port` 0 picks a free one). Blocks; builds its own runtime.
pub fn run(host: &str, port: u16, config: Config) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = TcpListener::bind((host, port)).await?;
        let addr: SocketAddr = listener.local_addr()?;
        println!("matcalc serving on http://{addr}/ (Ctrl-C to stop)");
        use std::io::Write;
        std::io::stdout().flush()?;
        let stop = async {
            // If the signal handler cannot be installed, serve until killed.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        serve(listener, config, stop).await?;
        println!("matcalc: stopped");
        Ok(())
    })
}
