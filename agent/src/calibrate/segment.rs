//! One segment of a calibration run: its benchmark started in the run's
//! cgroup and network namespace (a memory holder filled first, outside the
//! measured run), sampled every 100 ms, stopped by SIGINT, its usage, its
//! machine share and its score read back. Also the signal guard that lets
//! an interrupted calibration still remove everything it made (and lets a
//! built-in kernel stop and write its metrics).

use super::{bench, sandbox, SegmentRecord};
use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};
use zennet_protocol::UsageComponent;

/// Set by SIGINT, SIGTERM or SIGHUP while a calibration runs.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Catches SIGINT, SIGTERM and SIGHUP while alive, so an interrupted
/// calibration still removes what it made; restores the old handlers on drop.
pub(super) struct SignalGuard(Vec<(libc::c_int, libc::sigaction)>);

impl SignalGuard {
    pub(super) fn install() -> SignalGuard {
        INTERRUPTED.store(false, std::sync::atomic::Ordering::SeqCst);
        let mut old = Vec::new();
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: sigaction(2) with a handler that only stores an atomic.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as *const () as usize;
                let mut prev: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &sa, &mut prev) == 0 {
                    old.push((sig, prev));
                }
            }
        }
        SignalGuard(old)
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        for (sig, prev) in &self.0 {
            // SAFETY: restores the handler saved by install.
            unsafe { libc::sigaction(*sig, prev, std::ptr::null_mut()) };
        }
    }
}

/// True once SIGINT, SIGTERM or SIGHUP arrived under a [`SignalGuard`].
pub(super) fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("calibration interrupted by a signal (everything it made was removed)");
    }
    Ok(())
}

/// Runs one segment in `run`; returns its record.
pub(super) fn run(run: &mut sandbox::Run, seg: &bench::Segment, scratch: &std::path::Path, yaml: &std::path::Path, sizes: &bench::Sizes) -> Result<SegmentRecord> {
    let b = bench::by_name(&seg.benchmark).with_context(|| format!("unknown benchmark {}", seg.benchmark))?;
    let _ = std::fs::remove_file(yaml);
    run.sample();
    let (mut t0, mut busy0, mut ours0) = run.cpu_mark();
    let mut before = run.usage();
    let mut start = Instant::now();
    let what = match b.kind {
        bench::Kind::PacedNetwork => format!("start the built-in kernel {} ({})", b.stressor, sizes.kernel_exe.display()),
        _ => "start stress-ng (is it installed? apt-get install stress-ng)".to_string(),
    };
    let mut child = run.spawn(&mut bench::command(b, seg.workers, scratch, yaml, sizes)).context(what)?;
    if b.kind == bench::Kind::HoldsMemory {
        // The holder fills its memory before the run is measured (it runs
        // alone, see bench::Planner): a run is priced by what it holds, and
        // the page faults of taking memory would blur that with cpu time.
        // Filled means: nine tenths of the memory in use, and the workers
        // idle (stress-ng's vm workers write their memory over once after
        // mapping it, then sleep): under a tenth of a core for 100 ms.
        let deadline = start + Duration::from_secs(30);
        let mut last = (Instant::now(), run.cpu_ns());
        loop {
            std::thread::sleep(Duration::from_millis(100));
            run.sample();
            let now = (Instant::now(), run.cpu_ns());
            let cores_busy = now.1.saturating_sub(last.1) as f64 / now.0.duration_since(last.0).as_nanos().max(1) as f64;
            last = now;
            if (run.memory_bytes() >= sizes.mem_hold_bytes / 10 * 9 && cores_busy < 0.1) || interrupted() {
                break;
            }
            let early = child.try_wait()?;
            if early.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("mem-hold held {} of {} bytes after {:.1} s ({}): is memory short or limited?", run.memory_bytes(), sizes.mem_hold_bytes, start.elapsed().as_secs_f64(), early.map_or("still filling".to_string(), |st| format!("exited with {st}")));
            }
        }
        run.rebase();
        (t0, busy0, ours0) = run.cpu_mark();
        before = run.usage();
        start = Instant::now();
    }
    let end = start + Duration::from_secs_f64(seg.seconds);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(100)));
        run.sample();
        if interrupted() {
            break;
        }
        if let Some(st) = child.try_wait()? {
            bail!("the {} benchmark exited early with {st}", seg.benchmark);
        }
    }
    // SIGINT: stress-ng stops its workers and writes its metrics.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let actual_seconds = start.elapsed().as_secs_f64();
    run.sample();
    let (t1, busy1, ours1) = run.cpu_mark();
    let capacity = t1.duration_since(t0).as_nanos() as f64 * std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let foreign = busy1.saturating_sub(busy0).saturating_sub(ours1.saturating_sub(ours0)) as f64;
    let available_share = (capacity > 0.0).then(|| (1.0 - foreign / capacity).clamp(0.05, 1.0));
    let usage = run.usage().delta_since(&before);
    let score = match (b.kind, &usage) {
        // What a capacity benchmark scores is the memory it held on average.
        (bench::Kind::HoldsMemory, Some(u)) => Some(u.get(UsageComponent::MemByteSeconds) as f64 / actual_seconds.max(1e-9)),
        _ => std::fs::read_to_string(yaml).ok().and_then(|y| bench::parse_metrics(&y, b.stressor)).map(|(ops, wall)| ops / wall),
    };
    let _ = std::fs::remove_file(yaml);
    check_interrupted()?;
    Ok(SegmentRecord { plan: seg.clone(), actual_seconds, score, available_share, usage })
}
