//! The publisher's fleet end to end (root: the agents run real containers):
//! a devnet, four agents, `zennet -n 4 -m 64M` handing the fleet to the
//! background daemon, then plain ssh to every host, the files for existing
//! tools, `ls`, `bill`, `run --replicas`, `drop --worst`, `stop`, and a
//! `--budget` that stops a fleet by itself with no overspend on chain, and
//! the error of a fleet nobody serves.
mod common;

use common::{devnet_wallet_agents, is_root, text, zennet};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn json_lines(o: &Output) -> Vec<Value> {
    text(&o.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn wait_daemon_gone(state: &Path, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if std::os::unix::net::UnixStream::connect(state.join("zennet.sock")).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn a_fleet_is_hired_used_by_tools_pruned_replicated_and_stopped() {
    if !is_root() {
        return eprintln!("skipped: the agents' containers need root");
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (net, wallet, agents) = devnet_wallet_agents(d, 4);
    let home = d.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let state = d.join("pub");
    let logs = || agents.iter().map(|a| a.log()).collect::<String>();

    // The seed's form: returns once the fleet is ready, the daemon holds it.
    let t0 = Instant::now();
    let o = zennet(&net, &wallet, &home, &state, &["-n", "4", "-m", "64M", "--json", "--cpus", "0.25", "--interval-ms", "1000"]);
    assert!(o.status.success(), "zennet -n 4: {}\n{}\n{}", text(&o.stderr), text(&o.stdout), logs());
    let lines = json_lines(&o);
    let ready: Vec<&Value> = lines.iter().filter(|v| v["event"] == "ready").collect();
    assert_eq!(ready.len(), 4, "{lines:?}");
    assert!(lines.iter().any(|v| v["event"] == "hired" && v["ready"] == 4));
    eprintln!("fleet of 4 ready in {:?}", t0.elapsed());
    // The daemon's idle timer (2 s here) never ends a running fleet.
    std::thread::sleep(Duration::from_secs(3));
    let cfg = state.join("ssh_config");
    for i in 1..=4 {
        let o = Command::new("ssh").arg("-F").arg(&cfg).args(["-o", "BatchMode=yes", &format!("zn-{i}"), "echo up-$((40+2))"]).output().unwrap();
        assert_eq!(text(&o.stdout), "up-42\n", "zn-{i}: {}", text(&o.stderr));
    }

    // Files for existing tools.
    for (format, want) in [("ssh", "Host zn-4"), ("mpi", "zn-4 slots=1"), ("parallel", "1/ssh -F"), ("ansible", "zn-4 ansible_ssh_common_args")] {
        let o = zennet(&net, &wallet, &home, &state, &["hosts", "--format", format]);
        assert!(o.status.success() && text(&o.stdout).contains(want), "hosts --format {format}: {}{}", text(&o.stdout), text(&o.stderr));
    }
    let o = zennet(&net, &wallet, &home, &state, &["hosts", "--format", "slurm"]);
    assert!(!o.status.success() && text(&o.stderr).contains("unknown format"), "{}", text(&o.stderr));
    // GNU parallel and Ansible run through these files on the Debian base
    // (perl, python3): cli/tests/fleet_tools.rs.

    // ls and bill.
    let o = zennet(&net, &wallet, &home, &state, &["ls", "--json"]);
    let rows: Vec<Value> = serde_json::from_str(&text(&o.stdout)).unwrap_or_else(|_| panic!("ls: {}{}", text(&o.stdout), text(&o.stderr)));
    assert_eq!(rows.iter().filter(|r| r["state"] == "ready").count(), 4, "{rows:?}");
    std::thread::sleep(Duration::from_millis(2500));
    let o = zennet(&net, &wallet, &home, &state, &["bill", "--json"]);
    let bill: Vec<Value> = serde_json::from_str(&text(&o.stdout)).unwrap();
    assert_eq!(bill.len(), 4);
    assert!(bill.iter().all(|b| b["paid"].as_u64().unwrap() > 0 && b["components"]["cpu_user_ns"].is_object()), "{bill:?}");

    // The same command on 3 distinct providers agrees.
    let o = zennet(&net, &wallet, &home, &state, &["run", "--replicas", "3", "--json", "--", "sha256sum", "/etc/passwd"]);
    let v: Value = serde_json::from_str(text(&o.stdout).trim()).unwrap_or_else(|_| panic!("run: {}{}", text(&o.stdout), text(&o.stderr)));
    assert_eq!(v["agree"], true, "{v}");
    assert_eq!(v["results"].as_array().unwrap().len(), 3);
    let o = zennet(&net, &wallet, &home, &state, &["run", "--replicas", "5", "--", "true"]);
    assert!(!o.status.success() && text(&o.stderr).contains("distinct providers"), "{}", text(&o.stderr));

    // Drop the worst half: two stay.
    let o = zennet(&net, &wallet, &home, &state, &["drop", "--worst", "0.5", "--json"]);
    assert!(o.status.success(), "drop: {}", text(&o.stderr));
    let o = zennet(&net, &wallet, &home, &state, &["ls", "--json"]);
    let rows: Vec<Value> = serde_json::from_str(&text(&o.stdout)).unwrap();
    assert_eq!(rows.iter().filter(|r| r["state"] == "ready").count(), 2, "{rows:?}");

    // A second fleet while one runs is refused, naming it.
    let o = zennet(&net, &wallet, &home, &state, &["-n", "1", "-m", "64M"]);
    assert!(!o.status.success() && text(&o.stderr).contains("running already"), "{}", text(&o.stderr));

    // Stop: every channel settled, the daemon gone, the files empty.
    let o = zennet(&net, &wallet, &home, &state, &["stop", "--json"]);
    assert!(o.status.success(), "stop: {}", text(&o.stderr));
    let done: Value = serde_json::from_str(text(&o.stdout).trim()).unwrap();
    let cs = done["contracts"].as_array().unwrap();
    assert_eq!(cs.len(), 4);
    assert!(cs.iter().all(|c| !c["settled_by"].is_null()), "{done}");
    assert!(wait_daemon_gone(&state, Duration::from_secs(10)));
    assert!(!std::fs::read_to_string(&cfg).unwrap().contains("Host zn-"));
    let o = zennet(&net, &wallet, &home, &state, &["ls"]);
    assert!(!o.status.success() && text(&o.stderr).contains("no zennet daemon"), "{}", text(&o.stderr));

    // A budget stops the fleet by itself; the chain shows no overspend.
    let budget_base = 1_000u64;
    let o = zennet(&net, &wallet, &home, &state, &["-n", "2", "-m", "64M", "--cpus", "1", "--interval-ms", "500", "--budget", "0.00001", "--json"]);
    assert!(o.status.success(), "budget fleet: {}\n{}", text(&o.stderr), logs());
    let channels: Vec<String> = json_lines(&o).iter().filter(|v| v["event"] == "ready").map(|v| v["channel"].as_str().unwrap().to_string()).collect();
    assert_eq!(channels.len(), 2);
    let spin = Command::new("ssh").arg("-F").arg(&cfg).args(["-o", "BatchMode=yes", "zn-1", "while :; do :; done"]).spawn();
    let gone = wait_daemon_gone(&state, Duration::from_secs(60));
    if !gone {
        let _ = zennet(&net, &wallet, &home, &state, &["stop"]);
    }
    if let Ok(mut s) = spin {
        let _ = s.kill();
        let _ = s.wait();
    }
    assert!(gone, "the budget did not stop the fleet\n{}", std::fs::read_to_string(state.join("daemon.log")).unwrap_or_default());
    assert!(std::fs::read_to_string(state.join("daemon.log")).unwrap().contains("the budget"));
    // On chain the channels paid at most the budget (a channel pays only when
    // its provider closes it; one left open is refunded after its expiry).
    let chain = zennet_net::rpc::Chain::new(&net.rpc);
    std::thread::sleep(Duration::from_secs(3));
    let chs: Vec<_> = channels.iter().map(|c| chain.channel(&zennet_protocol::tx::Hash32::from_hex(c).unwrap()).unwrap().unwrap()).collect();
    let paid: u64 = chs.iter().map(|c| c.paid.0).sum();
    assert!(paid <= budget_base, "the channels paid {paid}, the budget was {budget_base}: {chs:?}");

    // A fleet nobody serves fails with what was announced and what went wrong.
    let o = zennet(&net, &wallet, &home, &state, &["-n", "1", "-m", "64M", "--image", "nosuchbase", "--timeout", "3"]);
    let err = text(&o.stderr);
    assert!(!o.status.success() && err.contains("0 of 1 containers ready; announced 1 x 64 MiB") && err.contains("image nosuchbase"), "{err}");
    eprintln!("{}", err.lines().last().unwrap_or(""));
    assert!(wait_daemon_gone(&state, Duration::from_secs(10)));
    let o = zennet(&net, &wallet, &home, &state, &["-n", "1", "-m", "64M", "--max-price", "0.00000001", "--timeout", "4"]);
    let err = text(&o.stderr);
    assert!(!o.status.success() && err.contains("ceiling 0.00000001 XEN per hour; no provider answered"), "{err}");
    assert!(wait_daemon_gone(&state, Duration::from_secs(10)));
    drop(agents);
}
