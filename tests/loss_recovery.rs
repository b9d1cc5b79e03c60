//! Loss recovery through the link emulator (issue 12): Peercall ↔ Peercall headless in two network
//! namespaces, 25 ms each way with bursty (Gilbert-Elliott) loss of ~3 % in bursts of ~3 packets, the
//! way Chromium repaired without a freeze. The receiver's stats lines say how it went: freezes, the
//! picture size, the stamps it read, and the packets RTX repaired.
//!
//! Needs root and `/dev/net/tun` (without them the test says why and passes without running).

mod common;

use common::process::Proc;
use peercall::link_emulator::{self, GilbertElliott, Impairments, Link, LinkConfig, PathConfig};
use std::time::{Duration, Instant};

/// A freeze as the issue counts it: an inter-frame gap over max(3 frame intervals, 150 ms) at 30 fps.
const FREEZE_MS: f64 = 150.0;

/// One stats line of the receiver, the figures this test needs.
#[derive(Debug, Default, Clone)]
struct Sample {
    fps_in: f64,
    resolution: Option<(u32, u32)>,
    max_gap_ms: f64,
    glass_to_glass_ms: Option<f64>,
    /// The frame number of the last stamp read (absent before this change's stats fields).
    stamp: Option<u64>,
    rtx_sent: u64,
    rtx_in: u64,
    rtx_repaired: u64,
    plis_sent: Option<u64>,
}

fn word_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(key).nth(1)?.split_whitespace().next()
}

fn number_after(line: &str, key: &str) -> Option<f64> {
    word_after(line, key)?.parse().ok()
}

fn parse(line: &str) -> Option<Sample> {
    let inbound = line.strip_prefix("stats: ")?.split(" | in ").nth(1)?;
    let mut words = inbound.split_whitespace();
    let fps_in = words.next()?.parse().ok()?;
    let resolution = inbound.split(" | ").next().and_then(|part| {
        let size = part.split_whitespace().last()?;
        let (w, h) = size.split_once('x')?;
        Some((w.parse().ok()?, h.parse().ok()?))
    });
    Some(Sample {
        fps_in,
        resolution,
        max_gap_ms: number_after(line, "max gap ")?,
        glass_to_glass_ms: number_after(line, "glass-to-glass "),
        stamp: number_after(line, "| stamp ").map(|n| n as u64),
        rtx_sent: number_after(line, "| rtx sent ").unwrap_or(0.0) as u64,
        rtx_in: number_after(line, " rtx in ").unwrap_or(0.0) as u64,
        rtx_repaired: number_after(line, " repaired ").unwrap_or(0.0) as u64,
        plis_sent: number_after(line, " pli sent ").map(|n| n as u64),
    })
}

/// ~3 % of packets lost, in bursts of 3 on average: the chain stays bad for 1 / (1/3) packets and
/// spends p_gb / (p_gb + 1/3) = 3 % of the packets there.
fn bursty_25ms() -> PathConfig {
    let p_bad_to_good = 1.0 / 3.0;
    let p_good_to_bad = 0.03 * p_bad_to_good / 0.97;
    PathConfig::new(Impairments {
        delay: Duration::from_millis(25),
        burst_loss: Some(GilbertElliott { p_good_to_bad, p_bad_to_good, loss_good: 0.0, loss_bad: 1.0 }),
        ..Default::default()
    })
    .seed(12)
}

/// The engine binary: this build's, or (`LOSS_RECOVERY_PEERCALL=/path/to/peercall`) another build's,
/// to measure the figures before a change on the same machine and load (its stats lines may lack
/// the newer fields: the figures print before the asserts).
fn peercall() -> String {
    std::env::var("LOSS_RECOVERY_PEERCALL").unwrap_or_else(|_| env!("CARGO_BIN_EXE_peercall").to_owned())
}

/// Starts the server and alice in A, bob (auto-answer) in B; alice calls bob.
fn call_across(link: &Link) -> (Proc, Proc, Proc) {
    let (a, b) = (link.a(), link.b());
    let peercall = peercall();
    let server_addr = format!("{}:6503", a.addr());
    let url = format!("ws://{server_addr}/");
    let server =
        Proc::start(a.namespace(), env!("CARGO_BIN_EXE_peercall-server"), &["--listen", &server_addr]);
    std::thread::sleep(Duration::from_millis(300));
    let bob_bind = format!("{}:0", b.addr());
    let bob = Proc::start(
        b.namespace(),
        &peercall,
        &["--headless", "--name", "bob", "--auto-answer", "--server", &url, "--bind", &bob_bind],
    );
    bob.wait_for("logged in as bob", Duration::from_secs(15));
    let alice_bind = format!("{}:0", a.addr());
    let alice = Proc::start(
        a.namespace(),
        &peercall,
        &["--headless", "--name", "alice", "--call", "bob", "--server", &url, "--bind", &alice_bind],
    );
    if !bob.wait_for_quietly("call: in call with alice", Duration::from_secs(20)) {
        panic!("no call: bob {:?}\nalice {:?}", bob.all_lines(), alice.all_lines());
    }
    (server, alice, bob)
}

/// Bursty loss at 25 ms each way for 15 s: RTX repairs it, the picture keeps 640x480, and the
/// receiver freezes less often and less long than before NACK was timed from the RTT.
#[test]
fn bursty_loss_is_repaired_by_rtx_without_freezing() {
    if let Some(why) = link_emulator::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let link = Link::new("lrec", LinkConfig::symmetric(bursty_25ms())).expect("link");
    let (_server, alice, bob) = call_across(&link);
    std::thread::sleep(Duration::from_secs(3)); // setup and the first keyframe are not the test
    let from = Instant::now();
    std::thread::sleep(Duration::from_secs(15));
    let lines = bob.lines_since(from);
    let samples: Vec<Sample> = lines.iter().filter_map(|l| parse(l)).collect();
    assert!(samples.len() >= 12, "bob printed too few stats lines: {lines:?}");
    let n = samples.len() as f64;
    let fps = samples.iter().map(|s| s.fps_in).sum::<f64>() / n;
    let freezes = samples.iter().filter(|s| s.max_gap_ms > FREEZE_MS).count();
    let longest = samples.iter().map(|s| s.max_gap_ms).fold(0.0, f64::max);
    let (first, last) = (samples.first().expect("a sample"), samples.last().expect("a sample"));
    let repaired = last.rtx_repaired - first.rtx_repaired;
    let rtx_in = last.rtx_in - first.rtx_in;
    let alice_last = alice.lines_since(from).iter().rev().find_map(|l| parse(l)).unwrap_or_default();
    let plis = last.plis_sent.unwrap_or(0) - first.plis_sent.unwrap_or(0);
    let c = link.counters();
    eprintln!(
        "\n25 ms each way, Gilbert-Elliott ~3 % in bursts of ~3, 15 s, bob receiving: fps {fps:.1}, \
         freezes > {FREEZE_MS} ms {freezes}, longest {longest:.0} ms, resolutions {:?}, RTX in {rtx_in}, \
         repaired {repaired}, PLIs {plis}, alice's RTX sent {} (link dropped {} A→B, {} B→A)",
        samples.iter().filter_map(|s| s.resolution).collect::<std::collections::BTreeSet<_>>(),
        alice_last.rtx_sent,
        c.a_to_b.path.dropped(),
        c.b_to_a.path.dropped(),
    );

    // Content: every second's last picture carried a readable stamp, and the stamps advance.
    assert!(
        samples.iter().all(|s| s.glass_to_glass_ms.is_some()),
        "a second without a readable stamp: {lines:?}"
    );
    let stamps: Vec<u64> = samples.iter().filter_map(|s| s.stamp).collect();
    assert_eq!(stamps.len(), samples.len(), "every stats line names the last stamp read: {lines:?}");
    assert!(stamps.windows(2).all(|w| w[1] > w[0]), "stamps do not advance: {stamps:?}");
    assert!(
        stamps[stamps.len() - 1] - stamps[0] >= 25 * (stamps.len() as u64 - 1),
        "stamps advance at under 25 fps: {stamps:?}"
    );

    // Repair: RTX packets arrived and filled holes.
    assert!(repaired > 0, "no packet repaired by RTX: {lines:?}");
    assert!(alice_last.rtx_sent > 0, "alice sent no RTX: {:?}", alice.lines_since(from));
    // And the other way: bob (the callee, RTX from his answer) repairs alice's losses too.
    assert!(
        last.rtx_sent > 0 && alice_last.rtx_repaired > 0,
        "no RTX bob → alice: {:?}",
        alice.lines_since(from)
    );
    // The picture is kept: random link loss is not congestion.
    assert!(samples.iter().all(|s| s.resolution == Some((640, 480))), "the picture was cut: {lines:?}");
    // Measured on this machine (2 cores shared with other builds and calls, load average 10–12,
    // so the decoder itself takes 35–80 ms a frame at times), the same test with the engine from
    // before this change (`LOSS_RECOVERY_PEERCALL=<old build>`: a fixed 100 ms NACK interval, no RTX,
    // a 250 ms frame wait, a 4-frame decode queue) and then with this one, back to back, twice:
    //   before: fps 11.3 / 16.4, freezes over 150 ms 15 / 8, longest 757 / 426 ms
    //   after:  fps 20.5 / 25.0, freezes over 150 ms  4 / 2, longest 437 / 177 ms, 11 repaired by RTX
    // On a quiet moment of the machine (load average 2): before fps 29.2, 5 freezes, longest 216 ms;
    // after fps 30.0–30.1, 3 freezes, longest 187–192 ms, no PLI at all. A repaired hole still delays
    // its frame by a round trip (a gap of ~150–190 ms): hiding that takes a playout delay (a jitter
    // buffer that plays frames at their pace), which is not built yet.
    // Most of what is left is the loaded decoder falling behind (PLIs with no packet lost), not the
    // path. The thresholds sit between the two with room for the load: under the old engine's best
    // run, over this one's worst.
    assert!(freezes <= 6, "{freezes} freezes over {FREEZE_MS} ms: {lines:?}");
    assert!(longest < 500.0, "the longest freeze was {longest:.0} ms: {lines:?}");
    assert!(fps >= 18.0, "bob decoded {fps:.1} fps: {lines:?}");
}

/// The callee's answer to an offer shaped as a browser's (each video codec with its `rtx`, `apt=`
/// its payload type) keeps RTX for the codec it sends, `apt=` that codec's payload type, and gives
/// its video an RTX SSRC in an `a=ssrc-group:FID` pair. (Both ways through real engines: above.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_keeps_rtx_with_apt_and_an_fid_group() {
    use common::*;
    use futures_util::{SinkExt, StreamExt};
    use peercall::call::Engine;
    use peercall::signaling::protocol::{Message, SessionDescription};
    use tokio_tungstenite::tungstenite::Message as Ws;

    let (_server, url) = start_server().await;
    let mut bob_config = config("bob", &url);
    bob_config.auto_answer = true;
    let bob = Engine::start(bob_config);
    wait_users(&bob, &["bob"]).await;
    let mut ws = raw_login(&url, "carol").await;
    wait_users(&bob, &["bob", "carol"]).await;
    let (pc, _rx) = hand_played_peer("carol").await;
    let offer = pc.create_offer(None).await.expect("offer");
    let offered = offer.sdp.clone();
    for line in ["a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96", "a=rtpmap:103 rtx/90000", "a=fmtp:103 apt=102"]
    {
        assert!(offered.contains(line), "the offer lacks `{line}`:\n{offered}");
    }
    pc.set_local_description(offer).await.expect("local description");
    let offer_msg = Message::VideoOffer {
        name: "carol".into(),
        target: "bob".into(),
        sdp: SessionDescription { kind: "offer".into(), sdp: offered },
    };
    ws.send(Ws::text(offer_msg.to_json())).await.expect("send offer");
    let answer = within(10, "bob's answer", async {
        loop {
            let Some(Ok(Ws::Text(t))) = ws.next().await else { panic!("socket closed") };
            if let Ok(Message::VideoAnswer { sdp, .. }) = serde_json::from_str::<Message>(&t) {
                return sdp.sdp;
            }
        }
    })
    .await;
    let video = &answer[answer.find("m=video").expect("a video section")..];
    assert!(video.contains("a=rtpmap:103 rtx/90000") && video.contains("a=fmtp:103 apt=102"), "{video}");
    let fid = video.lines().find(|l| l.starts_with("a=ssrc-group:FID ")).expect("an FID group");
    assert_eq!(fid.split(' ').count(), 3, "media and RTX SSRC: {fid}");
    pc.close().await.ok();
}
