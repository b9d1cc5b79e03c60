//! The processes the bench measures: `peercall-server` nodes and their `redis-server`, and what
//! /proc says of their CPU time and memory.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Args;

/// `program`, on `cpus` when given (`taskset -c`, which execs it: the child's pid stays the program's).
fn pinned(program: &OsStr, cpus: Option<&str>) -> Command {
    match cpus {
        Some(cpus) => {
            let mut taskset = Command::new("taskset");
            taskset.args(["-c", cpus]).arg(program);
            taskset
        }
        None => Command::new(program),
    }
}

/// `peercall-server` as a child process, stopped (SIGTERM) when dropped.
pub(crate) struct ChildServer {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl ChildServer {
    pub(crate) async fn start(args: &Args, redis: Option<&str>) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?.with_file_name("peercall-server");
        if !exe.exists() {
            bail!("{} not found: build it too (cargo build --release --bin peercall-server)", exe.display());
        }
        // Ask the kernel for a free port, then hand it to the server.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let mut command = pinned(exe.as_os_str(), args.server_cpus.as_deref());
        if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
            command.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        if let Some(url) = redis {
            command.args(["--redis", url]);
        }
        let child = command
            .args(["--listen", &addr.to_string()])
            // The bench measures relaying, not the per-client limiter: lift it (and queue limits)
            // for the saturation phase's bursts.
            .args(["--rate", "1000000", "--burst", "1000000", "--max-queued", "65536"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let server = Self { child, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        // A wss server does not answer plain HTTP: there, an open port is enough.
        let up = || async {
            if args.tls_cert.is_some() {
                TcpStream::connect(addr).await.is_ok()
            } else {
                healthy(addr).await
            }
        };
        while !up().await {
            if Instant::now() > deadline {
                bail!("{} did not answer /healthz on {addr} within 10 s", exe.display());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(server)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

async fn healthy(addr: SocketAddr) -> bool {
    let Ok(mut tcp) = TcpStream::connect(addr).await else { return false };
    if tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").await.is_err() {
        return false;
    }
    let mut response = Vec::new();
    let _ = tcp.read_to_end(&mut response).await;
    response.starts_with(b"HTTP/1.1 200")
}

/// `redis-server` on a free loopback port, without persistence, for a multi-node run.
pub(crate) struct RedisChild {
    pub(crate) child: Child,
    port: u16,
}

impl RedisChild {
    pub(crate) async fn start(cpus: Option<&str>) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = pinned(OsStr::new("redis-server"), cpus)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start redis-server (Debian: apt-get install redis-server), or pass --redis")?;
        let redis = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if Instant::now() > deadline {
                bail!("redis-server did not open port {port} within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(redis)
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds of all `pids` together; `None` when there are none (an outside server).
pub(crate) fn cpu_total(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| cpu_seconds(pid)).sum()
}

/// A `kB` figure of /proc/<pid>/status summed over `pids`; `None` when there are none.
pub(crate) fn rss_total(pids: &[u32], field: &str) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| rss_kib(pid, field)).sum()
}

/// User plus system CPU seconds of a process, from /proc/<pid>/stat.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th of them.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks / hz as f64)
}

/// A `kB` line of /proc/<pid>/status (VmRSS, VmHWM), in KiB.
fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}
