//! `zennet wallet` end to end against a real one-node devnet (`xencoind
//! --dev`): import a prefunded dev key from stdin, create a new wallet, send
//! to it and see the balance move; refusals name what was wrong and leave
//! the key files as they were.

use serde_json::Value;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;
use common::{devnet, xencoind, Devnet};

fn zennet(net: &Devnet, key: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zennet"))
        .arg("wallet")
        .arg("--wallet")
        .arg(key)
        .args(["--rpc", &net.rpc])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut i = c.stdin.take().unwrap();
    if let Some(s) = stdin {
        i.write_all(s.as_bytes()).unwrap();
    }
    drop(i);
    c.wait_with_output().unwrap()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

fn err(o: Output) -> String {
    assert!(!o.status.success(), "succeeded: {}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8(o.stderr).unwrap()
}

fn balance(net: &Devnet, key: &Path, addr: &str) -> (u64, u64) {
    let v: Value = serde_json::from_str(&ok(zennet(net, key, &["balance", addr, "--json"], None))).unwrap();
    (v["balance"].as_u64().unwrap(), v["nonce"].as_u64().unwrap())
}

#[test]
fn wallet_imports_sends_and_sees_the_balance_move() {
    let dir = tempfile::tempdir().unwrap();
    let net = devnet(&dir.path().join("chain"));
    let (rich, fresh) = (dir.path().join("rich.key"), dir.path().join("fresh.key"));

    // dev key 1 (0 produces blocks and earns fees, so its balance moves by itself)
    let keys = ok(Command::new(xencoind()).arg("dev-keys").output().unwrap());
    let dev1: Vec<&str> = keys.lines().nth(1).unwrap().split_whitespace().collect();
    let (secret, dev_addr) = (dev1[1], dev1[2]);
    assert_eq!(ok(zennet(&net, &rich, &["import"], Some(secret))), dev_addr);
    assert_eq!(std::fs::metadata(&rich).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(ok(zennet(&net, &rich, &["address"], None)), dev_addr);
    let before = std::fs::read(&rich).unwrap();

    let to = ok(zennet(&net, &fresh, &["new"], None));
    assert!(to.starts_with("xen1"), "{to}");
    assert_eq!(balance(&net, &fresh, &to), (0, 0));
    let (rich0, nonce0) = balance(&net, &rich, dev_addr);

    // send 1.5 XEN, fee 2000 base units; waits for the block
    let out = ok(zennet(&net, &rich, &["send", &to, "1.5", "--fee", "2000", "--json"], None));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v["height"].as_u64().unwrap() >= 1, "{out}");
    assert_eq!(balance(&net, &fresh, &to), (150_000_000, 0));
    assert_eq!(balance(&net, &rich, dev_addr), (rich0 - 150_000_000 - 2000, nonce0 + 1));

    // refusals name what was wrong, and nothing stored changes
    let e = err(zennet(&net, &fresh, &["send", dev_addr, "2"], None));
    assert!(e.contains("balance") || e.contains("overspend") || e.contains("insufficient"), "{e}");
    let e = err(zennet(&net, &rich, &["send", "xen1notanaddress", "1"], None));
    assert!(e.contains("xen1notanaddress"), "{e}");
    let e = err(zennet(&net, &rich, &["new"], None));
    assert!(e.contains("must not exist"), "{e}");
    let e = err(zennet(&net, &rich, &["import"], Some("zz")));
    assert!(e.contains("not hex") && !e.contains("zz"), "{e}");
    assert_eq!(std::fs::read(&rich).unwrap(), before, "a refused command changed the key file");
    std::fs::set_permissions(&rich, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = err(zennet(&net, &rich, &["address"], None));
    assert!(e.contains("readable by group or others"), "{e}");
    assert!(!e.contains(secret), "error shows the secret");
    let e = err(zennet(&net, &dir.path().join("none.key"), &["address"], None));
    assert!(e.contains("zennet wallet new"), "{e}");
}
