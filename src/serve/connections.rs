//! The accept loop: HTTP/1 connections with bounded lifetimes, and a bounded shutdown.
//!
//! `axum::serve` keeps a connection as long as its client does. Here every connection is
//! bounded in time and in number:
//! - at most `--max-connections` are open; more wait in the kernel's listen backlog, so
//!   file descriptors (and `accept`) are never exhausted;
//! - a request's headers must arrive within `--header-timeout-s` (hyper's header timer,
//!   which runs from the moment the connection waits for a request);
//! - a connection with no request in progress for `--keep-alive-s` is closed (hyper closes
//!   an idle connection at once on a graceful shutdown);
//! - the body's pace is guarded per request in [`super::limits`].
//!
//! On the shutdown signal the listener closes, every connection is asked to finish its
//! request and close, and after `--shutdown-grace-s` the server returns anyway, dropping
//! whatever is still open (a stalled upload, say).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

/// Connection limits, from [`super::ServeConfig`].
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub keep_alive: Duration,
    pub shutdown_grace: Duration,
}

impl ConnectionLimits {
    pub fn from_config(config: &super::ServeConfig) -> Self {
        ConnectionLimits {
            max_connections: config.max_connections.max(1),
            header_timeout: Duration::from_secs(config.header_timeout_s.max(1)),
            keep_alive: Duration::from_secs(config.keep_alive_s.max(1)),
            shutdown_grace: Duration::from_secs(config.shutdown_grace_s),
        }
    }
}

/// What a connection is doing: requests in progress, and when the last one ended.
struct Activity {
    in_flight: AtomicUsize,
    last_done: Mutex<Instant>,
}

impl Activity {
    /// When the connection becomes idle for too long, if nothing happens before then;
    /// `None` while a request is in progress.
    fn idle_deadline(&self, keep_alive: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(*self.last_done.lock().expect("activity lock") + keep_alive)
    }
}

/// Counts a request in progress for as long as it lives.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.last_done.lock().expect("activity lock") = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets open requests finish
/// for at most `limits.shutdown_grace`. `open` counts the open connections.
pub async fn serve_on(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    open: Arc<AtomicUsize>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: not fatal.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (app, mut stop_rx, open) = (app.clone(), stop_rx.clone(), open.clone());
        open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let _permit = permit;
            let activity = Arc::new(Activity {
                in_flight: AtomicUsize::new(0),
                last_done: Mutex::new(Instant::now()),
            });
            let tracked = activity.clone();
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let in_flight = InFlight::start(&tracked);
                let app = app.clone();
                async move {
                    let response = app.oneshot(request.map(axum::body::Body::new)).await;
                    drop(in_flight);
                    response
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                // Our own limit (in `limits`) answers 431 with a JSON body first.
                .max_headers(super::limits::MAX_HEADERS * 2);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let mut closing = false;
            loop {
                let idle = activity.idle_deadline(limits.keep_alive);
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    changed = stop_rx.changed(), if !closing => {
                        if changed.is_err() || *stop_rx.borrow() {
                            closing = true;
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                    () = sleep_until(idle), if !closing => {
                        if activity.idle_deadline(limits.keep_alive).is_some_and(|d| d <= Instant::now()) {
                            closing = true;
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a slot: having them all back means all have closed.
    let all = limits.max_connections as u32;
    if tokio::time::timeout(limits.shutdown_grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            open = open.load(Ordering::Relaxed),
            grace_s = limits.shutdown_grace.as_secs(),
            "connections still open after the shutdown grace period; exiting anyway"
        );
    }
}

/// Sleeps until `deadline`, or forever for `None`; wakes at least once a second so a
/// request that ended while sleeping is seen.
async fn sleep_until(deadline: Option<Instant>) {
    let next = Instant::now() + Duration::from_secs(1);
    tokio::time::sleep_until(deadline.map_or(next, |d| d.min(next))).await;
}
