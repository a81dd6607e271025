//! Ingest against a second RTSP server implementation: VLC (Debian's `cvlc`).

mod support;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::*;
use varta_core::config::DecodePolicy;
use varta_core::event::CameraState;
use varta_ingest::config::RtspTransport;

/// `cvlc` serving the clip over RTSP on `port` (as `nobody` when we are root: VLC
/// refuses to run as root).
fn vlc(port: u16) -> Child {
    let clip = media("vtest.mp4");
    let sout = format!("#rtp{{sdp=rtsp://127.0.0.1:{port}/cam}}");
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--", "cvlc"]);
        c
    } else {
        Command::new("cvlc")
    };
    // Its own process group, so that VLC dies with `runuser` (see `kill`).
    cmd.process_group(0)
        .arg("-q")
        .arg(&clip)
        .args(["--loop", "--sout", &sout])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cvlc runs (apt install vlc-bin vlc-plugin-base; ./scripts/setup does)")
}

/// Kills VLC and whatever runs it.
fn kill(mut child: Child) {
    // SAFETY: kill(2) on a process group we created; no memory is involved.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn frames_arrive_from_vlc_and_a_vlc_restart_is_survived() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = vlc(port);
    // VLC's RTSP server has no TCP-interleaved transport: `auto` finds UDP.
    let mut rig = Rig::new(settings(RtspTransport::Auto));
    rig.ingest.start(spec("vlc", format!("rtsp://127.0.0.1:{port}/cam"), DecodePolicy::Full));
    let s = rig.metrics.camera(&"vlc".into());
    rig.wait_state("vlc", CameraState::Streaming, Duration::from_secs(30));
    let before = s.counters.frames_decoded.get();
    wait_for("frames from VLC", Duration::from_secs(20), || s.counters.frames_decoded.get() >= before + 10);
    assert!(rig.hub.take(Duration::from_secs(2)).is_some());

    // VLC goes away and comes back on the same port.
    kill(server);
    wait_for("VLC's loss noticed", Duration::from_secs(15), || !s.state().is_up());
    std::thread::sleep(Duration::from_secs(2));
    let server = vlc(port);
    rig.wait_state("vlc", CameraState::Streaming, Duration::from_secs(30));
    let before = s.counters.frames_decoded.get();
    wait_for("frames again after VLC's restart", Duration::from_secs(20), || {
        s.counters.frames_decoded.get() >= before + 10
    });
    assert!(s.restarts_total() >= 1);
    rig.ingest.stop_all();
    kill(server);
}
