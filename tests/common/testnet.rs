//! Two network namespaces joined by a veth pair on TEST-NET-1 (192.0.2.0/24), each with a default
//! route into that link and nowhere else: what browsers need to gather ICE candidates (Firefox finds
//! none in a namespace with only `lo`; Chromium wants a default route). Removed on drop.

use std::net::Ipv4Addr;
use std::process::Command;

/// Why namespaces can't be made here, if they can't: tests then say so and pass without running.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: network namespaces need CAP_NET_ADMIN".into());
    }
    let found = Command::new("sh").args(["-c", "command -v ip"]).output();
    if !found.map(|o| o.status.success()).unwrap_or(false) {
        return Some("`ip` is missing (make test-deps installs iproute2)".into());
    }
    None
}

/// One end of the link: a namespace and its address.
pub struct Namespace {
    /// The namespace's name (`ip netns exec NAME ...`).
    pub name: String,
    /// Its address on the link.
    pub addr: Ipv4Addr,
}

impl Namespace {
    /// A command that runs `program` inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// The same for tokio.
    pub fn tokio_command(&self, program: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }
}

/// The pair: `a` at 192.0.2.1, `b` at 192.0.2.2, each routing everything through the veth.
pub struct TestNet {
    /// The first end.
    pub a: Namespace,
    /// The second end.
    pub b: Namespace,
}

fn run(cmd: &str) -> Result<(), String> {
    let out = Command::new("sh").args(["-c", cmd]).output().map_err(|e| format!("sh: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl TestNet {
    /// Makes the pair; `tag` (a few letters) keeps concurrent tests' namespaces apart.
    pub fn new(tag: &str) -> Result<TestNet, String> {
        let id = format!("{tag}{}", std::process::id() % 100_000);
        let net = TestNet {
            a: Namespace { name: format!("tna-{id}"), addr: Ipv4Addr::new(192, 0, 2, 1) },
            b: Namespace { name: format!("tnb-{id}"), addr: Ipv4Addr::new(192, 0, 2, 2) },
        };
        // Leftovers of a killed run with the same id would make `add` fail.
        net.remove();
        let (a, b) = (&net.a.name, &net.b.name);
        let (va, vb) = (format!("ta-{id}"), format!("tb-{id}"));
        run(&format!("ip netns add {a} && ip netns add {b}"))?;
        run(&format!("ip link add {va} netns {a} type veth peer name {vb} netns {b}"))?;
        for (ns, dev, addr) in [(a, &va, net.a.addr), (b, &vb, net.b.addr)] {
            run(&format!(
                "ip -n {ns} addr add {addr}/24 dev {dev} && ip -n {ns} link set {dev} up && \
                 ip -n {ns} link set lo up && ip -n {ns} route add default dev {dev}"
            ))?;
        }
        Ok(net)
    }

    fn remove(&self) {
        for ns in [&self.a.name, &self.b.name] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // Deleting a namespace takes its veth end with it, and the peer end goes too.
        self.remove();
    }
}
