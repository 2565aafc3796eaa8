//! Shared harness for the tests that drive the real `xencoind`: a daemon
//! handle that is killed and reaped on drop, and a minimal JSON-RPC client.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `xencoind`; killed and reaped on drop.
pub struct Daemon {
    pub child: Child,
    pub rpc: SocketAddr,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` (an `xencoind` command line) and reads the RPC address it
/// prints on its first stdout line.
pub fn spawn(mut cmd: Command) -> Daemon {
    let mut child = cmd
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn xencoind");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut d = Daemon { child, rpc: "127.0.0.1:1".parse().unwrap() };
    let mut line = String::new();
    out.read_line(&mut line).expect("read xencoind stdout");
    d.rpc = line
        .trim()
        .rsplit("http://")
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no rpc address in {line:?}"));
    d
}

/// One JSON-RPC call over HTTP; `Err` carries the node's error message or the transport failure.
pub fn rpc(addr: SocketAddr, method: &str, params: Value) -> Result<Value, String> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
        .map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let json = resp.split("\r\n\r\n").nth(1).ok_or("no body")?;
    let v: Value = serde_json::from_str(json).map_err(|e| format!("{e}: {json}"))?;
    match v.get("error") {
        Some(e) => Err(e["message"].as_str().unwrap_or("").to_string()),
        None => Ok(v["result"].clone()),
    }
}
