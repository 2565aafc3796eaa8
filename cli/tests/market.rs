//! The market end to end between real processes (root: the agents run real
//! containers): a one-node devnet, provider agents each with its own
//! identity, state dir and cgroup parent, and `zennet rent` as the
//! publisher. Every figure is checked against the chain.
mod common;

use common::{bin, dev_keys, devnet, is_root, write_key, Agent, Devnet};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use zennet_protocol::{cost, Rates, UsageVector};

const FEE: u64 = 1000;

fn rpc(net: &Devnet, method: &str, params: Value) -> Value {
    zennet_net::rpc::call(&net.rpc, method, params).unwrap()
}

fn balance(net: &Devnet, addr: &str) -> u64 {
    rpc(net, "xen_getAccount", serde_json::json!([addr]))["balance"].as_u64().unwrap()
}

fn rent(net: &Devnet, wallet: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin("zennet"));
    c.arg("rent").arg("--foreground").arg("--wallet").arg(wallet).args(["--rpc", &net.rpc, "--json", "--interval-ms", "1000"]).args(args);
    c
}

/// The `done` line of `zennet rent --json`.
fn done(stdout: &str) -> Value {
    stdout.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find(|v| v["event"] == "done").unwrap_or_else(|| panic!("no done line in {stdout}"))
}

/// The tests of this file run one at a time: each starts a chain and
/// agents, and their timing checks assume the machine is not shared.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Root, one test at a time: a devnet, the publisher's wallet (dev key 1)
/// and `n_agents` agents (dev keys 2, 3, ...). `None` (skipped) without root.
fn setup(n_agents: usize, extra: &[&str]) -> Option<(std::sync::MutexGuard<'static, ()>, tempfile::TempDir, Devnet, PathBuf, String, Vec<Agent>)> {
    if !is_root() {
        eprintln!("skipped: the agents' containers need root");
        return None;
    }
    let serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let net = devnet(&dir.path().join("chain"));
    let keys = dev_keys();
    let wallet = dir.path().join("publisher.key");
    write_key(&wallet, &keys[1].0);
    let agents = (0..n_agents).map(|i| Agent::start(dir.path(), i, &keys[2 + i].0, &net.rpc, extra)).collect();
    let publisher = keys[1].1.clone();
    Some((serial, dir, net, wallet, publisher, agents))
}

/// `zennet rent ARGS` in the background; returns it, its stdout, and the
/// first line (the first container's `ready` object).
fn spawn_rent(net: &Devnet, wallet: &Path, args: &[&str]) -> (Child, BufReader<std::process::ChildStdout>, String) {
    let mut p = rent(net, wallet, args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(p.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    (p, out, line)
}

#[test]
fn three_agents_are_hired_metered_paid_and_settled_exactly() {
    let Some((_serial, _dir, net, wallet, publisher, mut agents)) = setup(3, &[]) else { return };
    let before: Vec<u64> = agents.iter().map(|a| balance(&net, &a.address)).collect();
    let pub_before = balance(&net, &publisher);
    let out = rent(&net, &wallet, &["-n", "3", "-m", "64M", "--cpus", "0.5", "--duration", "6"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let logs: String = agents.iter().map(|a| a.log()).collect();
    assert!(out.status.success(), "rent failed: {}\n{stdout}\nagents:\n{logs}", String::from_utf8_lossy(&out.stderr));
    let d = done(&stdout);
    let cs = d["contracts"].as_array().unwrap();
    assert_eq!(cs.len(), 3, "{d}");
    let mut paid_total = 0;
    let mut providers = std::collections::BTreeSet::new();
    for c in cs {
        assert_eq!(c["state"], "ended", "{c}");
        assert_eq!(c["settled_by"], "closed", "{c}");
        let voucher = c["voucher"].as_u64().unwrap();
        assert!(voucher > 0 && c["reports"].as_u64().unwrap() >= 3, "{c}");
        // The chain paid exactly the last voucher, and the rest went back.
        assert_eq!(c["paid_on_chain"].as_u64().unwrap(), voucher, "{c}");
        assert_eq!(c["refunded"].as_u64().unwrap(), c["deposit"].as_u64().unwrap() - voucher, "{c}");
        // The voucher is the contract's rates times the last reported usage,
        // rounded down once (the shared cost function).
        let rates: Rates = serde_json::from_value(c["rates"].clone()).unwrap();
        let usage = UsageVector { version: UsageVector::VERSION, counters: serde_json::from_value(c["usage"].clone()).unwrap() };
        assert_eq!(cost(&rates, &usage).unwrap().0, voucher, "{c}");
        providers.insert(c["provider"].as_str().unwrap().to_string());
        paid_total += voucher;
    }
    // Each agent sells one 64 MiB container: three distinct providers, each
    // gained its voucher less the close fee.
    assert_eq!(providers.len(), 3);
    for (a, b) in agents.iter().zip(&before) {
        let c = cs.iter().find(|c| c["provider"] == a.address.as_str()).unwrap();
        assert_eq!(balance(&net, &a.address), b + c["voucher"].as_u64().unwrap() - FEE, "agent {}", a.address);
    }
    // The publisher paid the vouchers and four fees (announce, three opens).
    assert_eq!(balance(&net, &publisher), pub_before - paid_total - 4 * FEE);
    for a in &mut agents {
        a.stop();
    }
}

#[test]
fn a_publisher_that_stops_paying_is_frozen_then_killed_and_the_provider_keeps_its_last_voucher() {
    let Some((_serial, _dir, net, wallet, _publisher, agents)) = setup(1, &[]) else { return };
    // A tiny exposure bound: one unpaid interval is above it.
    let (mut p, _out, line) = spawn_rent(&net, &wallet, &["-n", "1", "-m", "64M", "--exposure", "0.00000001", "--expiry-blocks", "600"]);
    let ready: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{line:?} {}", agents[0].log()));
    let channel = ready["channel"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(2500));
    // Stop the publisher without closing its connection: reports go unpaid.
    Command::new("kill").args(["-STOP", &p.id().to_string()]).status().unwrap();
    let stopped = Instant::now();
    let deadline = stopped + Duration::from_secs(30);
    let mut frozen_at = None;
    let ch = loop {
        let log = agents[0].log();
        if frozen_at.is_none() && log.contains("container frozen") {
            frozen_at = Some(stopped.elapsed());
        }
        let ch = rpc(&net, "xen_getChannel", serde_json::json!([channel]));
        if ch["settled"] == true {
            break ch;
        }
        assert!(Instant::now() < deadline, "not settled; agent log:\n{log}");
        std::thread::sleep(Duration::from_millis(200));
    };
    Command::new("kill").args(["-KILL", &p.id().to_string()]).status().unwrap();
    let _ = p.wait();
    // (The close is logged once the agent sees it in a block: give it a moment.)
    for _ in 0..50 {
        if agents[0].log().contains("for 3 intervals") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = agents[0].log();
    // Frozen within the first unpaid interval or two (1 s each, plus slack),
    // killed after the grace period (3 intervals), paid its best voucher.
    let frozen_at = frozen_at.unwrap_or_else(|| panic!("never frozen:\n{log}"));
    assert!(frozen_at < Duration::from_secs(4), "frozen after {frozen_at:?}");
    assert!(log.contains("for 3 intervals"), "{log}");
    assert!(ch["paid"].as_u64().unwrap() > 0, "{ch}");
    // The agent remembers: the same publisher's next job is not answered.
    let out = rent(&net, &wallet, &["-n", "1", "-m", "64M", "--timeout", "4"]).output().unwrap();
    assert!(!out.status.success());
    let log = agents[0].log();
    assert!(log.contains("has unpaid history") && log.contains("disputes: 1"), "{log}");
}

#[test]
fn a_vanished_provider_fails_within_two_intervals_and_its_deposit_is_refunded_after_expiry() {
    let Some((_serial, _dir, net, wallet, publisher, mut agents)) = setup(1, &[]) else { return };
    let pub_before = balance(&net, &publisher);
    let (mut p, mut out, line) = spawn_rent(&net, &wallet, &["-n", "1", "-m", "64M", "--expiry-blocks", "15", "--deposit", "0.01"]);
    assert!(line.contains("\"ready\""), "{line:?}");
    std::thread::sleep(Duration::from_millis(1500));
    // SIGKILL the agent: no close, no more reports.
    Command::new("kill").args(["-KILL", &agents[0].child.id().to_string()]).status().unwrap();
    let _ = agents[0].child.wait();
    // The publisher notices, then stops and refunds after expiry.
    std::thread::sleep(Duration::from_secs(4));
    Command::new("kill").args(["-TERM", &p.id().to_string()]).status().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = p.wait().unwrap();
    let d = done(&rest);
    let c = &d["contracts"][0];
    assert!(status.success(), "{rest}");
    assert_eq!(c["state"], "failed", "{c}");
    assert_eq!(c["settled_by"], "refunded", "{c}");
    assert_eq!(c["refunded"].as_u64().unwrap(), c["deposit"].as_u64().unwrap(), "{c}");
    // Only fees spent: announce, open, refund.
    assert_eq!(balance(&net, &publisher), pub_before - 3 * FEE);
    // Restarted, the agent settles what its store holds: the container goes,
    // the close is refused (the channel was refunded) and recorded.
    let dir = _dir.path().to_path_buf();
    let keys = dev_keys();
    drop(agents);
    let a = Agent::start(&dir, 0, &keys[2].0, &net.rpc, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !a.log().contains("channel already settled") {
        assert!(Instant::now() < deadline, "restarted agent did not settle:\n{}", a.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_agent_killed_mid_contract_settles_on_restart_with_every_acknowledged_voucher() {
    let Some((_serial, dir, net, wallet, _publisher, mut agents)) = setup(1, &[]) else { return };
    let (mut p, mut out, line) = spawn_rent(&net, &wallet, &["-n", "1", "-m", "64M", "--duration", "12"]);
    assert!(line.contains("\"ready\""), "{line:?}");
    std::thread::sleep(Duration::from_millis(3500));
    Command::new("kill").args(["-KILL", &agents[0].child.id().to_string()]).status().unwrap();
    let _ = agents[0].child.wait();
    drop(agents.remove(0));
    // Restarted, it finds the contract open in its store and closes the
    // channel with the best voucher it stored.
    let keys = dev_keys();
    let a = Agent::start(dir.path(), 0, &keys[2].0, &net.rpc, &[]);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let _ = p.wait();
    let d = done(&rest);
    let c = &d["contracts"][0];
    assert_eq!(c["settled_by"], "closed", "{c}\n{}", a.log());
    let paid = c["paid_on_chain"].as_u64().unwrap();
    let acked = c["acked_voucher"].as_u64().unwrap();
    // Nothing acknowledged is lost; nothing unsigned is claimed.
    assert!(acked > 0 && paid >= acked && paid <= c["voucher"].as_u64().unwrap(), "{c}");
    assert!(a.log().contains("left open by a previous run"), "{}", a.log());
}

#[test]
fn keep_best_closes_the_others_cleanly_and_keeps_paying_the_best() {
    let Some((_serial, _dir, net, wallet, _publisher, _agents)) = setup(3, &[]) else { return };
    let out = rent(&net, &wallet, &["-n", "3", "-m", "64M", "--cpus", "0.5", "--keep-best", "2", "--after", "3", "--duration", "7"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("keeping the 2 most efficient containers, closing 1"), "{stderr}");
    let d = done(&stdout);
    let cs = d["contracts"].as_array().unwrap();
    let dropped: Vec<&Value> = cs.iter().filter(|c| c["reason"].as_str().is_some_and(|r| r.starts_with("not among the 2"))).collect();
    assert_eq!(dropped.len(), 1, "{d}");
    for c in cs {
        // Every channel, dropped or kept, closed by its provider at its last voucher.
        assert_eq!(c["settled_by"], "closed", "{c}");
        assert_eq!(c["paid_on_chain"], c["voucher"], "{c}");
    }
    // The kept ones ran on: more reports than the dropped one.
    let dropped_reports = dropped[0]["reports"].as_u64().unwrap();
    assert!(cs.iter().filter(|c| c["reason"] == "stopped").all(|c| c["reports"].as_u64().unwrap() > dropped_reports), "{d}");
}
