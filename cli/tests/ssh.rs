//! Plain ssh into rented containers, with Debian's OpenSSH client binaries
//! (root: the agent runs real containers): a devnet, one agent, `zennet
//! rent` holding the tunnels, and `ssh`, `scp`, `sftp` against its ports.
mod common;

use common::{devnet_wallet_agents, is_root, text};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `zennet rent` holding one container; SIGTERM and reap on drop.
struct Rent {
    child: Child,
    ready: Value,
    /// Kept open: the command prints its outcome there when it stops.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Rent {
    fn start(rpc: &str, wallet: &Path, home: &Path, state: &Path) -> Rent {
        let mut child = Command::new(common::bin("zennet"))
            .args(["rent", "--foreground"])
            .arg("--wallet")
            .arg(wallet)
            .args(["--rpc", rpc, "--json", "-n", "1", "-m", "64M", "--cpus", "0.5", "--disk", "128M", "--state-dir"])
            .arg(state)
            .env("HOME", home)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        let ready: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("no ready line: {line:?}"));
        assert_eq!(ready["event"], "ready", "{ready}");
        Rent { child, ready, _stdout: out }
    }
    fn port(&self) -> u16 {
        self.ready["port"].as_u64().unwrap() as u16
    }
    fn config(&self) -> PathBuf {
        PathBuf::from(self.ready["ssh_config"].as_str().unwrap())
    }
    fn known_hosts(&self) -> PathBuf {
        PathBuf::from(self.ready["known_hosts"].as_str().unwrap())
    }
    fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        self.child.wait().unwrap()
    }
}

impl Drop for Rent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}

/// `ssh -F CONFIG zn-1 CMD`, batch mode.
fn ssh(r: &Rent, extra: &[&str], cmd: &str) -> Output {
    Command::new("ssh").arg("-F").arg(r.config()).args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=20"]).args(extra).arg("zn-1").arg(cmd).output().unwrap()
}

fn sha256(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).output().unwrap();
    text(&out.stdout).split_whitespace().next().unwrap().to_string()
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(path).status().unwrap();
    assert!(st.success());
}

#[test]
fn plain_ssh_scp_sftp_and_forwarding_into_a_rented_container() {
    if !is_root() {
        return eprintln!("skipped: the agent's containers need root");
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (net, wallet, mut agents) = devnet_wallet_agents(d, 1);
    let agent = agents.remove(0);
    // The user's own key in ~/.ssh is the one the contract carries.
    let home = d.join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    keygen(&home.join(".ssh/id_ed25519"));
    let state = d.join("pub");
    let rent = Rent::start(&net.rpc, &wallet, &home, &state);
    let port = rent.port().to_string();

    // Plain ssh to the port, with the written known_hosts: exit codes pass through.
    let plain = |cmd: &str| {
        Command::new("ssh")
            .args(["-p", &port, "-i"])
            .arg(home.join(".ssh/id_ed25519"))
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", rent.known_hosts().display()))
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "root@127.0.0.1", cmd])
            .output()
            .unwrap()
    };
    let o = plain("uname -a");
    assert!(o.status.success(), "ssh uname: {}\n{}", text(&o.stderr), agent.log());
    assert!(text(&o.stdout).starts_with("Linux"), "{}", text(&o.stdout));
    assert_eq!(plain("true").status.code(), Some(0));
    assert_eq!(plain("exit 1").status.code(), Some(1));
    assert_eq!(plain("exit 255").status.code(), Some(255));
    let o = ssh(&rent, &[], "echo out; echo err >&2; echo $HOME; pwd; cat /proc/self/cgroup | head -1 >&2");
    assert_eq!(text(&o.stdout), "out\n/root\n/root\n");
    assert!(text(&o.stderr).starts_with("err\n"), "{}", text(&o.stderr));
    // env requests reach the session (OpenSSH sends LANG/LC_* through SendEnv).
    let o = ssh(&rent, &["-o", "SetEnv=ZN_TEST=hello"], "echo $ZN_TEST");
    assert_eq!(text(&o.stdout), "hello\n");

    // scp (OpenSSH 9: over sftp) 10 MiB both ways.
    let big = d.join("big.bin");
    let st = Command::new("dd").args(["if=/dev/urandom", "bs=1M", "count=10", "status=none"]).arg(format!("of={}", big.display())).status().unwrap();
    assert!(st.success());
    let scp = |from: &str, to: &str| Command::new("scp").arg("-F").arg(rent.config()).args(["-q", "-o", "BatchMode=yes", from, to]).output().unwrap();
    let o = scp(big.to_str().unwrap(), "zn-1:/root/big.bin");
    assert!(o.status.success(), "scp up: {}\n{}", text(&o.stderr), agent.log());
    let back = d.join("back.bin");
    let o = scp("zn-1:/root/big.bin", back.to_str().unwrap());
    assert!(o.status.success(), "scp down: {}", text(&o.stderr));
    assert_eq!(sha256(&big), sha256(&back));
    let o = ssh(&rent, &[], "sha256sum /root/big.bin");
    assert!(text(&o.stdout).starts_with(&sha256(&big)), "{}", text(&o.stdout));

    // sftp batch: mkdir, put, ls, get, rm.
    let batch = d.join("batch");
    let small = d.join("small.txt");
    std::fs::write(&small, "zennet sftp\n").unwrap();
    let got = d.join("got.txt");
    std::fs::write(&batch, format!("mkdir /root/dir\nput {} /root/dir/s.txt\nls -l /root/dir\nget /root/dir/s.txt {}\nrm /root/dir/s.txt\nrmdir /root/dir\n", small.display(), got.display())).unwrap();
    let o = Command::new("sftp").arg("-F").arg(rent.config()).args(["-o", "BatchMode=yes", "-b"]).arg(&batch).arg("zn-1").output().unwrap();
    assert!(o.status.success(), "sftp: {}{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stdout).contains("s.txt"), "{}", text(&o.stdout));
    assert_eq!(std::fs::read_to_string(&got).unwrap(), "zennet sftp\n");
    assert_eq!(text(&ssh(&rent, &[], "ls /root/dir 2>&1; echo $?").stdout).lines().last(), Some("1"));

    // ssh -L to busybox httpd inside the container.
    let o = ssh(&rent, &[], "mkdir -p /www && echo hello-from-inside > /www/index.html && httpd -p 127.0.0.1:8080 -h /www && echo started");
    assert_eq!(text(&o.stdout), "started\n", "{}", text(&o.stderr));
    let lport = free_port();
    let mut fwd = Command::new("ssh").arg("-F").arg(rent.config()).args(["-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-N", "-L", &format!("127.0.0.1:{lport}:127.0.0.1:8080"), "zn-1"]).spawn().unwrap();
    let page = http_get(lport, Duration::from_secs(20));
    let _ = fwd.kill();
    let _ = fwd.wait();
    assert!(page.contains("hello-from-inside"), "{page:?}\n{}", agent.log());

    // 20 concurrent sessions.
    let kids: Vec<Child> = (0..20)
        .map(|i| Command::new("ssh").arg("-F").arg(rent.config()).args(["-o", "BatchMode=yes", "zn-1", &format!("echo session-{i}")]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    for (i, k) in kids.into_iter().enumerate() {
        let o = k.wait_with_output().unwrap();
        assert!(o.status.success(), "session {i}: {}", text(&o.stderr));
        assert_eq!(text(&o.stdout), format!("session-{i}\n"));
    }

    // Refused: a key not in the contract, a password, a changed host key.
    let other = d.join("other_key");
    keygen(&other);
    let o = Command::new("ssh")
        .args(["-p", &port, "-i"])
        .arg(&other)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", rent.known_hosts().display()))
        .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "root@127.0.0.1", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(255));
    assert!(text(&o.stderr).contains("Permission denied"), "{}", text(&o.stderr));
    let o = ssh(&rent, &["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive"], "true");
    assert_eq!(o.status.code(), Some(255));
    assert!(text(&o.stderr).contains("Permission denied"), "{}", text(&o.stderr));
    let forged = d.join("forged_known_hosts");
    let kh = std::fs::read_to_string(rent.known_hosts()).unwrap();
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let other_pub: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    let forged_text: String = kh.lines().map(|l| format!("{} {}\n", l.split_whitespace().next().unwrap(), other_pub.join(" "))).collect();
    std::fs::write(&forged, forged_text).unwrap();
    let o = ssh(&rent, &["-o", &format!("UserKnownHostsFile={}", forged.display())], "true");
    assert_eq!(o.status.code(), Some(255));
    assert!(text(&o.stderr).contains("Host key verification failed") || text(&o.stderr).contains("HOST IDENTIFICATION HAS CHANGED"), "{}", text(&o.stderr));

    // An interactive shell in a pty: stty size follows a resize, Ctrl-C
    // reaches the foreground job, the exit status comes back.
    interactive_shell(&rent);

    // Killing the connection mid-transfer leaves the agent and container healthy.
    let mut up = Command::new("scp").arg("-F").arg(rent.config()).args(["-q", "-l", "8000", "-o", "BatchMode=yes"]).arg(&big).arg("zn-1:/root/partial.bin").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let _ = up.kill();
    let _ = up.wait();
    let o = ssh(&rent, &[], "echo alive");
    assert_eq!(text(&o.stdout), "alive\n", "{}\n{}", text(&o.stderr), agent.log());
    let mut agent = agent;
    assert!(agent.child.try_wait().unwrap().is_none(), "the agent died:\n{}", agent.log());

    // Sessions are charged to the container: a second of cpu burnt over ssh
    // shows in the usage the provider reports (the last report is within an interval).
    let o = ssh(&rent, &[], "i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done; echo burnt");
    assert_eq!(text(&o.stdout), "burnt\n", "{}", text(&o.stderr));
    std::thread::sleep(Duration::from_millis(2500));
    let mut rent = rent;
    assert!(rent.stop().success());
    let mut rest = String::new();
    rent._stdout.read_to_string(&mut rest).unwrap();
    let done: Value = rest.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find(|v| v["event"] == "done").unwrap_or_else(|| panic!("no done line: {rest}"));
    let usage = &done["contracts"][0]["usage"];
    let cpu_ns = usage[0].as_u64().unwrap() + usage[1].as_u64().unwrap();
    assert!(cpu_ns > 500_000_000, "the container's cpu usage is {cpu_ns} ns after the ssh sessions: {done}");
    drop(rent);

    // No key in ~/.ssh: the publisher makes its own, and the written config uses it.
    let bare_home = d.join("bare-home");
    std::fs::create_dir_all(&bare_home).unwrap();
    let rent = Rent::start(&net.rpc, &wallet, &bare_home, &state);
    assert!(state.join("ssh/id_ed25519").exists());
    let o = ssh(&rent, &[], "echo own-key");
    assert_eq!(text(&o.stdout), "own-key\n", "{}\n{}", text(&o.stderr), agent.log());
    drop(rent);
    agent.stop();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// GET / on 127.0.0.1:port, retried until the forward is up.
fn http_get(port: u16, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            if s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").is_ok() {
                let mut page = String::new();
                let _ = s.read_to_string(&mut page);
                if !page.is_empty() {
                    return page;
                }
            }
        }
        if Instant::now() > deadline {
            return String::new();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Drives `ssh -tt zn-1` from a pty of this test's own.
fn interactive_shell(rent: &Rent) {
    let ws = nix::pty::Winsize { ws_row: 30, ws_col: 100, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = nix::pty::openpty(Some(&ws), None).unwrap();
    let (master, slave) = (pty.master, pty.slave);
    let slave_fd = std::os::fd::AsRawFd::as_raw_fd(&slave);
    let mut cmd = Command::new("ssh");
    cmd.arg("-F").arg(rent.config()).args(["-tt", "-o", "BatchMode=yes", "zn-1"]);
    let io = || Stdio::from(slave.try_clone().unwrap());
    cmd.stdin(io()).stdout(io()).stderr(io());
    // SAFETY: setsid and TIOCSCTTY between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            libc::ioctl(slave_fd, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(slave);
    let mut m = std::fs::File::from(master);
    let reader = m.try_clone().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut r = reader;
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 || tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let mut expect = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !seen.contains(want) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(s) => seen.push_str(&s),
                Err(_) => panic!("waited for {want:?}, saw {seen:?}"),
            }
        }
        let at = seen.find(want).unwrap() + want.len();
        seen.drain(..at);
    };
    m.write_all(b"stty size; echo mark-$((6*7))\n").unwrap();
    expect("30 100");
    expect("mark-42");
    // Resize the client's terminal: ssh gets SIGWINCH and sends a window change.
    let ws2 = libc::winsize { ws_row: 40, ws_col: 120, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ on our pty master with a valid winsize.
    unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&m), libc::TIOCSWINSZ, &ws2) };
    std::thread::sleep(Duration::from_millis(500));
    m.write_all(b"stty size; echo mark-$((7*7))\n").unwrap();
    expect("40 120");
    expect("mark-49");
    m.write_all(b"sleep 60\n").unwrap();
    std::thread::sleep(Duration::from_millis(800));
    m.write_all(&[3]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    m.write_all(b"echo after-$?\n").unwrap();
    expect("after-130");
    m.write_all(b"exit 3\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "ssh -tt did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(3));
}
