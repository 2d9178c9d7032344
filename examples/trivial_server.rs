//! A trivial loopback HTTP server for load-generator measurements (`docs/load.md`).
//!
//! `cargo run --release --example trivial_server -- 127.0.0.1:8089 [DELAY_MS] [THREADS]`
//! serves `GET /` with `ok` after an optional async delay; it prints its address and runs until
//! killed.

use std::time::Duration;

use axum::{Router, routing::get};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let delay_ms: u64 = args.next().and_then(|d| d.parse().ok()).unwrap_or(0);
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let delay = Duration::from_millis(delay_ms);
        let app = Router::new().route(
            "/",
            get(move || async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                "ok"
            }),
        );
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!("listening on {}", listener.local_addr()?);
        axum::serve(listener, app).await
    })
}
