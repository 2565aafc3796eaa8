//! Existing distributed tools on a hired fleet (root; needs the Debian base,
//! which carries perl and python3: `make test-debian-base` builds it and runs
//! this): a devnet, four agents offering the Debian base, `zennet -n 4 -m 64M
//! --image debian`, then Debian's GNU parallel through the written
//! sshloginfile (40 jobs, every output back, spread over the fleet),
//! Debian's Ansible `ping` through the written inventory, `zennet top`, the
//! seed's `run --replicas 3 -- sha256sum /etc/os-release`, and `stop`.
mod common;

use common::{dev_keys, devnet, is_root, text, write_key, zennet, Agent};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Four agents whose bases dir offers `debian` (a link to the built base;
/// each agent makes its own busybox base next to it).
fn agents_offering(d: &Path, debian: &Path, rpc: &str) -> Vec<Agent> {
    let keys = dev_keys();
    (0..4)
        .map(|i| {
            let bases = d.join(format!("bases{i}"));
            std::fs::create_dir_all(&bases).unwrap();
            std::os::unix::fs::symlink(debian, bases.join("debian")).unwrap();
            Agent::start(d, i, &keys[2 + i].0, rpc, &["--bases-dir", bases.to_str().unwrap()])
        })
        .collect()
}

#[test]
#[ignore = "needs ZENNET_DEBIAN_BASE: run through `make test-debian-base`"]
fn parallel_ansible_top_and_replicas_run_on_a_debian_fleet() {
    if !is_root() {
        return eprintln!("skipped: the agents' containers need root");
    }
    let debian = PathBuf::from(std::env::var("ZENNET_DEBIAN_BASE").expect("ZENNET_DEBIAN_BASE names a built Debian base"));
    assert!(debian.join("usr/bin/python3").exists(), "{} has no python3: rebuild it (`zennet-agent make-base debian`)", debian.display());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let net = devnet(&d.join("chain"));
    let wallet = d.join("publisher.key");
    write_key(&wallet, &dev_keys()[1].0);
    let agents = agents_offering(d, &debian, &net.rpc);
    let logs = || agents.iter().map(|a| a.log()).collect::<String>();
    let home = d.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let state = d.join("pub");
    let z = |args: &[&str]| zennet(&net, &wallet, &home, &state, args);
    let daemon_log = || std::fs::read_to_string(state.join("daemon.log")).unwrap_or_default();

    let t0 = Instant::now();
    let o = z(&["-n", "4", "-m", "64M", "--image", "debian", "--cpus", "0.5", "--json"]);
    assert!(o.status.success(), "zennet -n 4 --image debian: {}\n{}\n{}", text(&o.stderr), text(&o.stdout), logs());
    eprintln!("debian fleet of 4 ready in {:?}", t0.elapsed());
    let cfg = state.join("ssh_config");
    let o = Command::new("ssh").arg("-F").arg(&cfg).args(["-o", "BatchMode=yes", "zn-1", "cat /etc/debian_version && perl -e 'print qq(perl ok\n)' && python3 -c 'print(\"python ok\")'"]).output().unwrap();
    assert!(o.status.success() && text(&o.stdout).contains("perl ok\npython ok\n"), "zn-1: {}{}", text(&o.stdout), text(&o.stderr));

    // GNU parallel: 40 remote jobs through the sshloginfile `zennet` wrote;
    // each prints its number and the container it ran in.
    let t = Instant::now();
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("seq 40 | parallel --will-cite --sshloginfile {} 'echo job-{{}} on $(cat /proc/sys/kernel/hostname)'", state.join("hosts.parallel").display()))
        .env("HOME", &home)
        .output()
        .unwrap();
    let out = text(&o.stdout);
    assert!(o.status.success(), "parallel: {}{}\ndaemon: {}\nagents: {}", out, text(&o.stderr), daemon_log(), logs());
    for j in 1..=40 {
        assert!(out.lines().any(|l| l.starts_with(&format!("job-{j} on "))), "job {j}'s output missing: {out}");
    }
    let hosts: BTreeSet<&str> = out.lines().filter_map(|l| l.split(" on ").nth(1)).collect();
    assert!(hosts.len() >= 2, "40 jobs ran in one container only: {hosts:?}");
    eprintln!("parallel: 40 jobs on {} containers in {:?}", hosts.len(), t.elapsed());

    // Ansible: ping every host of the written inventory. No ControlPersist
    // master is left behind (the test must not leak ssh processes).
    let t = Instant::now();
    let o = Command::new("ansible")
        .args(["-i"])
        .arg(state.join("inventory.ini"))
        .args(["all", "-m", "ping", "-e", "ansible_python_interpreter=/usr/bin/python3"])
        .env("HOME", &home)
        .env("ANSIBLE_SSH_ARGS", "-o ControlMaster=no")
        .env("ANSIBLE_LOCAL_TEMP", d.join("ansible-tmp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .output()
        .unwrap();
    let out = text(&o.stdout);
    assert!(o.status.success(), "ansible ping: {}{}", out, text(&o.stderr));
    for i in 1..=4 {
        assert!(out.contains(&format!("zn-{i} | SUCCESS")), "zn-{i} did not answer ansible's ping: {out}");
    }
    assert_eq!(out.matches("\"ping\": \"pong\"").count(), 4, "{out}");
    eprintln!("ansible: ping on 4 hosts in {:?}", t.elapsed());

    // top: the ls table refreshed; with --json one array per refresh.
    let o = z(&["top", "--count", "2", "--interval", "1", "--json"]);
    assert!(o.status.success(), "top: {}", text(&o.stderr));
    let frames: Vec<Vec<Value>> = text(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(frames.len(), 2);
    assert!(frames.iter().all(|f| f.iter().filter(|r| r["state"] == "ready").count() == 4), "{frames:?}");
    let o = z(&["top", "--count", "1"]);
    let screen = text(&o.stdout);
    assert!(screen.starts_with("\x1b[H\x1b[2J") && screen.contains("HOST") && screen.contains("zn-4"), "{screen:?}");

    // The seed's replicated computation: three distinct providers agree.
    let o = z(&["run", "--replicas", "3", "--json", "--", "sha256sum", "/etc/os-release"]);
    let v: Value = serde_json::from_str(text(&o.stdout).trim()).unwrap_or_else(|_| panic!("run: {}{}", text(&o.stdout), text(&o.stderr)));
    assert_eq!(v["agree"], true, "{v}");
    let providers: BTreeSet<&str> = v["results"].as_array().unwrap().iter().map(|r| r["provider"].as_str().unwrap_or("")).collect();
    assert_eq!(providers.len(), 3, "{v}");

    let o = z(&["stop", "--json"]);
    assert!(o.status.success(), "stop: {}", text(&o.stderr));
    let done: Value = serde_json::from_str(text(&o.stdout).trim()).unwrap();
    assert!(done["contracts"].as_array().unwrap().iter().all(|c| !c["settled_by"].is_null()), "{done}");
    drop(agents);
}
