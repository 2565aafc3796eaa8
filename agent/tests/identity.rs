//! The agent's identity: created on first start (mode 0600, never logged),
//! the same address on every restart, and a key file others can read is
//! refused with a message naming it. Runs the real `zennet-agent run`; needs root.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

const PARENT: &str = "zt-identity";

/// Starts `zennet-agent run`, waits for its ready line, stops it with
/// SIGTERM; returns the ready line, or the failure's stderr.
fn start_stop(state: &Path) -> Result<String, String> {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zennet-agent"))
        .args(["run", "--no-network", "--cgroup-parent", PARENT, "--state-dir"])
        .arg(state)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    // Kept open until the agent exits: it prints again when it stops.
    let mut stdout = BufReader::new(c.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    if !line.starts_with("zennet-agent ready") {
        let out = c.wait_with_output().unwrap();
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stdout, &mut rest);
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "agent exit: {:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let key = std::fs::read_to_string(state.join("identity.key")).unwrap();
    assert!(!stderr.contains(key.trim()) && !line.contains(key.trim()), "the secret was printed");
    Ok(line)
}

fn address(ready: &str) -> String {
    ready.split_whitespace().find_map(|w| w.strip_prefix("address=")).expect("address in the ready line").to_string()
}

/// Removes the engine's groups (the zygote's) however the test ends.
struct Groups;

impl Drop for Groups {
    fn drop(&mut self) {
        for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/pids"] {
            let _ = std::fs::remove_dir(Path::new(root).join(format!("{PARENT}.zygote")));
            let _ = std::fs::remove_dir(Path::new(root).join(PARENT));
        }
    }
}

#[test]
fn identity_is_created_once_and_kept_across_restarts() {
    assert!(nix::unistd::geteuid().is_root(), "agent tests need root");
    let _groups = Groups;
    let dir = tempfile::Builder::new().prefix("zt-id-").tempdir_in("/var/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.path().join("state");
    let first = address(&start_stop(&state).unwrap());
    assert!(first.starts_with("xen1"), "{first}");
    let key = state.join("identity.key");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(address(&start_stop(&state).unwrap()), first, "restart changed the address");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = start_stop(&state).unwrap_err();
    assert!(err.contains("identity.key") && err.contains("readable by group or others"), "{err}");
}
