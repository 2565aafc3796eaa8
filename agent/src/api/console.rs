//! `zennet-agent console [--once]`: the appliance's console status screen
//! (`/usr/sbin/zennet-status` on tty1 and the serial console runs it), drawn
//! from the control API like any other thin client: address, state,
//! calibration, contracts, capacity sold and free, earnings. Until the
//! agent answers it says `agent: starting…` and why, never an error exit,
//! so the screen stays up while init respawns the agent.

use super::client::{self, Target};
use clap::Args;
use serde_json::Value;
use std::time::Duration;
use zennet_protocol::Amount;

/// Contracts listed on the screen (the rest are counted).
pub const MAX_SHOWN: usize = 8;

/// Options of `console`.
#[derive(Args, Debug, Clone)]
pub struct ConsoleArgs {
    #[command(flatten)]
    pub target: Target,
    /// Draw the screen once and exit (the status script's loop reads Enter between draws).
    #[arg(long)]
    pub once: bool,
    /// Seconds between redraws (without --once).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub every: u64,
}

/// The screen as text: the agent's status and contracts from the API, or
/// `agent: starting…` with the reason it did not answer.
pub async fn screen(t: &Target) -> String {
    match fetch(t).await {
        Ok((status, contracts)) => render(&status, &contracts),
        Err(e) => format!("agent: starting… ({e:#})\n"),
    }
}

/// Status (as `status --json` prints it) and the contract list.
async fn fetch(t: &Target) -> anyhow::Result<(Value, Vec<Value>)> {
    let conn = client::connect(t).await?;
    let p = client::proxy(&conn).await?;
    let status = client::status_of(&p).await?;
    let contracts = serde_json::from_str(&p.list_contracts().await.map_err(|e| anyhow::anyhow!("{e}"))?)?;
    Ok((status, contracts))
}

/// `console`: once, or redrawn every `--every` seconds (clearing the terminal) until killed.
pub async fn run(a: ConsoleArgs) -> String {
    if a.once {
        return screen(&a.target).await;
    }
    loop {
        print!("\x1b[H\x1b[2J{}", screen(&a.target).await);
        let _ = std::io::Write::flush(&mut std::io::stdout());
        tokio::time::sleep(Duration::from_secs(a.every)).await;
    }
}

/// Renders a status object and contract list (pure: the test feeds it the API's answers).
pub fn render(status: &Value, contracts: &[Value]) -> String {
    let u = |v: &Value| v.as_u64().unwrap_or(0);
    let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
    let tri = |v: &Value| format!("{} MiB memory, {} millicores, {} MiB disk", u(&v["memory_bytes"]) >> 20, u(&v["cpu_millicores"]), u(&v["disk_bytes"]) >> 20);
    let cal = &status["calibration"];
    let calibrated = match cal.get("time_unix_s").and_then(Value::as_u64) {
        Some(t) => format!("{} (rank {}, {} runs, hold-out error {:.3})", utc(t), u(&cal["rank"]), u(&cal["runs"]), cal["holdout_error"].as_f64().unwrap_or(0.0)),
        None => "never (uncalibrated rates from the machine price)".into(),
    };
    let earnings = u(&status["earnings"]);
    let mut out = format!(
        "agent        up\naddress      {}\nstate        {}\ncalibrated   {calibrated}\nprice        {} base units per machine-second\ncontracts    {} active, {} in all\nsold         {}\nfree         {}\nearnings     {earnings} base units ({})\n",
        s(&status["address"]),
        s(&status["state"]),
        u(&status["price_per_second"]),
        u(&status["active_contracts"]),
        contracts.len(),
        tri(&status["capacity_sold"]),
        tri(&status["capacity_free"]),
        Amount(earnings),
    );
    for c in contracts.iter().take(MAX_SHOWN) {
        let id = s(&c["id"]);
        out += &format!("  {:<16} {:<9} {:>12} paid  {}\n", id.get(..16).unwrap_or(&id), s(&c["state"]), u(&c["paid"]), s(&c["publisher"]));
    }
    if contracts.len() > MAX_SHOWN {
        out += &format!("  … and {} more (zennet-agent contracts)\n", contracts.len() - MAX_SHOWN);
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS UTC` for unix seconds (the civil-from-days algorithm).
pub fn utc(t: u64) -> String {
    let (days, secs) = ((t / 86_400) as i64, t % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_795_000_000), "2026-11-18 11:06:40 UTC");
    }

    #[test]
    fn renders_status_and_contracts() {
        let st = json!({"address": "xen1abc", "state": "paused", "active_contracts": 1, "earnings": 150_000_000u64, "price_per_second": 1000,
            "capacity_sold": {"memory_bytes": 512u64 << 20, "cpu_millicores": 500, "disk_bytes": 1u64 << 30},
            "capacity_free": {"memory_bytes": 1u64 << 30, "cpu_millicores": 1500, "disk_bytes": 2u64 << 30}, "calibration": null});
        let c = vec![json!({"id": "ab".repeat(32), "state": "active", "paid": 7, "publisher": "xen1pub"})];
        let s = render(&st, &c);
        for want in ["address      xen1abc", "state        paused", "calibrated   never", "1 active, 1 in all", "512 MiB memory, 500 millicores, 1024 MiB disk", "150000000 base units (1.50000000 XEN)", "abababababababab active", "xen1pub"] {
            assert!(s.contains(want), "{want:?} in\n{s}");
        }
    }
}
