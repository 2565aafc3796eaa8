//! The fleet commands, thin clients of the daemon (`ls`, `top`, `drop`,
//! `stop`, `bill`) and of the files it writes (`hosts`), and `run
//! --replicas`, which runs one command on several providers through the
//! written ssh config and compares what they print (the seed: "risk can be
//! decreased exponentially by performing computations several times").

use crate::daemon::{self, Request};
use crate::publish::ssh::Files;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use zennet_protocol::Amount;

/// Where to find the fleet.
#[derive(Args, Debug, Clone)]
pub struct Where {
    /// The publisher's state directory (default: the wallet's directory).
    #[arg(long, value_name = "DIR", global = true)]
    pub state_dir: Option<std::path::PathBuf>,
    /// Print JSON (one object per line, or one array) for scripts.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum FleetCmd {
    /// List the fleet's contracts: state, usage, spent, rate.
    Ls,
    /// `ls`, refreshed every second until interrupted.
    Top {
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1)]
        interval: u64,
        /// Stop after this many refreshes (default: until interrupted).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Close some containers: by host (`zn-3`) or contract id prefix, or the
    /// worst FRACTION by cpu time delivered per base unit paid.
    Drop {
        hosts: Vec<String>,
        #[arg(long, value_name = "FRACTION", conflicts_with = "hosts")]
        worst: Option<f64>,
    },
    /// Stop the fleet: final vouchers, channels settled, tunnels closed.
    Stop {
        /// Every fleet of this state directory (one runs at a time today).
        #[arg(long)]
        all: bool,
    },
    /// What each contract cost, by usage component.
    Bill,
    /// Print the fleet's hosts for a tool: ssh config, MPI hostfile, GNU
    /// parallel sshloginfile or Ansible inventory.
    Hosts {
        #[arg(long, default_value = "ssh")]
        format: String,
    },
    /// Run CMD on R containers of distinct providers and compare the outputs' hashes.
    Run {
        #[arg(long, default_value_t = 3)]
        replicas: usize,
        #[arg(trailing_var_arg = true, required = true)]
        cmd: Vec<String>,
    },
}

fn rows(dir: &Path, req: Request) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    daemon::request(dir, &req, |v| {
        if let Some(r) = v["rows"].as_array() {
            out.extend(r.iter().cloned());
        }
        Ok(())
    })?;
    Ok(out)
}

fn print_ls(rows: &[Value]) {
    println!("{:<6} {:<8} {:>6} {:<46} {:>7} {:>8} {:>16} {:>14}", "HOST", "STATE", "PORT", "PROVIDER", "SECS", "CPU_S", "SPENT", "RATE/H");
    for r in rows {
        println!(
            "{:<6} {:<8} {:>6} {:<46} {:>7} {:>8.2} {:>16} {:>14}",
            r["host"].as_str().unwrap_or(""),
            r["state"].as_str().unwrap_or(""),
            r["port"].as_u64().map_or("-".into(), |p| p.to_string()),
            r["provider"].as_str().unwrap_or(""),
            r["elapsed_s"],
            r["cpu_s"].as_f64().unwrap_or(0.0),
            Amount(r["spent"].as_u64().unwrap_or(0)).to_string(),
            Amount(r["rate_per_hour"].as_u64().unwrap_or(0)).to_string()
        );
    }
}

pub fn run(cmd: FleetCmd, w: Where, key_path: &Path) -> anyhow::Result<()> {
    let dir = daemon::state_dir(w.state_dir.as_deref(), key_path);
    match cmd {
        FleetCmd::Ls => {
            let r = rows(&dir, Request::Ls)?;
            if w.json {
                println!("{}", json!(r));
            } else {
                print_ls(&r);
            }
        }
        FleetCmd::Top { interval, count } => {
            let mut n = 0;
            loop {
                let r = rows(&dir, Request::Ls)?;
                if w.json {
                    println!("{}", json!(r));
                } else {
                    print!("\x1b[H\x1b[2J");
                    print_ls(&r);
                }
                n += 1;
                if count.is_some_and(|c| n >= c) {
                    break;
                }
                std::thread::sleep(Duration::from_secs(interval.max(1)));
            }
        }
        FleetCmd::Drop { hosts, worst } => {
            if hosts.is_empty() && worst.is_none() {
                bail!("name the hosts to drop (zn-3 ...) or give --worst FRACTION");
            }
            let mut n = 0;
            daemon::request(&dir, &Request::Drop { hosts, worst }, |v| {
                n = v["count"].as_u64().unwrap_or(0);
                Ok(())
            })?;
            if w.json {
                println!("{}", json!({"dropped": n}));
            } else {
                eprintln!("zennet: dropped {n} containers");
            }
        }
        FleetCmd::Stop { all: _ } => {
            daemon::request(&dir, &Request::Stop, |v| {
                crate::publish::print_done(v, w.json);
                Ok(())
            })?;
        }
        FleetCmd::Bill => {
            let r = rows(&dir, Request::Bill)?;
            if w.json {
                println!("{}", json!(r));
            } else {
                for c in &r {
                    println!("{} {} paid {}", c["host"].as_str().unwrap_or(""), c["provider"].as_str().unwrap_or(""), Amount(c["paid"].as_u64().unwrap_or(0)));
                    for (name, p) in c["components"].as_object().into_iter().flatten() {
                        println!("  {name:<18} {:>20} {:>16}", p["amount"], Amount(p["owed"].as_u64().unwrap_or(0)).to_string());
                    }
                }
            }
        }
        FleetCmd::Hosts { format } => {
            let files = Files::in_dir(&dir);
            let p = files.of_format(&format)?;
            let text = std::fs::read_to_string(p).with_context(|| format!("read {} (is a fleet running?)", p.display()))?;
            print!("{text}");
        }
        FleetCmd::Run { replicas, cmd } => return replicate(&dir, replicas, &cmd, w.json),
    }
    Ok(())
}

/// `zennet run --replicas R -- CMD`: R hosts of distinct providers, in parallel.
fn replicate(dir: &Path, replicas: usize, cmd: &[String], json_out: bool) -> anyhow::Result<()> {
    if replicas == 0 {
        bail!("--replicas must be at least 1");
    }
    let all = rows(dir, Request::Ls)?;
    let mut seen = std::collections::HashSet::new();
    // (host, provider) of the first ready container of each provider.
    let hosts: Vec<(String, String)> = all
        .iter()
        .filter(|r| r["state"] == "ready" && seen.insert(r["provider"].as_str().unwrap_or("").to_string()))
        .filter_map(|r| Some((r["host"].as_str()?.to_string(), r["provider"].as_str().unwrap_or("").to_string())))
        .take(replicas)
        .collect();
    if hosts.len() < replicas {
        bail!("only {} ready containers on distinct providers, {replicas} replicas asked", hosts.len());
    }
    let config = Files::in_dir(dir).config;
    let line = cmd.join(" ");
    let kids: Vec<(&(String, String), std::process::Child)> = hosts
        .iter()
        .map(|hp| {
            let h = &hp.0;
            let c = std::process::Command::new("ssh").arg("-F").arg(&config).args(["-o", "BatchMode=yes", h, &line]).stdout(std::process::Stdio::piped()).spawn().with_context(|| format!("run ssh for {h}"));
            c.map(|c| (hp, c))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut results = Vec::new();
    for ((h, provider), k) in kids {
        let o = k.wait_with_output()?;
        let hash = hex::encode(zennet_protocol::keys::sha256(&o.stdout));
        let key = format!("{hash}:{}", o.status.code().unwrap_or(-1));
        groups.entry(key).or_default().push(h.clone());
        results.push(json!({"host": h, "provider": provider, "exit": o.status.code(), "sha256": hash}));
    }
    let agree = groups.len() == 1;
    if json_out {
        println!("{}", json!({"replicas": replicas, "agree": agree, "results": results}));
    } else {
        for (k, hs) in &groups {
            let (hash, code) = k.split_once(':').unwrap_or((k, ""));
            println!("{} exit={code} sha256={hash}", hs.join(","));
        }
        println!("{}", if agree { format!("agreement: all {replicas} replicas printed the same output") } else { format!("DISAGREEMENT: {} different outputs among {replicas} replicas", groups.len()) });
    }
    if !agree {
        std::process::exit(1);
    }
    Ok(())
}
