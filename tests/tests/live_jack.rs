//! End-to-end: `demix live` on a JACK dummy server (no sound card involved), in paced real time.
//!
//! Each test starts its own `jackd -d dummy -r 48000` (Debian `jackd2`, installed here when
//! missing and running as root) under a unique server name, and acts as a JACK client itself:
//! it plays a generated stereo signal into demix's input ports and records demix's output
//! ports in the same process cycle, so input and output share one sample clock.
//!
//! `demix` is built with `--release` whatever the test profile: real-time separation needs an
//! optimised build.

mod cli_common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cli_common::{demix_release_binary, read_wav, separate_command_of};

const RATE: usize = 48_000;
/// Frames the test client can capture (demix runs at most this long).
const CAPTURE_SECONDS: usize = 45;

/// JACK's client library finds the server through $JACK_DEFAULT_SERVER, which is process-wide:
/// the tests here take turns.
static SERIAL: Mutex<()> = Mutex::new(());

/// Makes sure `jackd` exists: installs Debian's `jackd2` when running as root, fails with the
/// fix otherwise.
fn ensure_jackd() {
    let found = |_: ()| {
        Command::new("jackd")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    if found(()) {
        return;
    }
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    assert_eq!(
        uid, "0",
        "jackd is not installed and this test is not running as root: install the Debian package jackd2 (apt-get install --no-install-recommends jackd2)"
    );
    let status = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "jackd2"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .expect("apt-get runs");
    assert!(
        status.success() && found(()),
        "apt-get install jackd2 failed"
    );
}

/// A `jackd -d dummy` child process, killed when dropped.
struct JackServer {
    child: Child,
    name: String,
    log: PathBuf,
}

impl JackServer {
    /// Starts a dummy server at 48 kHz with `frames`-frame periods, named uniquely, and makes
    /// this process's JACK clients use it.
    fn start(frames: usize, dir: &Path) -> Self {
        ensure_jackd();
        let name = format!("demix-e2e-{}-{frames}", std::process::id());
        let log = dir.join(format!("jackd-{frames}.log"));
        let log_file = std::fs::File::create(&log).expect("jackd log");
        let child = Command::new("jackd")
            .args(["-n", &name, "-d", "dummy", "-r", &RATE.to_string()])
            .args(["-p", &frames.to_string()])
            .stdout(log_file.try_clone().expect("log handle"))
            .stderr(log_file)
            .spawn()
            .expect("jackd starts");
        std::env::set_var("JACK_DEFAULT_SERVER", &name);
        let mut server = JackServer { child, name, log };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if jack::Client::new("demix_e2e_probe", jack::ClientOptions::NO_START_SERVER).is_ok() {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "jackd {} exited ({status}): {}",
                    server.name,
                    server.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "jackd {} did not come up: {}",
                server.name,
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for JackServer {
    /// Stops jackd with SIGTERM, so it removes its shared-memory registration (a killed server
    /// leaves it behind, and JACK refuses new servers after a few), then SIGKILL if it hangs.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test's JACK client: plays `signal` and captures what comes back, from the first cycle
/// after `start` is set. Frame `k` of the capture is the same cycle position as frame `k` of
/// the signal.
struct Rig {
    out: [jack::Port<jack::AudioOut>; 2],
    inp: [jack::Port<jack::AudioIn>; 2],
    signal: Arc<Vec<[f32; 2]>>,
    start: Arc<AtomicBool>,
    position: usize,
    captured: Vec<[f32; 2]>,
}

impl jack::ProcessHandler for Rig {
    fn process(&mut self, _: &jack::Client, scope: &jack::ProcessScope) -> jack::Control {
        let n = scope.n_frames() as usize;
        let running = self.start.load(Ordering::Relaxed);
        let [out_l, out_r] = &mut self.out;
        let (l, r) = (out_l.as_mut_slice(scope), out_r.as_mut_slice(scope));
        for i in 0..n {
            let frame = if running {
                self.signal
                    .get(self.position + i)
                    .copied()
                    .unwrap_or([0.0; 2])
            } else {
                [0.0; 2]
            };
            l[i] = frame[0];
            r[i] = frame[1];
        }
        if running {
            let (l, r) = (self.inp[0].as_slice(scope), self.inp[1].as_slice(scope));
            for i in 0..n {
                if self.captured.len() < self.captured.capacity() {
                    self.captured.push([l[i], r[i]]);
                }
            }
            self.position += n;
        }
        jack::Control::Continue
    }
}

/// The rig, running.
struct ActiveRig {
    client: jack::AsyncClient<(), Rig>,
    start: Arc<AtomicBool>,
}

impl ActiveRig {
    fn new(signal: Vec<[f32; 2]>) -> Self {
        let (client, _) =
            jack::Client::new("demix_e2e", jack::ClientOptions::NO_START_SERVER).expect("client");
        let port = |name: &str| {
            client
                .register_port(name, jack::AudioOut::default())
                .unwrap()
        };
        let out = [port("play_l"), port("play_r")];
        let port = |name: &str| {
            client
                .register_port(name, jack::AudioIn::default())
                .unwrap()
        };
        let inp = [port("capture_l"), port("capture_r")];
        let start = Arc::new(AtomicBool::new(false));
        let rig = Rig {
            out,
            inp,
            signal: Arc::new(signal),
            start: start.clone(),
            position: 0,
            captured: Vec::with_capacity(CAPTURE_SECONDS * RATE),
        };
        let client = client.activate_async((), rig).expect("activate");
        ActiveRig { client, start }
    }

    /// Waits for demix's ports and active clients, wires them to the rig (and away from the
    /// dummy system ports) and starts playing.
    fn connect_and_start(&self, demix: &mut Child) {
        let client = self.client.as_client();
        let deadline = Instant::now() + Duration::from_secs(60);
        let wanted = [
            "cpal_client_in:in_0",
            "cpal_client_in:in_1",
            "cpal_client_out:out_0",
            "cpal_client_out:out_1",
        ];
        loop {
            let ports = client.ports(Some("cpal_client_"), None, jack::PortFlags::empty());
            if wanted.iter().all(|w| ports.iter().any(|p| p == w)) {
                break;
            }
            if let Ok(Some(status)) = demix.try_wait() {
                panic!("demix exited before its JACK ports appeared ({status})");
            }
            assert!(
                Instant::now() < deadline,
                "demix's JACK ports never appeared: {ports:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        for (from, to) in [
            ("demix_e2e:play_l", "cpal_client_in:in_0"),
            ("demix_e2e:play_r", "cpal_client_in:in_1"),
            ("cpal_client_out:out_0", "demix_e2e:capture_l"),
            ("cpal_client_out:out_1", "demix_e2e:capture_r"),
        ] {
            // A port shows up when demix registers it, but connects only once its client is
            // activated, a moment later.
            while let Err(e) = client.connect_ports_by_name(from, to) {
                assert!(Instant::now() < deadline, "connect {from} -> {to}: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        for (system, demix_port) in [
            ("system:capture_1", "cpal_client_in:in_0"),
            ("system:capture_2", "cpal_client_in:in_1"),
        ] {
            let _ = client.disconnect_ports_by_name(system, demix_port);
        }
        self.start.store(true, Ordering::Relaxed);
    }

    /// Stops the client and returns what it captured.
    fn finish(self) -> Vec<[f32; 2]> {
        let (_, _, rig) = self.client.deactivate().expect("deactivate");
        rig.captured
    }
}

/// A deterministic stereo test signal: tones, a walking bass, noise bursts and a voice-like
/// harmonic line; its first sample is non-zero so it can be found exactly.
fn music(frames: usize) -> Vec<[f32; 2]> {
    let mut noise = 0x1234_5678u32;
    (0..frames)
        .map(|i| {
            let t = i as f32 / RATE as f32;
            let tau = std::f32::consts::TAU;
            noise ^= noise << 13;
            noise ^= noise >> 17;
            noise ^= noise << 5;
            let white = noise as f32 / u32::MAX as f32 * 2.0 - 1.0;
            let beat = (t * 2.0).fract();
            let bass = 0.2 * (tau * [55.0, 65.4, 73.4, 82.4][(t * 2.0) as usize % 4] * t).cos();
            let hat = 0.1 * white * (-beat * 40.0).exp();
            let f = 220.0 * (1.0 + 0.01 * (tau * 5.0 * t).sin());
            let voice = 0.15 * ((tau * f * t).cos() + 0.4 * (2.0 * tau * f * t).cos());
            let pad = 0.05 * (tau * 330.0 * t).cos();
            [
                bass + voice + 0.8 * hat + pad,
                bass + voice + 1.2 * hat - pad,
            ]
        })
        .collect()
}

/// One click of 0.5 every `period` frames (from frame `period / 2`), silence elsewhere.
fn clicks(frames: usize, period: usize) -> Vec<[f32; 2]> {
    (0..frames)
        .map(|i| {
            let x = if i % period == period / 2 { 0.5 } else { 0.0 };
            [x, x]
        })
        .collect()
}

/// Starts `demix live` on the current JACK server for `seconds`, with `extra` arguments.
fn spawn_demix(seconds: u32, extra: &[&str], log: &Path) -> Child {
    let log_file = std::fs::File::create(log).expect("demix log");
    Command::new(demix_release_binary())
        .args(["live", "--host", "jack", "--no-tui", "--duration"])
        .arg(seconds.to_string())
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("demix starts")
}

/// Waits for demix to exit and returns its stderr; fails if it does not stop in time or fails.
fn wait_demix(mut child: Child, log: &Path, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait demix") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "demix did not stop in time: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(status.success(), "demix live failed ({status}):\n{text}");
    text
}

/// The `key=value` fields of demix's final `summary:` line.
fn summary(stderr: &str) -> std::collections::HashMap<String, f64> {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("summary:"))
        .unwrap_or_else(|| panic!("no summary line in:\n{stderr}"));
    line["summary:".len()..]
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.parse::<f64>().expect("numeric summary value"),
            )
        })
        .collect()
}

/// SDR of `estimate` against `reference`, in dB, over all channels.
fn sdr(reference: &[&[f32]], estimate: &[&[f32]]) -> f64 {
    let (mut signal, mut error) = (0.0f64, 0.0f64);
    for (r, e) in reference.iter().zip(estimate) {
        for (&a, &b) in r.iter().zip(e.iter()) {
            signal += f64::from(a) * f64::from(a);
            error += f64::from(a - b) * f64::from(a - b);
        }
    }
    10.0 * (signal / error.max(1e-30)).log10()
}

#[test]
fn thirty_seconds_live_through_jack_match_the_offline_separation() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("recorded");
    let buffer = 128;
    let server = JackServer::start(buffer, dir.path());
    let signal = music(CAPTURE_SECONDS * RATE);
    let rig = ActiveRig::new(signal.clone());
    let log = dir.path().join("demix-live.log");
    // Eight hops of compute slack: this machine may be shared with other heavy work, and a
    // starved inference worker must not count against demix.
    let mut demix = spawn_demix(
        30,
        &["--slack", "8", "--record", record.to_str().unwrap()],
        &log,
    );
    rig.connect_and_start(&mut demix);
    let stderr = wait_demix(demix, &log, Duration::from_secs(120));
    let captured = rig.finish();
    let fields = summary(&stderr);
    let summary_line = stderr.lines().find(|l| l.starts_with("summary:"));
    eprintln!("{}", summary_line.unwrap_or_default());
    for key in [
        "xruns",
        "deadline_misses",
        "model_errors",
        "recorder_dropped",
    ] {
        assert_eq!(fields[key], 0.0, "{key} in:\n{stderr}");
    }
    // A callback that overran its period is demix's fault unless the machine stalled: then
    // JACK itself reports xruns.
    assert!(
        fields["late_callbacks"] == 0.0 || fields["host_xruns"] > 0.0,
        "late output callbacks without any host xrun:\n{stderr}"
    );
    assert!(fields["seconds"] >= 30.0, "{stderr}");
    let engine_latency = fields["engine_latency_frames"] as usize;

    // demix heard exactly the signal the rig played, for at least 25 of its 30 seconds: in
    // one piece, or in as many pieces as the host's own xruns cut it into.
    let input = read_wav(&record.join("input.wav"));
    assert_eq!(input.spec.sample_rate as usize, RATE);
    let recorded: Vec<[f32; 2]> = (0..input.frames())
        .map(|t| [input.channels[0][t], input.channels[1][t]])
        .collect();
    let SignalPieces {
        pieces,
        foreign_frames,
    } = signal_pieces(&signal, &recorded);
    let heard: usize = pieces.iter().map(|p| p.2).sum();
    eprintln!(
        "the recorded input holds {heard} frames of the played signal in {} piece(s), and {foreign_frames} foreign frames",
        pieces.len()
    );
    assert!(
        heard >= 25 * RATE,
        "only {heard} frames of the signal reached demix"
    );
    // Every cut is the host's: an underrun it caused, or a cycle it skipped or repeated (each
    // of which JACK reports as an xrun).
    let host_glitches = (fields["host_underruns"] + fields["host_xruns"]) as usize;
    assert!(
        pieces.len() <= 1 + host_glitches,
        "the signal reached demix in {} pieces with {host_glitches} host xruns: {pieces:?}",
        pieces.len()
    );
    // Foreign frames come only from cycles the host spoiled: at most one buffer per xrun.
    assert!(
        foreign_frames <= host_glitches * buffer,
        "{foreign_frames} recorded frames are not the played signal, with {host_glitches} host xruns of {buffer} frames"
    );

    // The live stems equal the offline separation of the same input, latency aligned.
    let offline = dir.path().join("offline");
    let input = record.join("input.wav");
    let output = separate_command_of(demix_release_binary(), &[&input], &offline, None)
        .args(["--format", "f32"])
        .output()
        .expect("demix separate runs");
    assert!(
        output.status.success(),
        "demix separate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stems: Vec<String> = std::fs::read_dir(&record)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wav") && n != "input.wav")
        .collect();
    assert!(!stems.is_empty(), "no stems recorded");
    let mut worst = f64::INFINITY;
    for stem in &stems {
        let live = read_wav(&record.join(stem));
        let reference = read_wav(&offline.join("input").join(stem));
        let frames = reference.frames() - engine_latency;
        let live: Vec<&[f32]> = live
            .channels
            .iter()
            .map(|c| &c[engine_latency..engine_latency + frames])
            .collect();
        let reference: Vec<&[f32]> = reference.channels.iter().map(|c| &c[..frames]).collect();
        let energy: f64 = reference
            .iter()
            .flat_map(|c| c.iter())
            .map(|&x| f64::from(x) * f64::from(x))
            .sum();
        if energy < 1e-3 {
            eprintln!("{stem}: silent in both separations");
            let peak = live
                .iter()
                .flat_map(|c| c.iter())
                .fold(0.0f32, |m, x| m.max(x.abs()));
            assert!(
                peak < 1e-3,
                "{stem} is silent offline but not live ({peak})"
            );
            continue;
        }
        let value = sdr(&reference, &live);
        eprintln!("{stem}: SDR live vs offline {value:.1} dB");
        worst = worst.min(value);
    }
    assert!(worst >= 40.0, "worst stem SDR {worst:.1} dB");

    // And the output ports carried the remix (all gains at unity: the input again), delayed
    // by the engine plus whole device blocks (measured from 20 to 25 s into the signal).
    let latency = find_delay(&signal, &captured, engine_latency, buffer);
    eprintln!(
        "end-to-end latency at 48 kHz, {buffer}-frame buffers: {latency} frames ({:.2} ms); engine {engine_latency}; demix reported {} ms",
        latency as f64 * 1000.0 / RATE as f64,
        fields["latency_ms"]
    );
    drop(server);
}

/// Where the signal is in a recording: its stretches that are exact copies of `signal`, in
/// order, as (recorded start, signal start, frames), and the number of recorded frames that are
/// in no such stretch.
struct SignalPieces {
    pieces: Vec<(usize, usize, usize)>,
    foreign_frames: usize,
}

/// Finds the signal in `recorded` (see [`SignalPieces`]). Between two stretches only silence
/// (inserted at an underrun), a skip of the signal (cycles the host dropped), a repeated block (a
/// stale port buffer the host handed over again) or foreign frames are allowed. Foreign frames
/// are what a JACK server under load hands over for a cycle in which the playing client did not
/// run (xruns on this 2-core machine showed whole 128-frame blocks of other data); they are
/// skipped in steps of the 64-frame match length and counted.
fn signal_pieces(signal: &[[f32; 2]], recorded: &[[f32; 2]]) -> SignalPieces {
    const MATCH: usize = 64;
    let mut found = SignalPieces {
        pieces: Vec::new(),
        foreign_frames: 0,
    };
    let (mut r, mut s) = (0usize, 0usize);
    while r < recorded.len() {
        if recorded[r] == [0.0; 2] {
            r += 1;
            continue;
        }
        // The next place in the signal (from 0.1 s back to 2 s ahead) where it continues.
        let from = s.saturating_sub(RATE / 10);
        let next = (from..(s + 2 * RATE).min(signal.len())).find(|&k| {
            (0..MATCH)
                .all(|i| r + i >= recorded.len() || signal.get(k + i) == Some(&recorded[r + i]))
        });
        let Some(k) = next else {
            let skipped = MATCH.min(recorded.len() - r);
            found.foreign_frames += skipped;
            r += skipped;
            continue;
        };
        let length = (0..)
            .take_while(|&i| r + i < recorded.len() && signal.get(k + i) == Some(&recorded[r + i]))
            .count();
        found.pieces.push((r, k, length));
        r += length;
        s = k + length;
    }
    found
}

/// The delay (engine latency plus a whole number of `block`s, up to 8) that best lines up
/// `captured` with `played` over one of a few one-second windows (a host glitch may spoil
/// some); asserts the match is close. The 48 <-> 44.1 kHz resampler round trip is not
/// transparent (about 40 dB), so "close" means 30 dB.
fn find_delay(played: &[[f32; 2]], captured: &[[f32; 2]], engine: usize, block: usize) -> usize {
    let quality = |start: usize, delay: usize| {
        let window = start * RATE..(start + 1) * RATE;
        let reference: Vec<f32> = window.clone().map(|t| played[t - delay][0]).collect();
        let got: Vec<f32> = window.map(|t| captured[t][0]).collect();
        sdr(&[&reference], &[&got])
    };
    let (delay, best) = [10, 14, 18, 22]
        .into_iter()
        .flat_map(|start| (0..=8).map(move |k| (start, engine + k * block)))
        .map(|(start, delay)| (delay, quality(start, delay)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert!(
        best >= 30.0,
        "output does not match the input at any block delay ({best:.1} dB)"
    );
    delay
}

#[test]
fn latency_is_constant_and_reported_at_128_and_256_frame_buffers() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for buffer in [128usize, 256] {
        let dir = tempfile::tempdir().unwrap();
        let server = JackServer::start(buffer, dir.path());
        let period = RATE / 4;
        let rig = ActiveRig::new(clicks(CAPTURE_SECONDS * RATE, period));
        let log = dir.path().join("demix-live.log");
        let mut demix = spawn_demix(10, &[], &log);
        rig.connect_and_start(&mut demix);
        let stderr = wait_demix(demix, &log, Duration::from_secs(60));
        let captured = rig.finish();
        let fields = summary(&stderr);
        let engine = fields["engine_latency_frames"] as usize;
        // Each click's peak in the output, from the second to the eighth second of playing
        // (demix starts reading its ring a little after the rig starts, and stops after 10 s).
        let mut delays = Vec::new();
        let mut click = period / 2 + RATE;
        while click < 8 * RATE {
            let search = click + engine..click + engine + 8 * buffer;
            let peak = search
                .max_by(|&a, &b| captured[a][0].abs().total_cmp(&captured[b][0].abs()))
                .unwrap();
            assert!(captured[peak][0].abs() > 0.25, "click at {click} lost");
            delays.push(peak - click);
            click += period;
        }
        assert!(delays.len() >= 20, "only {} clicks measured", delays.len());
        // The latency changes only when the host's own xruns dropped cycles or made demix
        // refill its ring, and it is always the engine's plus whole device blocks.
        let changes = delays.windows(2).filter(|w| w[0] != w[1]).count();
        let host_trouble = fields["host_underruns"] + fields["host_xruns"];
        assert!(
            changes as f64 <= host_trouble,
            "latency changed {changes} time(s) with {host_trouble} host xruns: {delays:?}"
        );
        assert_eq!(fields["xruns"], 0.0, "{stderr}");
        for &latency in &delays {
            assert_eq!(
                (latency - engine) % buffer,
                0,
                "{latency} = {engine} + whole blocks"
            );
        }
        let latency = *delays.iter().min().unwrap();
        let blocks = (latency - engine) / buffer;
        // cpal runs demix's JACK input and output as two clients; when JACK orders the input
        // client first in a cycle, the output callback already holds that cycle's input, so
        // the ring adds no block at all. Either way the delay is whole blocks and constant.
        assert!((0..=3).contains(&blocks), "{blocks} blocks in the ring");
        eprintln!(
            "end-to-end latency at 48 kHz, {buffer}-frame buffers: {latency} frames = {:.2} ms (engine {engine} + {blocks} x {buffer}); demix reported {:.2} ms; {changes} change(s) after host xruns ({} reported by JACK): {delays:?}",
            latency as f64 * 1000.0 / RATE as f64,
            fields["latency_ms"],
            fields["host_xruns"]
        );
        drop(server);
    }
}
