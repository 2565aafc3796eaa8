//! Built-in benchmark kernels, for loads stress-ng has no stressor for.
//! Each runs as `zennet-agent calibrate-kernel NAME` in the run's cgroup
//! and network namespace, stops at SIGINT (or SIGTERM, SIGHUP) or its
//! timeout, and writes its metrics in stress-ng's `--yaml` layout so scores
//! are read one way.
//!
//! - `net-paced`: one TCP stream over loopback at a fixed pace (a token
//!   bucket), so the network, not the cpu, is what the run takes.

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// Largest pace accepted, bytes per second (400 Gbit/s).
pub const MAX_BYTES_PER_S: u64 = 50_000_000_000;
const CHUNK: usize = 64 << 10;

/// Writes `metrics` in stress-ng's `--yaml` layout.
fn write_metrics(yaml: &Path, stressor: &str, ops: u64, wall: f64) -> Result<()> {
    let text = format!("---\nmetrics:\n    - stressor: {stressor}\n      bogo-ops: {ops}\n      wall-clock-time: {wall:.6}\n...\n");
    std::fs::write(yaml, text).with_context(|| format!("write {}", yaml.display()))
}

/// Sends over loopback at `bytes_per_s` until SIGINT or `timeout`; writes
/// the bytes received and the seconds taken to `yaml`.
pub fn net_paced(bytes_per_s: u64, timeout: Duration, yaml: &Path) -> Result<()> {
    if bytes_per_s == 0 || bytes_per_s > MAX_BYTES_PER_S {
        bail!("--bytes-per-second {bytes_per_s} out of range: 1..={MAX_BYTES_PER_S}");
    }
    // SIGINT (the calibration stopping the segment) ends the stream.
    let _signals = super::segment::SignalGuard::install();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("listen on loopback (is lo up?)")?;
    let addr = listener.local_addr()?;
    let receiver = std::thread::spawn(move || -> u64 {
        let Ok((mut s, _)) = listener.accept() else { return 0 };
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        got
    });
    let mut tx = TcpStream::connect(addr).context("connect over loopback")?;
    tx.set_nodelay(true)?;
    let chunk = vec![0x5au8; CHUNK];
    let start = Instant::now();
    let mut sent = 0u64;
    while !super::segment::interrupted() && start.elapsed() < timeout {
        // Token bucket: send while behind the pace, else sleep until a
        // chunk's worth is due (at most 10 ms, to notice SIGINT).
        let due = (start.elapsed().as_secs_f64() * bytes_per_s as f64) as u64;
        if sent < due {
            let n = CHUNK.min((due - sent).max(1) as usize);
            match tx.write(&chunk[..n]) {
                Ok(w) => sent += w as u64,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("send over loopback"),
            }
        } else {
            let wait = CHUNK as f64 / bytes_per_s as f64;
            std::thread::sleep(Duration::from_secs_f64(wait.min(0.01)));
        }
    }
    drop(tx);
    let wall = start.elapsed().as_secs_f64();
    let got = receiver.join().unwrap_or(0);
    write_metrics(yaml, "net-paced", got, wall)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paced_stream_keeps_its_pace_and_writes_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("m.yaml");
        net_paced(20_000_000, Duration::from_millis(500), &yaml).unwrap();
        let (bytes, wall) = super::super::bench::parse_metrics(&std::fs::read_to_string(&yaml).unwrap(), "net-paced").unwrap();
        let rate = bytes / wall;
        assert!((rate / 20e6 - 1.0).abs() < 0.15, "paced at {rate} B/s, asked 20e6");
        assert!(net_paced(0, Duration::from_millis(10), &yaml).unwrap_err().to_string().contains("out of range"));
    }
}
