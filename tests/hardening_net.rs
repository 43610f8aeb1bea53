//! Issue 13 on a real socket (127.0.0.1): slow and stalled clients, oversized declared
//! bodies, `Connection: close`, the connection cap, and SIGTERM with a stalled upload.
//! Waits are bounded by generous timeouts that only catch a server that never answers.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::http::state_with;
use ganpaint::serve::connections::{serve_on, ConnectionLimits};
use ganpaint::serve::{app, AppState, ServeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far longer than any answer takes: only a server that never answers hits it.
const NEVER: Duration = Duration::from_secs(60);

/// Serves `state` on a fresh loopback port until the returned sender fires.
async fn start(
    state: Arc<AppState>,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = ConnectionLimits::from_config(&state.config);
    let open = state.open_connections.clone();
    let server = tokio::spawn(serve_on(listener, app(state), limits, open, async {
        let _ = stopped.await;
    }));
    (address, stop, server)
}

fn quick(adjust: impl FnOnce(&mut ServeConfig)) -> Arc<AppState> {
    state_with(|c| {
        c.body_timeout_s = 1;
        c.header_timeout_s = 1;
        c.keep_alive_s = 1;
        adjust(c);
    })
}

/// Reads until the server closes the connection (or `NEVER` passes).
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(NEVER, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&answer).into_owned()
}

/// Items 5 and 7: a body that stops half-way gets 408, `Connection: close`, and the
/// connection closed (it used to hold its buffer forever).
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_body_gets_408_and_the_connection_closes() {
    let (address, _stop, _) = start(quick(|_| {})).await;
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"POST /api/v1/paint HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"project\":")
        .await
        .unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(answer.contains("\"error\":\"request_timeout\""), "{answer}");
}

/// Item 5: connections that send nothing, or only part of a request head, are closed.
#[tokio::test(flavor = "multi_thread")]
async fn idle_and_headerless_connections_are_closed() {
    let (address, _stop, _) = start(quick(|_| {})).await;
    let mut silent = TcpStream::connect(address).await.unwrap();
    let mut partial = TcpStream::connect(address).await.unwrap();
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert_eq!(read_to_close(&mut silent).await, "");
    let _ = read_to_close(&mut partial).await;
    // A kept-alive connection answers, then is closed once idle.
    let mut kept = TcpStream::connect(address).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut kept).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Items 6 and 7: a declared body over the limit is refused at once, before any of it is
/// sent, with `Connection: close`; a rejected body that was never read closes too, while
/// a fully read request keeps the connection.
#[tokio::test(flavor = "multi_thread")]
async fn oversized_declared_bodies_are_refused_at_once_and_close() {
    let (address, _stop, _) = start(state_with(|c| c.keep_alive_s = 60)).await;
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"POST /api/v1/paint HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(answer.contains("Content-Length 99999999999"), "{answer}");

    // 405 on a POST whose body the router never reads: the connection closes.
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n0123456789")
        .await
        .unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );

    // A request read to the end leaves the connection open for the next one.
    let client = reqwest::Client::new();
    let body = serde_json::json!({ "project": "nope", "seed": 1, "strokes": [] });
    let response = client
        .post(format!("http://{address}/api/v1/paint"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response
        .headers()
        .get("connection")
        .is_none_or(|v| v != "close"));
}

/// Item 5: at most `--max-connections` are open; the next waits until one closes.
#[tokio::test(flavor = "multi_thread")]
async fn open_connections_are_capped() {
    let state = state_with(|c| {
        c.max_connections = 2;
        c.keep_alive_s = 60;
        c.header_timeout_s = 60;
    });
    let (address, _stop, _) = start(state.clone()).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buffer = [0u8; 1024];
        let n = tokio::time::timeout(NEVER, stream.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert!(buffer[..n].starts_with(b"HTTP/1.1 200"));
        held.push(stream);
    }
    let third = tokio::spawn(async move {
        reqwest::get(format!("http://{address}/healthz"))
            .await
            .unwrap()
            .status()
    });
    tokio::task::yield_now().await;
    assert!(
        state
            .open_connections
            .load(std::sync::atomic::Ordering::Relaxed)
            <= 2
    );
    drop(held.pop());
    let status = tokio::time::timeout(NEVER, third).await.unwrap().unwrap();
    assert_eq!(status, 200);
}

/// Item 8: SIGTERM with a stalled upload open: the process exits after its grace period
/// (it used to stay alive indefinitely).
#[test]
fn sigterm_with_a_stalled_upload_exits_after_the_grace_period() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_ganpaint"))
        .args(["serve", "--device", "cpu", "--port", &port.to_string()])
        .args(["--shutdown-grace-s", "2", "--body-timeout-s", "600"])
        .arg("--data")
        .arg(common::tiny_data_dir())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let address = format!("127.0.0.1:{port}");
    let mut upload = None;
    for _ in 0..600 {
        if let Ok(stream) = std::net::TcpStream::connect(&address) {
            upload = Some(stream);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut upload = upload.expect("the server never listened");
    use std::io::Write;
    upload
        .write_all(
            b"POST /api/v1/paint HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{\"pro",
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut exited = None;
    for _ in 0..600 {
        if let Some(status) = server.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if exited.is_none() {
        let _ = server.kill();
    }
    let status = exited.expect("still running 60 s after SIGTERM");
    assert!(status.success(), "{status}");
    drop(upload);
}
