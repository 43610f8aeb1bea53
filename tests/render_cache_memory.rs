//! Issue 13, item 4: the render cache's budget bounds the server's memory. Starts the
//! real `ganpaint serve` binary (so the allocator is set up as in production) on a free
//! 127.0.0.1 port with the bundled demo project and a small `--render-cache-mb`, paints
//! many distinct images from several clients at once, and reads the server's resident
//! set from `/proc/<pid>/status` while it does.
//!
//! `GANPAINT_RSS_CACHE_MB`, `GANPAINT_RSS_REQUESTS` and `GANPAINT_RSS_CLIENTS` change the
//! load, for measuring other budgets by hand (`-- --nocapture` prints the figures).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the process may hold beyond the budget once warmed up: a batch's transient
/// activations, glibc's per-thread arenas and partly used pages (96 MiB; measured here up
/// to +92 MiB with a 1024 MiB budget), and what the cache evicts before it hands free
/// pages back to the OS (`RELEASE_EVERY_MAX`, 32 MiB). Before the cache handed pages
/// back, 2000 paints held +520 MiB over a 256 MiB budget.
const MARGIN_MIB: f64 = 96.0 + 32.0;

/// Only a server that never answers hits this.
const NEVER: Duration = Duration::from_secs(120);

/// The left half of a 2×1 image (README's example mask).
const MASK: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAIAAAABCAYAAAD0In+KAAAAD0lEQVR4nGP4z8AARAwMAAz8Af9c/RSVAAAAAElFTkSuQmCC";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The resident set of process `pid`, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap()
        / 1024.0
}

/// One HTTP/1.1 request on a fresh connection; the status code and body.
fn request(address: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(NEVER)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let head_end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete answer");
    let status = std::str::from_utf8(&answer[9..12])
        .unwrap()
        .parse()
        .unwrap();
    (status, answer[head_end + 4..].to_vec())
}

fn paint(address: SocketAddr, id: usize) -> u16 {
    let body = format!(
        r#"{{"project":"demo","id":{id},"strokes":[{{"concept":"tree","mode":"draw","mask":"{MASK}"}}]}}"#
    );
    let (status, answer) = request(address, "POST", "/api/v1/paint", &body);
    assert!(
        status == 200 || status == 503,
        "paint {id}: {status} {}",
        String::from_utf8_lossy(&answer)
    );
    status
}

/// Paints ids `first..first + count` from `clients` threads at once; returns the highest
/// resident set seen meanwhile and how many paints succeeded.
fn paint_many(
    address: SocketAddr,
    pid: u32,
    first: usize,
    count: usize,
    clients: usize,
) -> (f64, usize) {
    let next = Arc::new(AtomicUsize::new(first));
    let painted = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let next = next.clone();
            let painted = painted.clone();
            std::thread::spawn(move || loop {
                let id = next.fetch_add(1, Ordering::Relaxed);
                if id >= first + count {
                    break;
                }
                // A 503 (queue full) is retried: every id is painted once.
                while paint(address, id) != 200 {
                    std::thread::sleep(Duration::from_millis(20));
                }
                painted.fetch_add(1, Ordering::Relaxed);
            })
        })
        .collect();
    let mut peak = rss_mib(pid);
    while threads.iter().any(|t| !t.is_finished()) {
        peak = peak.max(rss_mib(pid));
        std::thread::sleep(Duration::from_millis(25));
    }
    for thread in threads {
        thread.join().unwrap();
    }
    (peak.max(rss_mib(pid)), painted.load(Ordering::Relaxed))
}

#[test]
fn rss_under_many_distinct_images_stays_within_the_render_cache_budget() {
    let cache_mb = env_or("GANPAINT_RSS_CACHE_MB", 256);
    let requests = env_or("GANPAINT_RSS_REQUESTS", 800);
    let clients = env_or("GANPAINT_RSS_CLIENTS", 8);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_ganpaint"))
        .current_dir(root)
        .args([
            "serve",
            "--address",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args([
            "--data",
            "dissect",
            "--render-cache-mb",
            &cache_mb.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    let pid = server.0.id();
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    let started = Instant::now();
    while TcpStream::connect(address).is_err() || request(address, "GET", "/healthz", "").0 != 200 {
        assert!(started.elapsed() < NEVER, "the server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Warm up with as many distinct images as the clients paint at once, so every
    // batch size and thread has allocated; what stays after that is the baseline.
    paint_many(address, pid, 0, 4 * clients, clients);
    let baseline = rss_mib(pid);
    let (peak, painted) = paint_many(address, pid, 1_000, requests, clients);
    let settled = rss_mib(pid);
    eprintln!(
        "--render-cache-mb {cache_mb}, {painted} paints of distinct ids from {clients} clients: \
         RSS {baseline:.0} MiB after warm-up, peak {peak:.0} MiB (+{:.0}), after {settled:.0} MiB (+{:.0})",
        peak - baseline,
        settled - baseline
    );
    assert_eq!(painted, requests);
    let allowed = cache_mb as f64 + MARGIN_MIB;
    assert!(
        peak - baseline <= allowed,
        "RSS grew by {:.0} MiB under load, over the {cache_mb} MiB budget + {MARGIN_MIB} MiB",
        peak - baseline
    );
}
