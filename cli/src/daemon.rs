//! The publisher's background daemon: it holds a running fleet (its tunnels,
//! contracts and payment streams) after `zennet rent` returns, and answers
//! `zennet ls|top|drop|bill|stop` over a control socket in the state
//! directory (`zennet.sock`, mode 0600): one JSON request line, then JSON
//! event lines, the last one `{"event":"end"}`. `zennet rent` starts the
//! daemon when none answers and reuses it otherwise; the daemon exits once
//! its fleet is stopped. One fleet at a time.

use crate::publish::run::{self, Running};
use crate::publish::{self, RentArgs};
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

/// Longest request line the daemon reads.
const MAX_REQUEST: usize = 64 * 1024;

/// What a client asks the daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Hire a fleet; progress, ready and `hired` events follow.
    Rent { wallet: String, args: Box<RentArgs> },
    /// Every contract: state, usage, spent, rate.
    Ls,
    /// Per-contract cost by usage component.
    Bill,
    /// Close the named hosts (`zn-N` or contract id prefixes), or the
    /// `worst` fraction by cpu time delivered per base unit paid.
    Drop { hosts: Vec<String>, worst: Option<f64> },
    /// Stop the fleet: final vouchers, channels settled, tunnels closed.
    Stop,
}

/// The control socket of a state directory.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("zennet.sock")
}

/// The state directory a command uses: `--state-dir`, else the wallet's.
pub fn state_dir(explicit: Option<&Path>, key_path: &Path) -> PathBuf {
    explicit.map(Path::to_path_buf).unwrap_or_else(|| key_path.parent().unwrap_or(Path::new(".")).to_path_buf())
}

struct Fleet {
    run: Arc<Running>,
    done: watch::Receiver<Option<Value>>,
}

struct Daemon {
    fleet: Mutex<Option<Fleet>>,
    rpc: String,
    key_path: PathBuf,
    state_dir: PathBuf,
    exit: watch::Sender<bool>,
}

/// `zennet daemon`: serves the control socket until the fleet is stopped
/// (or, without a fleet, for a minute after the last request;
/// `ZENNET_DAEMON_IDLE_SECS` changes the minute).
pub fn serve(key_path: &Path, rpc: &str, state_dir: &Path) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
        std::fs::create_dir_all(state_dir).with_context(|| format!("create {}", state_dir.display()))?;
        let path = socket_path(state_dir);
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            bail!("a zennet daemon already answers on {}", path.display());
        }
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).with_context(|| format!("listen on {}", path.display()))?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let (exit, mut exit_rx) = watch::channel(false);
        let d = Arc::new(Daemon { fleet: Mutex::new(None), rpc: rpc.to_string(), key_path: key_path.to_path_buf(), state_dir: state_dir.to_path_buf(), exit });
        eprintln!("zennet daemon: listening on {}", path.display());
        // How long the daemon lingers without a fleet (tests shorten it).
        let idle_for = Duration::from_secs(std::env::var("ZENNET_DAEMON_IDLE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(60));
        let mut idle = Box::pin(tokio::time::sleep(idle_for));
        loop {
            tokio::select! {
                c = listener.accept() => {
                    let Ok((conn, _)) = c else { continue };
                    idle.as_mut().reset(tokio::time::Instant::now() + idle_for);
                    let d = d.clone();
                    tokio::spawn(async move {
                        if let Err(e) = d.connection(conn).await {
                            eprintln!("zennet daemon: {e:#}");
                        }
                    });
                }
                _ = exit_rx.changed() => break,
                // Whether a fleet runs is asked when the timer fires: a
                // `select!` precondition is only read on entry, before a
                // connection that arrived meanwhile hired one.
                _ = &mut idle => {
                    if d.fleet.lock().unwrap().is_none() {
                        break;
                    }
                    idle.as_mut().reset(tokio::time::Instant::now() + idle_for);
                }
            }
        }
        let _ = std::fs::remove_file(&path);
        eprintln!("zennet daemon: no fleet left, exiting");
        Ok(())
    })
}

impl Daemon {
    async fn connection(self: Arc<Self>, conn: tokio::net::UnixStream) -> anyhow::Result<()> {
        let (r, mut w) = conn.into_split();
        let mut line = String::new();
        let mut r = tokio::io::BufReader::new(r.take(MAX_REQUEST as u64));
        r.read_line(&mut line).await?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
        let writer = tokio::spawn(async move {
            while let Some(v) = rx.recv().await {
                if w.write_all(format!("{v}\n").as_bytes()).await.is_err() {
                    break;
                }
            }
        });
        let req: Result<Request, _> = serde_json::from_str(&line);
        let r = match req {
            Ok(req) => self.handle(req, &tx).await,
            Err(e) => Err(anyhow::anyhow!("malformed request: {e}")),
        };
        if let Err(e) = r {
            let _ = tx.send(json!({"event": "error", "message": format!("{e:#}")}));
        }
        let _ = tx.send(json!({"event": "end"}));
        drop(tx);
        let _ = writer.await;
        Ok(())
    }

    fn running(&self) -> anyhow::Result<Arc<Running>> {
        self.fleet.lock().unwrap().as_ref().map(|f| f.run.clone()).context("no fleet is running (hire one with `zennet -n N -m SIZE`)")
    }

    async fn handle(self: &Arc<Self>, req: Request, tx: &mpsc::UnboundedSender<Value>) -> anyhow::Result<()> {
        match req {
            Request::Rent { wallet, args } => self.rent(wallet, *args, tx).await,
            Request::Ls => {
                let rows = self.running().map(|r| r.ls_rows()).unwrap_or_default();
                let _ = tx.send(json!({"event": "rows", "rows": rows}));
                Ok(())
            }
            Request::Bill => {
                let _ = tx.send(json!({"event": "rows", "rows": self.running()?.bill_rows()}));
                Ok(())
            }
            Request::Drop { hosts, worst } => {
                let r = self.running()?;
                let n = match worst {
                    Some(f) if (0.0..=1.0).contains(&f) => {
                        let (ready, _) = r.job.ready_and_closing();
                        let keep = ready - (ready as f64 * f).floor() as usize;
                        r.job.keep_best(keep)
                    }
                    Some(f) => bail!("--worst {f} must be a fraction from 0 to 1"),
                    None => r.drop_hosts(&hosts),
                };
                // The sessions close marked contracts within half an interval.
                let deadline = Instant::now() + Duration::from_secs(10);
                while r.job.ready_and_closing().1 > 0 && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let _ = tx.send(json!({"event": "dropped", "count": n}));
                Ok(())
            }
            Request::Stop => {
                let (run, mut done) = {
                    let f = self.fleet.lock().unwrap();
                    let f = f.as_ref().context("no fleet is running")?;
                    (f.run.clone(), f.done.clone())
                };
                run.job.request_stop("zennet stop");
                let v = loop {
                    if let Some(v) = done.borrow_and_update().clone() {
                        break v;
                    }
                    done.changed().await.context("the fleet's supervisor ended")?;
                };
                let _ = tx.send(v);
                Ok(())
            }
        }
    }

    async fn rent(self: &Arc<Self>, wallet: String, args: RentArgs, tx: &mpsc::UnboundedSender<Value>) -> anyhow::Result<()> {
        let key = crate::wallet::read_key(&self.key_path)?;
        if wallet != key.address().to_string() {
            bail!("this daemon pays from {}, not {wallet}: use another --state-dir", key.address());
        }
        if let Some(f) = self.fleet.lock().unwrap().as_ref() {
            bail!("a fleet of {} containers (job {}) is running already: `zennet stop` it first", f.run.args.count, f.run.job_id);
        }
        let records = publish::record_store(&self.key_path)?;
        let mut args = args;
        args.state_dir = Some(self.state_dir.clone());
        let r = run::start(args, key, &self.rpc, records).await?;
        let (done_tx, done_rx) = watch::channel(None);
        *self.fleet.lock().unwrap() = Some(Fleet { run: r.clone(), done: done_rx });
        let ready = r
            .hire(|p| {
                let _ = tx.send(json!({"event": "progress", "progress": p, "line": p.line()}));
            })
            .await;
        for l in r.ready_lines() {
            let _ = tx.send(l);
        }
        let why = (ready < r.args.count as usize).then(|| r.job.shortfall());
        let _ = tx.send(json!({"event": "hired", "ready": ready, "want": r.args.count, "hire_ms": r.hire_ms(), "job": r.job_id, "why": why}));
        let me = self.clone();
        tokio::spawn(async move {
            if ready > 0 {
                r.run(std::future::pending()).await;
            }
            let done = r.finish().await;
            eprintln!("zennet daemon: fleet {} stopped: {}", r.job_id, done["stop_reason"]);
            *me.fleet.lock().unwrap() = None;
            let _ = done_tx.send(Some(done));
            // Let a waiting `zennet stop` read the outcome, then exit.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let _ = me.exit.send(true);
        });
        Ok(())
    }
}

/// Sends `req` to the daemon of `state_dir`; calls `on` for every event
/// line until the end. Errors name what failed.
pub fn request(state_dir: &Path, req: &Request, mut on: impl FnMut(&Value) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let path = socket_path(state_dir);
    let mut s = std::os::unix::net::UnixStream::connect(&path).with_context(|| format!("no zennet daemon answers on {} (is a fleet running? hire one with `zennet -n N -m SIZE`)", path.display()))?;
    s.write_all(format!("{}\n", serde_json::to_string(req)?).as_bytes())?;
    for line in BufReader::new(s).lines() {
        let v: Value = serde_json::from_str(&line?).context("the daemon answered something that is not JSON")?;
        match v["event"].as_str() {
            Some("end") => return Ok(()),
            Some("error") => bail!("{}", v["message"].as_str().unwrap_or("the daemon failed")),
            _ => on(&v)?,
        }
    }
    bail!("the daemon closed the connection before answering")
}

/// Starts `zennet daemon` for `state_dir` unless one answers; waits for its socket.
fn ensure_daemon(key_path: &Path, rpc: &str, state_dir: &Path) -> anyhow::Result<()> {
    let path = socket_path(state_dir);
    if std::os::unix::net::UnixStream::connect(&path).is_ok() {
        return Ok(());
    }
    std::fs::create_dir_all(state_dir).with_context(|| format!("create {}", state_dir.display()))?;
    let log = state_dir.join("daemon.log");
    let logf = std::fs::OpenOptions::new().create(true).append(true).open(&log).with_context(|| format!("open {}", log.display()))?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("daemon").arg("--wallet").arg(key_path).args(["--rpc", rpc]).arg("--state-dir").arg(state_dir);
    cmd.stdin(std::process::Stdio::null()).stdout(logf.try_clone()?).stderr(logf);
    // SAFETY: setsid between fork and exec, so the daemon outlives this terminal.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("start the zennet daemon")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&path).is_err() {
        if let Some(st) = child.try_wait()? {
            bail!("the zennet daemon exited ({st}); see {}", log.display());
        }
        if Instant::now() > deadline {
            bail!("the zennet daemon did not answer on {} within 10 s; see {}", path.display(), log.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// `zennet rent` (default mode): hands the job to the daemon, prints its
/// progress and one line per ready host, and returns.
pub fn rent(args: RentArgs, key_path: &Path, rpc: &str) -> anyhow::Result<()> {
    let key = crate::wallet::read_key(key_path)?;
    let dir = state_dir(args.state_dir.as_deref(), key_path);
    ensure_daemon(key_path, rpc, &dir)?;
    let json_out = args.json;
    let want = args.count;
    let mut ready = 0;
    let mut why = String::new();
    let mut progress_shown = false;
    let req = Request::Rent { wallet: key.address().to_string(), args: Box::new(args) };
    request(&dir, &req, |v| {
        match v["event"].as_str() {
            Some("progress") if !json_out => {
                eprint!("\rzennet: {}", v["line"].as_str().unwrap_or(""));
                progress_shown = true;
            }
            Some("ready") => {
                if progress_shown {
                    eprintln!();
                    progress_shown = false;
                }
                publish::print_ready(v, json_out);
            }
            Some("hired") => {
                ready = v["ready"].as_u64().unwrap_or(0);
                why = v["why"].as_str().unwrap_or("").to_string();
                if json_out {
                    println!("{v}");
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    if progress_shown {
        eprintln!();
    }
    if ready < want as u64 {
        bail!("{why} (`zennet ls` shows the fleet; `zennet stop` settles)");
    }
    if !json_out {
        eprintln!("zennet: reach them with `ssh -F {} zn-1`; `zennet ls`, `zennet stop` when done", dir.join("ssh_config").display());
    }
    Ok(())
}
