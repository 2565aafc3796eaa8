//! Running `ip` and `nft` with a script on stdin (`ip -batch -`,
//! `nft -f -`), so that one process does a whole step.

use std::io::Write;
use std::process::{Command, Stdio};

use super::NetError;

/// Runs `program args..` with `script` on stdin; `what` names the step for
/// the error (e.g. "attach c1"). Returns stdout on success.
pub(super) fn run(
    program: &str,
    args: &[&str],
    script: &str,
    what: &str,
) -> Result<String, NetError> {
    let cmdline = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let spawn_err = |e: std::io::Error| NetError::Spawn {
        what: what.to_string(),
        cmd: cmdline.clone(),
        source: e,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    {
        let mut stdin = child.stdin.take().expect("piped stdin");
        // A write error (EPIPE) shows up as a failed exit below.
        let _ = stdin.write_all(script.as_bytes());
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NetError::Command {
            what: what.to_string(),
            cmd: cmdline,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            script: script.to_string(),
        })
    }
}

/// `ip -batch -` in the host's netns.
pub(super) fn ip_batch(script: &str, what: &str) -> Result<String, NetError> {
    run("ip", &["-batch", "-"], script, what)
}

/// `ip -n NETNS -batch -`: every command runs inside the named netns.
pub(super) fn ip_batch_in(netns: &str, script: &str, what: &str) -> Result<String, NetError> {
    run("ip", &["-n", netns, "-batch", "-"], script, what)
}

/// `nft -f -`: the whole script is one atomic transaction.
pub(super) fn nft(script: &str, what: &str) -> Result<String, NetError> {
    run("nft", &["-f", "-"], script, what)
}
