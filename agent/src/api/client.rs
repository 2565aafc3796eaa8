//! The thin clients of the control API: `zennet-agent status`, `pause`,
//! `resume`, `drain`, `set-price`, `set-limits`, `recalibrate`,
//! `contracts` (and `console`, [`super::console`]). Each opens one D-Bus connection (the private socket, or
//! the system bus with `--dbus system`), makes its calls and prints the
//! answer (`--json`: one JSON object or array).

use super::dbus::Agent1Proxy;
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;
use zbus::proxy::CacheProperties;

/// Where the agent's control API is.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The agent's state directory (its control socket is STATE_DIR/agent.bus).
    #[arg(long, default_value = "/var/lib/zennet")]
    pub state_dir: PathBuf,
    /// The control socket, instead of STATE_DIR/agent.bus.
    #[arg(long)]
    pub control_socket: Option<PathBuf>,
    /// `socket` (the private socket) or `system` (the system bus).
    #[arg(long, default_value = "socket", value_parser = ["socket", "system"])]
    pub dbus: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// A control command.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Address, state, capacity, contracts and earnings.
    Status(Target),
    /// Decline new announcements (running contracts go on).
    Pause(Target),
    /// Answer announcements again.
    Resume(Target),
    /// Stop taking work; running contracts finish and settle.
    Drain(Target),
    /// Asking price for new offers: the whole machine per second, base units.
    SetPrice {
        price_per_second: u64,
        #[command(flatten)]
        target: Target,
    },
    /// The most capacity sold at once.
    SetLimits {
        #[arg(long)]
        memory_mib: u64,
        #[arg(long)]
        cpu_millicores: u64,
        #[arg(long)]
        disk_mib: u64,
        #[command(flatten)]
        target: Target,
    },
    /// Calibrate now, in the background (refused while contracts are open).
    Recalibrate(Target),
    /// Every contract record.
    Contracts(Target),
    /// The console status screen, redrawn every few seconds (`--once`: drawn once).
    Console(super::console::ConsoleArgs),
}

/// Connects to the agent.
pub async fn connect(t: &Target) -> anyhow::Result<zbus::Connection> {
    if t.dbus == "system" {
        return Ok(zbus::Connection::system().await?);
    }
    let path = t.control_socket.clone().unwrap_or_else(|| super::dbus::socket_in(&t.state_dir));
    let s = std::os::unix::net::UnixStream::connect(&path).map_err(|e| anyhow::anyhow!("control socket {}: {e} (is zennet-agent running?)", path.display()))?;
    Ok(zbus::connection::Builder::unix_stream(s).p2p().build().await?)
}

/// The object's proxy on `conn` (properties read fresh on every get).
pub async fn proxy(conn: &zbus::Connection) -> zbus::Result<Agent1Proxy<'_>> {
    Agent1Proxy::builder(conn).cache_properties(CacheProperties::No).build().await
}

/// A D-Bus error as the user reads it (its name and message).
fn plain(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// What `status --json` prints: every status property in one object.
pub async fn status_of(p: &Agent1Proxy<'_>) -> anyhow::Result<serde_json::Value> {
    let (address, state, active, earnings) = (p.address().await.map_err(plain)?, p.state().await.map_err(plain)?, p.active_contracts().await.map_err(plain)?, p.earnings().await.map_err(plain)?);
    let (sold, free, price) = (p.capacity_sold().await.map_err(plain)?, p.capacity_free().await.map_err(plain)?, p.price_per_second().await.map_err(plain)?);
    let cal: serde_json::Value = serde_json::from_str(&p.calibration_summary().await.map_err(plain)?).unwrap_or(serde_json::Value::Null);
    let tri = |(m, c, d): (u64, u64, u64)| json!({ "memory_bytes": m, "cpu_millicores": c, "disk_bytes": d });
    Ok(json!({ "address": address, "state": state, "active_contracts": active, "earnings": earnings, "price_per_second": price, "capacity_sold": tri(sold), "capacity_free": tri(free), "calibration": cal }))
}

/// Runs one control command; returns what to print.
pub async fn run(cmd: Command) -> anyhow::Result<String> {
    let t = match &cmd {
        Command::Status(t) | Command::Pause(t) | Command::Resume(t) | Command::Drain(t) | Command::Recalibrate(t) | Command::Contracts(t) => t.clone(),
        Command::SetPrice { target, .. } | Command::SetLimits { target, .. } => target.clone(),
        Command::Console(a) => return Ok(super::console::run(a.clone()).await),
    };
    let conn = connect(&t).await?;
    let p = proxy(&conn).await?;
    let done = |what: &str| if t.json { json!({ "ok": what }).to_string() } else { what.to_string() };
    Ok(match cmd {
        Command::Status(_) => {
            let st = status_of(&p).await?;
            if t.json {
                st.to_string()
            } else {
                let cal = &st["calibration"];
                let calibrated = cal.get("time_unix_s").and_then(|v| v.as_u64()).map_or("never".to_string(), super::console::utc);
                let mib = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0) >> 20;
                let (sold, free) = (&st["capacity_sold"], &st["capacity_free"]);
                format!(
                    "address      {}\nstate        {}\ncontracts    {} active\nearnings     {} base units\nprice        {} base units per machine-second\nsold         {} MiB, {} millicores, {} MiB disk\nfree         {} MiB, {} millicores, {} MiB disk\ncalibrated   {calibrated}",
                    st["address"].as_str().unwrap_or("?"), st["state"].as_str().unwrap_or("?"), st["active_contracts"], st["earnings"], st["price_per_second"],
                    mib(sold, "memory_bytes"), sold["cpu_millicores"], mib(sold, "disk_bytes"), mib(free, "memory_bytes"), free["cpu_millicores"], mib(free, "disk_bytes")
                )
            }
        }
        Command::Pause(_) => {
            p.pause().await.map_err(plain)?;
            done("paused")
        }
        Command::Resume(_) => {
            p.resume().await.map_err(plain)?;
            done("accepting")
        }
        Command::Drain(_) => {
            p.drain().await.map_err(plain)?;
            done("draining")
        }
        Command::SetPrice { price_per_second, .. } => {
            p.set_price(price_per_second).await.map_err(plain)?;
            done(&format!("price {price_per_second}"))
        }
        Command::SetLimits { memory_mib, cpu_millicores, disk_mib, .. } => {
            let (m, d) = (memory_mib.checked_mul(1 << 20), disk_mib.checked_mul(1 << 20));
            let (Some(m), Some(d)) = (m, d) else { anyhow::bail!("--memory-mib {memory_mib} / --disk-mib {disk_mib}: too large") };
            p.set_limits(m, cpu_millicores, d).await.map_err(plain)?;
            done("limits set")
        }
        Command::Recalibrate(_) => done(&p.recalibrate().await.map_err(plain)?),
        Command::Console(_) => unreachable!("handled above"),
        Command::Contracts(_) => {
            let list = p.list_contracts().await.map_err(plain)?;
            if t.json {
                list
            } else {
                let v: Vec<serde_json::Value> = serde_json::from_str(&list)?;
                let mut out = format!("{:<66} {:<9} {:>12} {}", "contract", "state", "paid", "publisher");
                for c in v {
                    out += &format!("\n{:<66} {:<9} {:>12} {}", c["id"].as_str().unwrap_or("?"), c["state"].as_str().unwrap_or("?"), c["paid"], c["publisher"].as_str().unwrap_or("?"));
                }
                out
            }
        }
    })
}
