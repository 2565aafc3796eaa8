//! Recalibrate while the agent runs. The calibration cannot run inside the
//! agent (it installs signal handlers and forks benchmark processes; the
//! agent is a multi-threaded tokio process with a zygote), so it runs as a
//! child: `zennet-agent calibrate --json --no-store ...` (fork+exec from
//! a thread of its own, killed with the agent by `PR_SET_PDEATHSIG`). Its
//! record is parsed, committed to the store and put in force for new
//! offers; until then the market declines new announcements (benchmarks
//! and containers would steal each other's cpu) and `State` is
//! `calibrating`. Refused, not deferred, while any contract is open
//! (signed or active) or being negotiated: Drain first, then Recalibrate.

use super::{ApiError, Control};
use crate::calibrate::CalibrationRecord;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use zennet_protocol::{Amount, CalibrationSummary, Rates};

/// How a run-time calibration is made (from `zennet-agent run`'s options and `[calibration]`).
#[derive(Debug, Clone)]
pub struct Recalibration {
    /// The agent's binary (`calibrate` is one of its subcommands).
    pub exe: PathBuf,
    /// Scratch space: `STATE_DIR/calibrate-<pid>`.
    pub state_dir: PathBuf,
    /// Quick mode (`calibration.quick`).
    pub quick: bool,
    /// Runs and run length instead of the mode's (tests, slow machines).
    pub runs: Option<usize>,
    pub seconds: Option<f64>,
    /// Network capacity, Mbit/s (`calibration.network_mbps`).
    pub network_mbps: Option<u64>,
}

impl Recalibration {
    /// The child's command line, priced at `price` base units per machine-second.
    pub fn command(&self, price: u64) -> Command {
        let mut c = Command::new(&self.exe);
        c.args(["calibrate", "--json", "--no-store", "--price-per-second", &xen(price), "--state-dir"]).arg(&self.state_dir);
        if self.quick {
            c.arg("--quick");
        }
        if let Some(n) = self.runs {
            c.args(["--runs", &n.to_string()]);
        }
        if let Some(s) = self.seconds {
            c.args(["--seconds", &s.to_string()]);
        }
        if let Some(m) = self.network_mbps {
            c.args(["--network-mbps", &m.to_string()]);
        }
        c
    }
}

/// Base units as a decimal XEN figure, as `calibrate --price-per-second` reads it.
fn xen(base: u64) -> String {
    format!("{}.{:08}", base / Amount::BASE_PER_XEN, base % Amount::BASE_PER_XEN)
}

/// The calibration new offers carry: its rates at its machine price.
#[derive(Debug, Clone)]
pub struct InForce {
    pub rates: Rates,
    pub price_per_second: u64,
    pub summary: CalibrationSummary,
}

impl InForce {
    pub fn of(rec: &CalibrationRecord) -> InForce {
        InForce { rates: rec.rates, price_per_second: rec.price_per_second.0, summary: rec.summary() }
    }
}

/// Starts a calibration in the background; returns what the caller is told.
/// Refused while a calibration runs, while contracts are open, and when
/// this agent was started without a way to calibrate.
pub fn start(ctl: &Arc<Control>) -> Result<String, ApiError> {
    let Some(how) = ctl.recalibration.clone() else {
        return Err(ApiError::Calibration("this agent was started without a calibration command".into()));
    };
    if ctl.calibrating.swap(true, Ordering::SeqCst) {
        return Err(ApiError::Calibration("a calibration is already running".into()));
    }
    let open = match ctl.open_contracts() {
        Ok(n) => n.max(ctl.reserved()),
        Err(e) => {
            ctl.calibrating.store(false, Ordering::Release);
            return Err(e);
        }
    };
    if open > 0 {
        ctl.calibrating.store(false, Ordering::Release);
        return Err(ApiError::Busy { active: open });
    }
    // Interrupted by a restart, it runs at the next start, before the market.
    if let Err(e) = ctl.update(|s| s.recalibrate = true) {
        ctl.calibrating.store(false, Ordering::Release);
        return Err(e);
    }
    let price = ctl.effective_price();
    let mut cmd = how.command(price);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: prctl(2) only, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let ctl2 = ctl.clone();
    eprintln!("zennet-agent: calibrating this machine (requested over the control API; new announcements are declined until it is done)");
    std::thread::Builder::new()
        .name("recalibrate".into())
        .spawn(move || {
            let r = run(&ctl2, cmd);
            ctl2.calibrating.store(false, Ordering::Release);
            match r {
                Ok(rec) => eprintln!("zennet-agent: calibrated in {:.1} s, rank {}, {} runs; new offers use it", rec.elapsed_s, rec.fit.rank, rec.runs.len()),
                Err(e) => eprintln!("zennet-agent: calibration failed, the previous one stays in force: {e}"),
            }
        })
        .map_err(|e| {
            ctl.calibrating.store(false, Ordering::Release);
            ApiError::Calibration(format!("cannot start the calibration thread: {e}"))
        })?;
    Ok(format!("calibration started ({}): State is `calibrating` until CalibrationSummary has the new record", if how.quick { "quick" } else { "full, about a minute" }))
}

/// Runs the child, stores its record and puts it in force.
fn run(ctl: &Control, mut cmd: Command) -> Result<CalibrationRecord, ApiError> {
    let fail = |why: String| ApiError::Calibration(why);
    let out = cmd.output().map_err(|e| fail(format!("cannot run {:?}: {e}", cmd.get_program())))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.rsplit(['\n', '\r']).map(str::trim).find(|l| !l.is_empty()).unwrap_or("no message");
        return Err(fail(format!("calibrate exited with {}: {last}", out.status)));
    }
    let rec: CalibrationRecord = serde_json::from_slice(&out.stdout).map_err(|e| fail(format!("calibrate printed no record: {e}")))?;
    if let Some(store) = ctl.store() {
        store.put_calibration(&rec)?;
    }
    *ctl.in_force.lock().unwrap() = Some(InForce::of(&rec));
    ctl.update(|s| s.recalibrate = false)?;
    Ok(rec)
}
