//! What the benchmarks read of this process and this machine: `/proc`, `getrusage`,
//! `nvidia-smi`; and the small process helpers they share.

use crate::report::Gpu;
use anyhow::Result;
use std::io::{IsTerminal, Write};
use std::process::{Child, Command};

/// CPU seconds of this process so far, every thread.
pub(crate) use varta_core::metrics::process_cpu_secs as cpu_secs;

/// The machine's host name (`/etc/hostname`), which names its baseline file.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_owned()).unwrap_or_else(|_| "unknown".into())
}

/// CPU seconds of this process's threads: (`infer-*` threads, all others).
pub(crate) fn thread_cpu() -> (f64, f64) {
    let tck = 100.0; // USER_HZ on Linux
    let (mut infer, mut other) = (0.0, 0.0);
    for t in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name = &stat[open + 1..close];
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        // After the name: state is field 3, utime 14 and stime 15 (1-based) → 11, 12 here.
        let secs = (f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0))
            / tck;
        if name.starts_with("infer-") {
            infer += secs;
        } else {
            other += secs;
        }
    }
    (infer, other)
}

pub(crate) fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l.to_owned()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// CPU seconds of another process (utime + stime).
pub(crate) fn proc_cpu(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    let Some(close) = stat.rfind(')') else { return 0.0 };
    let f: Vec<&str> = stat[close + 2..].split(' ').collect();
    (f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0))
        / 100.0
}

/// GPU utilisation % and memory MiB from nvidia-smi, when there is one.
pub(crate) fn gpu() -> Option<Gpu> {
    let out = Command::new("nvidia-smi")
        .args(["--query-gpu=name,utilization.gpu,memory.used", "--format=csv,noheader,nounits"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8_lossy(&out.stdout).lines().next()?.to_owned();
    let p: Vec<&str> = line.split(',').map(str::trim).collect();
    Some(Gpu {
        name: p.first().map(|s| s.to_string()),
        utilization_pct: p.get(1).and_then(|v| v.parse::<f64>().ok()),
        memory_mib: p.get(2).and_then(|v| v.parse::<f64>().ok()),
    })
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) struct Kill(pub(crate) Vec<Child>);

impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A progress line on stderr (a bar when stderr is a terminal).
pub(crate) fn progress(what: &str, done: f64, total: f64, extra: &str) {
    let width = 30;
    let filled = ((done / total).clamp(0.0, 1.0) * width as f64) as usize;
    let bar = format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled));
    if std::io::stderr().is_terminal() {
        eprint!("\r{what} {bar} {done:>4.0}/{total:.0} s  {extra}    ");
    } else if (done as u64).is_multiple_of(10) {
        eprintln!("{what} {bar} {done:.0}/{total:.0} s  {extra}");
    }
    let _ = std::io::stderr().flush();
}
