//! Peercall on people's desktops: the Debian package as dpkg sees it (files, dependencies, menu entry,
//! binaries that run and call), the window as a screen reader sees it (AT-SPI over D-Bus, pressed
//! through the accessibility interface only), and the window driven by the keyboard alone.

mod common;

use common::desktop::{
    artifacts, ensure_tool, free_port, loudest, screenshot, start_xvfb, wait_listening, wait_title, xdotool,
    Reaped,
};
use common::{wait_ended, wait_state, wait_users, within};
use peercall::call::{CallState, Command, EndReason, Engine, EngineConfig};
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Output, Stdio};
use std::time::{Duration, Instant};

/// The window tests share two cores: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    let program = program.as_ref();
    let out = Process::new(program).args(args).output().unwrap_or_else(|e| panic!("{program:?} runs: {e}"));
    assert!(
        out.status.success(),
        "{program:?} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh, empty folder under the test build's scratch space.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// Builds the .deb with cargo-deb from this test build's own binaries (`--no-build`: the package's
/// layout, dependencies and stripping are what `make deb` makes, without a second, release build of
/// everything inside `make test`). Returns the package and how long cargo-deb took.
fn build_deb() -> (PathBuf, Duration) {
    let has_cargo_deb =
        Process::new("cargo").args(["deb", "--version"]).output().is_ok_and(|o| o.status.success());
    if !has_cargo_deb || Process::new("dpkg-shlibdeps").arg("--version").output().is_err() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-deps.sh");
        assert!(
            Process::new("bash").arg(script).arg("deb").status().is_ok_and(|s| s.success()),
            "cargo-deb is missing and scripts/install-deps.sh deb could not install it"
        );
    }
    // cargo-deb reads binaries from <target dir>/release/: a target dir of our own holds this build's.
    let stage = scratch("deb-stage");
    std::fs::create_dir_all(stage.join("release")).expect("stage/release");
    for bin in [env!("CARGO_BIN_EXE_peercall"), env!("CARGO_BIN_EXE_peercall-server")] {
        let name = Path::new(bin).file_name().expect("a file name");
        std::fs::copy(bin, stage.join("release").join(name)).expect("binary staged");
    }
    let out = stage.join("out");
    std::fs::create_dir_all(&out).expect("output folder");
    let started = Instant::now();
    let built = Process::new("cargo")
        .args(["deb", "--no-build", "--fast", "--quiet", "--output"])
        .arg(&out)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", &stage)
        .output()
        .expect("cargo deb runs");
    let took = started.elapsed();
    assert!(built.status.success(), "cargo deb failed: {}", String::from_utf8_lossy(&built.stderr));
    let deb = std::fs::read_dir(&out)
        .expect("output folder lists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("cargo deb wrote a .deb");
    (deb, took)
}

/// Does the ELF file carry DWARF debug info? (`readelf -S` lists a .debug_info section.)
fn has_debug_info(path: &Path) -> bool {
    stdout(&run("readelf", &["-S", &path.to_string_lossy()])).contains(".debug_info")
}

#[test]
fn the_package_installs_what_a_desktop_needs_and_its_binaries_call() {
    let (deb, took) = build_deb();
    let deb_path = deb.to_string_lossy().into_owned();

    // The files: both binaries, the menu entry, the icon at every size desktops ask for.
    let listing = stdout(&run("dpkg-deb", &["-c", &deb_path]));
    for file in [
        "./usr/bin/peercall",
        "./usr/bin/peercall-server",
        "./usr/share/applications/peercall.desktop",
        "./usr/share/icons/hicolor/48x48/apps/peercall.png",
        "./usr/share/icons/hicolor/128x128/apps/peercall.png",
        "./usr/share/icons/hicolor/256x256/apps/peercall.png",
        "./usr/share/icons/hicolor/scalable/apps/peercall.svg",
        "./usr/share/doc/peercall/copyright",
    ] {
        assert!(listing.lines().any(|l| l.ends_with(file)), "{file} in the package:\n{listing}");
    }

    // The declared dependencies: what the binaries link (found by dpkg-shlibdeps) and what the window
    // opens at run time (which no linker sees).
    let field = |name: &str| stdout(&run("dpkg-deb", &["-f", &deb_path, name])).trim().to_owned();
    assert_eq!(field("Package"), "peercall");
    assert!(field("Version").starts_with(env!("CARGO_PKG_VERSION")), "version {}", field("Version"));
    let depends = field("Depends");
    for lib in ["libc6", "libasound2", "libgl1", "libegl1", "libxkbcommon-x11-0", "libwayland-client0"] {
        assert!(depends.split(',').any(|d| d.trim().starts_with(lib)), "{lib} in Depends: {depends}");
    }

    // Unpacked: the menu entry validates and starts the installed binary; the binaries are stripped,
    // and report their version.
    let root = scratch("deb-root");
    run("dpkg-deb", &["-x", &deb_path, &root.to_string_lossy()]);
    ensure_tool("desktop-file-validate", &["--help"]);
    let entry = root.join("usr/share/applications/peercall.desktop");
    run("desktop-file-validate", &[&entry.to_string_lossy()]);
    let entry = std::fs::read_to_string(&entry).expect("the entry reads");
    assert!(entry.lines().any(|l| l == "Exec=peercall" || l.starts_with("Exec=peercall ")), "{entry}");
    assert!(entry.lines().any(|l| l == "Icon=peercall"), "{entry}");
    let (app, server) = (root.join("usr/bin/peercall"), root.join("usr/bin/peercall-server"));
    for bin in [&app, &server] {
        assert!(!has_debug_info(bin), "{} is stripped", bin.display());
    }
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(stdout(&run(&app, &["--version"])).trim(), format!("peercall {version}"));
    assert_eq!(stdout(&run(&server, &["--version"])).trim(), format!("peercall-server {version}"));

    // A headless call between two unpacked apps through the unpacked server.
    let port = free_port();
    let url = format!("ws://127.0.0.1:{port}/");
    let listen = format!("127.0.0.1:{port}");
    let server_log = std::fs::File::create(artifacts().join("deb-server.log")).expect("log file");
    let _server =
        Reaped(Process::new(&server).args(["--listen", &listen]).stderr(server_log).spawn().expect("server"));
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(wait_listening(port, 10));
    let headless = |name: &str, extra: &[&str]| {
        Process::new(&app)
            .args(["--headless", "--name", name, "--server", &url, "--bind", "127.0.0.1:0"])
            .args(["--video", "320x240@15"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the unpacked app starts")
    };
    let _bob = Reaped(headless("bob", &["--auto-answer"]));
    let alice = headless("alice", &["--call", "bob", "--duration", "3"]);
    let alice = alice.wait_with_output().expect("alice runs to the end");
    let said = stdout(&alice);
    assert!(alice.status.success(), "alice's call: {said}");
    assert!(said.contains("call: in call with bob"), "alice got into the call:\n{said}");
    let frames_in = said.lines().filter(|l| l.starts_with("stats:")).any(|l| {
        let fps = l.split("| in ").nth(1).and_then(|rest| rest.split_whitespace().next());
        fps.and_then(|f| f.parse::<f64>().ok()).is_some_and(|f| f > 5.0)
    });
    assert!(frames_in, "alice decoded bob's video:\n{said}");

    let size = std::fs::metadata(&deb).map(|m| m.len()).unwrap_or(0);
    let figures = format!(
        "package (test build's binaries, --fast): {:.1} MB .deb, Installed-Size {} KiB, cargo-deb {:.1} s\n",
        size as f64 / 1e6,
        field("Installed-Size"),
        took.as_secs_f64()
    );
    print!("{figures}");
    std::fs::write(artifacts().join("deb-figures.txt"), figures).expect("figures saved");
}

/// The display name the form should offer: the app's own reading of this account (its rules, GECOS
/// full name with `&`, the login name, a cut to the server's limit, are unit-tested in `ui::settings`).
fn account_name() -> String {
    peercall::ui::settings::Settings::default().name
}

/// A private D-Bus session bus with AT-SPI switched on, as a desktop with a screen reader has.
fn start_accessibility_bus(display: &str) -> (Reaped, String) {
    ensure_tool("dbus-daemon", &["--version"]);
    // Services the bus starts inherit its environment: the AT-SPI bus's socket goes to a runtime dir of
    // this test's own, and GSettings stays in memory (the launcher would otherwise save "accessibility
    // on" in the user's dconf for good).
    let runtime = scratch("a11y-runtime");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).expect("runtime dir private");
    let mut daemon = Process::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("GSETTINGS_BACKEND", "memory")
        .env("DISPLAY", display)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dbus-daemon starts");
    let mut address = String::new();
    BufReader::new(daemon.stdout.take().expect("piped")).read_line(&mut address).expect("bus address");
    let address = address.trim().to_owned();
    assert!(address.starts_with("unix:"), "a session bus address: {address:?}");
    // The bus activates at-spi-bus-launcher (org.a11y.Bus); IsEnabled is what screen readers set, and
    // what AccessKit waits for before it exposes the window.
    let enabled = Process::new("dbus-send")
        .args(["--session", "--print-reply", "--dest=org.a11y.Bus", "/org/a11y/bus"])
        .args(["org.freedesktop.DBus.Properties.Set", "string:org.a11y.Status", "string:IsEnabled"])
        .arg("variant:boolean:true")
        .env("DBUS_SESSION_BUS_ADDRESS", &address)
        .env("DISPLAY", display)
        .output()
        .expect("dbus-send runs");
    assert!(enabled.status.success(), "AT-SPI switched on: {}", String::from_utf8_lossy(&enabled.stderr));
    (Reaped(daemon), address)
}

/// Starts the window at its login form (a fresh config dir, no name given) on `display`.
fn start_form(display: &str, port: u16, env: &[(&str, &str)], log: &str) -> Reaped {
    let config_home = scratch(&format!("desktop-config-{port}"));
    let log = std::fs::File::create(artifacts().join(log)).expect("log file");
    let child = Process::new(env!("CARGO_BIN_EXE_peercall"))
        .args(["--server", &format!("ws://127.0.0.1:{port}/"), "--bind", "127.0.0.1:0"])
        .args(["--video", "320x240@15"])
        .env("DISPLAY", display)
        .env("XDG_CONFIG_HOME", &config_home)
        .env_remove("WAYLAND_DISPLAY")
        .env("RUST_LOG", "peercall=info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the peercall binary starts");
    Reaped(child)
}

/// A headless "bob" on the window's built-in server, once it listens; answers calls by itself.
async fn join_bob(port: u16, auto_answer: bool) -> Engine {
    wait_listening(port, 20).await;
    let mut config = EngineConfig::new("bob", format!("ws://127.0.0.1:{port}/")).with_pattern(320, 240, 15);
    config.peer.bind_addrs = vec!["127.0.0.1:0".to_owned()];
    config.auto_answer = auto_answer;
    let bob = Engine::start(config);
    within(20, "bob and the window in the room", async {
        loop {
            if bob.users().borrow().len() == 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    bob
}

/// The window's name as bob sees it in the room.
fn other_than_bob(bob: &Engine) -> String {
    bob.users().borrow().iter().find(|u| *u != "bob").cloned().expect("the window in bob's list")
}

/// The AT-SPI driver's lines, each awaited with a deadline; a "fail:" line fails the test with it.
struct Driver {
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Driver {
    async fn expect(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            match self.lines.try_recv() {
                Ok(line) => {
                    self.seen.push(line.clone());
                    assert!(!line.starts_with("fail:"), "the screen-reader driver: {line}");
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.trim().to_owned();
                    }
                }
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    panic!("the driver ended before {prefix:?}; it said {:?}", self.seen)
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {
                    assert!(
                        Instant::now() < deadline,
                        "no {prefix:?} from the driver; it said {:?}",
                        self.seen
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screen_reader_finds_calls_and_hangs_up_and_hears_an_incoming_call() {
    let _turn = ONE_AT_A_TIME.lock().await;
    ensure_tool("xrdb", &["-version"]);
    let (_xvfb, display) = start_xvfb("2200x1500x24");
    // The desktop's text scale (what GNOME's "large text" or a DPI setting leaves in Xft.dpi): 150 %.
    let mut xrdb = Process::new("xrdb")
        .args(["-merge"])
        .env("DISPLAY", &display)
        .stdin(Stdio::piped())
        .spawn()
        .expect("xrdb");
    xrdb.stdin.take().expect("stdin").write_all(b"Xft.dpi: 144\n").expect("xrdb input");
    assert!(xrdb.wait().is_ok_and(|s| s.success()), "xrdb took Xft.dpi");
    let (_bus, bus) = start_accessibility_bus(&display);
    let port = free_port();
    let env = [("DBUS_SESSION_BUS_ADDRESS", bus.as_str())];
    let _app = start_form(&display, port, &env, "a11y-app.log");

    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/desktop/atspi_driver.py");
    let mut child = Process::new("/usr/bin/python3")
        .arg(driver)
        .arg("bob")
        .env("DBUS_SESSION_BUS_ADDRESS", &bus)
        .env("DISPLAY", &display)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(artifacts().join("a11y-driver.log")).expect("log file"))
        .spawn()
        .expect("python3 runs the AT-SPI driver");
    let (tx, lines) = std::sync::mpsc::channel();
    let out = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        let mut lines = BufReader::new(out).lines().map_while(Result::ok);
        // A "fail:" line carries the tree on the lines after it: hand them over as one.
        while let Some(line) = lines.next() {
            let line = if line.starts_with("fail:") {
                std::iter::once(line).chain(lines.by_ref()).collect::<Vec<_>>().join("\n")
            } else {
                line
            };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let _python = Reaped(child);
    let mut driver = Driver { lines, seen: Vec::new() };

    // The form offers the account's name; Join is 150 % of its 32-point height at 144 dpi.
    assert_eq!(driver.expect("name-field:").await, account_name());
    let join = driver.expect("join-button:").await;
    let height: f64 = join.split_whitespace().nth(1).and_then(|h| h.parse().ok()).expect("a height");
    assert!(height >= 32.0 * 1.4, "Join is {height} px high at Xft.dpi 144 (32 at 96 dpi)");
    driver.expect("pressed: Join").await;
    let bob = join_bob(port, true).await;
    let window = other_than_bob(&bob);
    assert_eq!(window, account_name(), "the window joined under the account's name");

    // Pressing bob in the list calls him; both sides see the call; Hang Up ends it for both.
    driver.expect("pressed: bob").await;
    wait_state(
        &bob,
        "bob in the window's call",
        |s| matches!(s, CallState::InCall { peer } if *peer == window),
    )
    .await;
    let mut events = bob.subscribe();
    driver.expect("in-call:").await;
    screenshot(&display, "a11y-in-call.png");
    driver.expect("pressed: Hang Up").await;
    let ended = wait_ended(&mut events, "bob to see the hang-up").await;
    assert_eq!(ended, EndReason::RemoteHungUp);
    driver.expect("idle:").await;

    // bob calls: the window announces it, and Decline (found in the alert by name) tells bob.
    driver.expect("listening").await;
    bob.send(Command::Call(window.clone()));
    let announced = driver.expect("announced:").await;
    assert_eq!(announced, "bob is calling");
    screenshot(&display, "a11y-incoming.png");
    driver.expect("pressed: Decline").await;
    let ended = wait_ended(&mut events, "bob to be declined").await;
    assert_eq!(ended, EndReason::Declined);
    driver.expect("done").await;
    bob.send(Command::Shutdown);
}

/// The mean brightness of bob's latest picture from the window (0–255).
fn brightness(bob: &Engine) -> f64 {
    let frame = bob.remote_video().borrow().clone().expect("a picture from the window");
    let pixels = frame.pixels.chunks_exact(4).map(|p| (p[0] as u64 + p[1] as u64 + p[2] as u64) / 3);
    pixels.sum::<u64>() as f64 / (frame.width * frame.height) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyboard_alone_logs_in_calls_mutes_and_hangs_up() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (_xvfb, display) = start_xvfb("1600x1000x24");
    let port = free_port();
    let _app = start_form(&display, port, &[], "keys-app.log");
    wait_title(&display, "the window", |t| t == "Peercall").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Without a window manager nobody gives the window the keyboard: take it, as a desktop would.
    xdotool(&display, &["search", "--class", "peercall", "windowfocus", "--sync"]);

    // Log in: the name field has the keys when the form opens; Enter joins.
    xdotool(&display, &["key", "ctrl+a"]);
    xdotool(&display, &["type", "--delay", "20", "keys"]);
    screenshot(&display, "keys-form.png");
    xdotool(&display, &["key", "Return"]);
    let bob = join_bob(port, true).await;
    wait_users(&bob, &["keys", "bob"]).await;
    wait_title(&display, "the window in the lobby", |t| t == "Peercall \u{2014} keys in lobby").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Select bob (↓ enters the list) and call him with Enter.
    xdotool(&display, &["key", "Down"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    screenshot(&display, "keys-selected.png");
    xdotool(&display, &["key", "Return"]);
    wait_state(
        &bob,
        "bob in the window's call",
        |s| matches!(s, CallState::InCall { peer } if peer == "keys"),
    )
    .await;
    wait_title(&display, "the call in the title", |t| t.ends_with("in call with bob")).await;
    common::wait_frames(&bob, 10).await;

    // M mutes: bob hears the window's tone, then silence.
    let mut audio = bob.remote_audio();
    assert!(loudest(&mut audio, 10).await > 1000, "the window's tone reaches bob");
    xdotool(&display, &["key", "m"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    audio = audio.resubscribe();
    assert!(loudest(&mut audio, 10).await < 100, "after M bob hears silence");

    // V turns the camera off: bob's picture of the window goes black.
    let lit = brightness(&bob);
    xdotool(&display, &["key", "v"]);
    let dark = within(10, "the window's picture to go dark", async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = brightness(&bob);
            if now < 10.0 {
                return now;
            }
        }
    })
    .await;
    assert!(lit > 40.0, "the pattern was lit before V ({lit:.0})");
    screenshot(&display, "keys-muted-camera-off.png");

    // Esc hangs up; bob is told and the window goes back to the lobby.
    let mut events = bob.subscribe();
    xdotool(&display, &["key", "Escape"]);
    let ended = wait_ended(&mut events, "bob to see the hang-up").await;
    assert_eq!(ended, EndReason::RemoteHungUp);
    wait_title(&display, "the window back in the lobby", |t| t == "Peercall \u{2014} keys in lobby").await;
    println!("keyboard call: brightness at bob {lit:.0} -> {dark:.0} after V");
    bob.send(Command::Shutdown);
}
