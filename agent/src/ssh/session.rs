//! One SSH session channel: its requests (pty, env, then shell, exec or the
//! sftp subsystem) start a process inside the container through the engine;
//! then bytes flow between the channel and the process (stdout and stderr
//! apart without a pty), window changes reach the pty, signals the process,
//! and its exit code ends the channel. `direct-tcpip` connections are made
//! from inside the container's network namespace ([`connect_inside`]).

use super::fdio::FdIo;
use crate::containers::proto::{Builtin, ExecRequest};
use crate::containers::{Engine, ExecIo};
use anyhow::{bail, Context};
use russh::server::Msg;
use russh::{Channel, ChannelMsg};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Most `env` requests honoured per session, and the longest name and value.
const MAX_ENV: usize = 64;
const MAX_ENV_LEN: usize = 4096;

enum Start {
    Shell,
    Exec(String),
    Sftp,
}

/// Serves one session channel until its process exits or the client closes it.
pub async fn run(channel: Channel<Msg>, engine: Arc<Engine>, container: String) {
    let (mut rd, wr) = channel.split();
    let mut pty: Option<(String, u32, u32)> = None;
    let mut env: Vec<String> = Vec::new();
    let start = loop {
        match rd.wait().await {
            None | Some(ChannelMsg::Close) => return,
            Some(ChannelMsg::RequestPty { term, col_width, row_height, .. }) => pty = Some((term, col_width, row_height)),
            Some(ChannelMsg::SetEnv { variable_name: k, variable_value: v, .. }) => {
                let ok = !k.is_empty() && k.len() + v.len() < MAX_ENV_LEN && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') && !v.contains('\0');
                if ok && env.len() < MAX_ENV {
                    env.push(format!("{k}={v}"));
                }
            }
            Some(ChannelMsg::RequestShell { .. }) => break Start::Shell,
            Some(ChannelMsg::Exec { command, .. }) => break Start::Exec(String::from_utf8_lossy(&command).into_owned()),
            Some(ChannelMsg::RequestSubsystem { name, .. }) if name == "sftp" => break Start::Sftp,
            Some(_) => {}
        }
    };
    env.extend(["HOME=/root", "USER=root", "LOGNAME=root", "SHELL=/bin/sh"].map(String::from));
    let (args, builtin) = match &start {
        Start::Shell => (vec!["/bin/sh".to_string(), "-l".to_string()], None),
        Start::Exec(cmd) => (vec!["/bin/sh".to_string(), "-c".to_string(), cmd.clone()], None),
        Start::Sftp => (vec!["sftp-server".to_string()], Some(Builtin::Sftp)),
    };
    let tty = pty.is_some() && builtin.is_none();
    if let (true, Some((term, _, _))) = (tty, &pty) {
        env.push(format!("TERM={term}"));
    }
    let req = ExecRequest { id: container.clone(), args, env, tty, cwd: Some("~".into()), builtin };
    let e2 = engine.clone();
    let handle = match tokio::task::spawn_blocking(move || e2.exec(req)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            let _ = wr.extended_data_bytes(1, format!("zennet: cannot start the session in the container: {e}\r\n").into_bytes()).await;
            let _ = wr.exit_status(255).await;
            let _ = wr.eof().await;
            let _ = wr.close().await;
            return;
        }
        Err(_) => return,
    };
    let pid = handle.pid;
    let exited = wait_exit(engine.clone(), pid);
    tokio::pin!(exited);
    match handle.io {
        ExecIo::Pty(master) => {
            let (Ok(reader), Ok(writer)) = (master.try_clone().and_then(FdIo::new), FdIo::new(master)) else { return kill(pid, libc::SIGKILL) };
            let mut writer = writer;
            if let Some((_, cols, rows)) = pty {
                set_winsize(writer.raw(), cols, rows);
            }
            let out = pump(reader, wr.make_writer());
            let code = loop {
                tokio::select! {
                    code = &mut exited => break code,
                    m = rd.wait() => match m {
                        Some(ChannelMsg::Data { data }) => { let _ = writer.write_all(&data).await; }
                        Some(ChannelMsg::WindowChange { col_width, row_height, .. }) => set_winsize(writer.raw(), col_width, row_height),
                        Some(ChannelMsg::Signal { signal }) => kill(pid, signal_number(&signal)),
                        Some(ChannelMsg::Close) | None => return kill(pid, libc::SIGHUP),
                        _ => {}
                    }
                }
            };
            // What the process wrote last is still in the pty.
            let _ = tokio::time::timeout(Duration::from_millis(500), out).await;
            finish(&wr, code).await;
        }
        ExecIo::Pipes { stdin, stdout, stderr } => {
            let (Ok(stdin), Ok(stdout), Ok(stderr)) = (FdIo::new(stdin), FdIo::new(stdout), FdIo::new(stderr)) else { return kill(pid, libc::SIGKILL) };
            let mut stdin = Some(stdin);
            let out = pump(stdout, wr.make_writer());
            let err = pump(stderr, wr.make_writer_ext(Some(1)));
            let code = loop {
                tokio::select! {
                    code = &mut exited => break code,
                    m = rd.wait() => match m {
                        Some(ChannelMsg::Data { data }) => {
                            if let Some(s) = stdin.as_mut() {
                                if s.write_all(&data).await.is_err() {
                                    stdin = None;
                                }
                            }
                        }
                        Some(ChannelMsg::Eof) => stdin = None,
                        Some(ChannelMsg::Signal { signal }) => kill(pid, signal_number(&signal)),
                        Some(ChannelMsg::Close) | None => return kill(pid, libc::SIGHUP),
                        _ => {}
                    }
                }
            };
            // Output written just before the exit is still in the pipes (a
            // child that keeps them open does not hold the channel forever).
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                let _ = out.await;
                let _ = err.await;
            })
            .await;
            finish(&wr, code).await;
        }
    }
}

/// Copies a process's output to the channel until it ends.
fn pump(mut from: FdIo, mut to: impl tokio::io::AsyncWrite + Unpin + Send + 'static) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from, &mut to).await;
        let _ = to.flush().await;
    })
}

async fn finish(wr: &russh::ChannelWriteHalf<Msg>, code: i32) {
    let _ = wr.exit_status(code.clamp(0, 255) as u32).await;
    let _ = wr.eof().await;
    let _ = wr.close().await;
}

/// The exit code of exec'd `pid` (128+signal when killed).
async fn wait_exit(engine: Arc<Engine>, pid: i32) -> i32 {
    tokio::task::spawn_blocking(move || engine.wait_exec(pid, Duration::from_secs(10 * 365 * 86_400)).unwrap_or(255)).await.unwrap_or(255)
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a pid the engine started for this session.
    unsafe { libc::kill(pid, sig) };
}

fn signal_number(s: &russh::Sig) -> i32 {
    use russh::Sig::*;
    match s {
        ABRT => libc::SIGABRT,
        ALRM => libc::SIGALRM,
        FPE => libc::SIGFPE,
        HUP => libc::SIGHUP,
        ILL => libc::SIGILL,
        INT => libc::SIGINT,
        KILL => libc::SIGKILL,
        PIPE => libc::SIGPIPE,
        QUIT => libc::SIGQUIT,
        SEGV => libc::SIGSEGV,
        TERM => libc::SIGTERM,
        USR1 => libc::SIGUSR1,
        Custom(_) => libc::SIGTERM,
    }
}

fn set_winsize(fd: i32, cols: u32, rows: u32) {
    let ws = libc::winsize { ws_row: rows.min(u16::MAX as u32) as u16, ws_col: cols.min(u16::MAX as u32) as u16, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ on a pty master with a valid winsize.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

/// Connects to `host:port` from inside the container's network namespace
/// (a thread of its own joins it and ends). `host` must be an address or
/// `localhost`: names would need the container's resolver.
pub async fn connect_inside(engine: &Arc<Engine>, container: &str, host: &str, port: u32) -> anyhow::Result<tokio::net::TcpStream> {
    let ip: IpAddr = match host {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h.trim_matches(['[', ']']).parse().with_context(|| format!("{h:?} is not an address (names are not resolved)"))?,
    };
    let port = u16::try_from(port).with_context(|| format!("port {port}"))?;
    let (e2, id) = (engine.clone(), container.to_string());
    let info = tokio::task::spawn_blocking(move || e2.state(&id)).await??;
    let Some(pid) = info.pid else { bail!("container {container} has no init process") };
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("netns-connect".into()).spawn(move || {
        let r = (|| -> anyhow::Result<std::net::TcpStream> {
            let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).context("open the container's network namespace")?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).context("join the container's network namespace")?;
            let s = std::net::TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_secs(10)).with_context(|| format!("connect {ip}:{port}"))?;
            s.set_nonblocking(true)?;
            Ok(s)
        })();
        let _ = tx.send(r);
    })?;
    let s = rx.await.context("the connecting thread died")??;
    let _ = s.as_raw_fd();
    Ok(tokio::net::TcpStream::from_std(s)?)
}
