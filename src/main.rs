//! The desktop app entry: parses arguments and starts the window or the headless engine.

fn main() {
    println!(
        "peercall: the desktop app is not built yet; run `peercall-server --help` for the signaling server."
    );
}
