//! Memory across many calls: closed peer connections, tracks, threads and decoders must be freed.
//! In its own test binary because RSS is process-wide: other tests running alongside would move it.

mod common;

use common::*;
use peercall::call::{CallState, Command};
use std::time::Duration;

/// Resident set size of this process, bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// 20 calls in a row between the same two engines: each connects and decodes, and memory does not grow
/// with the number of calls (closed peer connections, tracks, threads and decoders must be freed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_calls_in_a_row_do_not_leak() {
    let (_server, url) = start_server().await;
    let (alice, bob) = pair(&url, "alice", "bob").await;
    let mut rss_after = Vec::new();
    for round in 1..=20 {
        alice.send(Command::Call("bob".into()));
        wait_state(&alice, &format!("call {round} connects"), |s| matches!(s, CallState::InCall { .. }))
            .await;
        wait_frames(&alice, 5).await;
        wait_frames(&bob, 5).await;
        alice.send(Command::HangUp);
        wait_state(&alice, "alice idle", CallState::is_idle).await;
        wait_state(&bob, "bob idle", CallState::is_idle).await;
        // Let the closed connections' tasks and threads finish, and have glibc hand back what they
        // freed, so that RSS counts what is still held rather than what the allocator caches.
        tokio::time::sleep(Duration::from_millis(300)).await;
        // SAFETY: malloc_trim only walks glibc's own heap structures.
        unsafe { libc::malloc_trim(0) };
        rss_after.push(rss_bytes());
    }
    let (second, last) = (rss_after[1], rss_after[19]);
    let growth_mb = (last as f64 - second as f64) / 1e6;
    eprintln!("RSS after each call (MB): {:?}", rss_after.iter().map(|b| b / 1_000_000).collect::<Vec<_>>());
    assert!(growth_mb < 8.0, "RSS grew {growth_mb:.1} MB from call 2 to call 20");
}
