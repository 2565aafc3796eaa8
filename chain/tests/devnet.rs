//! Drives the real `xencoind` binary on loopback: a dev node includes and
//! finalises txs, refuses replays, and survives SIGKILL at any point with no
//! irreversible block lost and consistent state. Every process started is
//! killed by a Drop guard, even when a test fails.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use zennet_protocol::keys::SecretKey;
use zennet_protocol::tx::{Tx, TxBody};
use zennet_protocol::Amount;

const SLOT_MS: &str = "200";

mod common;
use common::{rpc, Daemon};

impl Daemon {
    fn start(dir: &Path) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xencoind"));
        cmd.args(["--dev", "--slot-ms", SLOT_MS, "--rpc-addr", "127.0.0.1:0", "--data-dir"]).arg(dir);
        common::spawn(cmd)
    }

    fn kill9(mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        rpc(self.rpc, method, params)
    }
}

fn dev_key(i: usize) -> SecretKey {
    SecretKey::from_seed(&format!("xencoin-dev-{i}"))
}

fn transfer(from: &SecretKey, nonce: u64, to: &SecretKey, amount: u64, chain: &str) -> Value {
    let t = Tx {
        chain_id: chain.into(),
        from: from.public(),
        nonce,
        fee: Amount(1000),
        body: TxBody::Transfer {
            to: to.address(),
            amount: Amount(amount),
        },
    };
    serde_json::to_value(t.sign(from)).unwrap()
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn dev_node_includes_finalises_and_refuses_replays() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    assert_eq!(d.call("xen_chainId", json!([])).unwrap(), "xen-dev-1");
    let (a, b) = (dev_key(1), dev_key(9));
    let before = d
        .call("xen_getAccount", json!([b.address().to_string()]))
        .unwrap()["balance"]
        .as_u64()
        .unwrap();
    let tx = transfer(&a, 0, &b, 12345, "xen-dev-1");
    let hash = d.call("xen_submitTx", json!([tx])).unwrap();
    let err = d.call("xen_submitTx", json!([tx])).unwrap_err();
    assert!(err.contains("already in the mempool"), "{err}");
    let status = wait_for("irreversible", || {
        let v = d.call("xen_getTx", json!([hash])).unwrap();
        (v["status"] == "irreversible").then_some(v)
    });
    assert_eq!(status["receipt"]["fee"], 1000);
    let after = d
        .call("xen_getAccount", json!([b.address().to_string()]))
        .unwrap()["balance"]
        .as_u64()
        .unwrap();
    assert_eq!(after, before + 12345);
    // replay of an included tx
    let err = d.call("xen_submitTx", json!([tx])).unwrap_err();
    assert!(err.contains("replay"), "{err}");
    // a tx signed for another network
    let err = d
        .call("xen_submitTx", json!([transfer(&a, 1, &b, 1, "xen-main")]))
        .unwrap_err();
    assert!(err.contains("wrong chain id"), "{err}");
    // malformed params are refused before use
    assert!(d
        .call("xen_getAccount", json!(["xen1notanaddress"]))
        .is_err());
    // oversized request bodies are refused before parsing
    let huge = "x".repeat(300 * 1024);
    assert!(d.call("xen_getAccount", json!([huge])).is_err());
    let head = d.call("xen_head", json!([])).unwrap();
    assert!(
        head["irreversible_height"].as_u64().unwrap()
            >= status["receipt"]["height"].as_u64().unwrap()
    );
}

#[test]
fn sigkill_at_any_point_loses_no_irreversible_block() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dev_key(2), dev_key(3));
    let mut seen: Vec<(u64, Value)> = Vec::new(); // (irreversible height, its block hash)
    for round in 0..4u64 {
        let d = Daemon::start(dir.path());
        // after a restart, every block seen irreversible is still there, unchanged
        for (h, hash) in &seen {
            let blk = d.call("xen_getBlock", json!([h])).unwrap();
            assert!(!blk.is_null(), "irreversible block {h} lost after SIGKILL");
            let head = d.call("xen_head", json!([])).unwrap();
            assert!(head["height"].as_u64().unwrap() >= *h);
            assert_eq!(
                &blk["header"], &hash["header"],
                "irreversible block {h} changed"
            );
        }
        let mut nonce = d
            .call("xen_getAccount", json!([a.address().to_string()]))
            .unwrap()["nonce"]
            .as_u64()
            .unwrap();
        // keep txs flowing, then kill at an arbitrary moment mid-slot
        let until = Instant::now() + Duration::from_millis(600 + 137 * round);
        while Instant::now() < until {
            let _ = d.call(
                "xen_submitTx",
                json!([transfer(&a, nonce, &b, 1, "xen-dev-1")]),
            );
            nonce += 1;
            std::thread::sleep(Duration::from_millis(7));
        }
        let head = d.call("xen_head", json!([])).unwrap();
        let lib = head["irreversible_height"].as_u64().unwrap();
        let blk = d.call("xen_getBlock", json!([lib])).unwrap();
        seen.push((lib, blk));
        d.kill9();
    }
    // final restart: state loads (the money audit passes) and the chain goes on
    let d = Daemon::start(dir.path());
    let h0 = d.call("xen_head", json!([])).unwrap()["height"]
        .as_u64()
        .unwrap();
    assert!(h0 >= seen.last().unwrap().0);
    wait_for("a new block after restart", || {
        (d.call("xen_head", json!([])).unwrap()["height"]
            .as_u64()
            .unwrap()
            > h0)
            .then_some(())
    });
    let acc = d
        .call("xen_getAccount", json!([a.address().to_string()]))
        .unwrap();
    let nonce_now = acc["nonce"].as_u64().unwrap();
    let bal_b = d
        .call("xen_getAccount", json!([b.address().to_string()]))
        .unwrap()["balance"]
        .as_u64()
        .unwrap();
    // every included transfer moved exactly 1 base unit from a to b
    assert_eq!(bal_b, Amount::xen(1_000_000).0 + nonce_now);
}

/// A minimal WebSocket client (RFC 6455 text frames), enough to test subscriptions.
struct Ws(TcpStream);

impl Ws {
    fn connect(addr: SocketAddr) -> Ws {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
        assert!(
            String::from_utf8_lossy(&head).starts_with("HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        Ws(s)
    }

    fn send(&mut self, v: &Value) {
        let p = v.to_string().into_bytes();
        let mut f = vec![0x81u8];
        if p.len() < 126 {
            f.push(0x80 | p.len() as u8);
        } else {
            f.push(0x80 | 126);
            f.extend_from_slice(&(p.len() as u16).to_be_bytes());
        }
        let mask = [1u8, 2, 3, 4];
        f.extend_from_slice(&mask);
        f.extend(p.iter().enumerate().map(|(i, c)| c ^ mask[i % 4]));
        self.0.write_all(&f).unwrap();
    }

    fn recv(&mut self) -> Value {
        let mut h = [0u8; 2];
        self.0.read_exact(&mut h).unwrap();
        let len = match h[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                self.0.read_exact(&mut l).unwrap();
                u16::from_be_bytes(l) as usize
            }
            127 => {
                let mut l = [0u8; 8];
                self.0.read_exact(&mut l).unwrap();
                u64::from_be_bytes(l) as usize
            }
            n => n as usize,
        };
        let mut p = vec![0u8; len];
        self.0.read_exact(&mut p).unwrap();
        if h[0] & 0x0f != 1 {
            return self.recv(); // skip pings and other control frames
        }
        serde_json::from_slice(&p).unwrap()
    }
}

#[test]
fn websocket_subscriptions_deliver_heads_and_matching_announcements() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let mut ws = Ws::connect(d.rpc);
    ws.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "xen_subscribeNewHeads", "params": []}));
    let id = ws.recv();
    assert!(
        id["result"].is_u64() || id["result"].is_string(),
        "subscription id: {id}"
    );
    let n = ws.recv();
    assert_eq!(n["method"], "xen_newHead");
    assert!(n["params"]["result"]["height"].as_u64().unwrap() >= 1);

    let mut anns = Ws::connect(d.rpc);
    anns.send(&json!({"jsonrpc": "2.0", "id": 2, "method": "xen_subscribeAnnouncements", "params": [{"max_memory_bytes": 1u64 << 30}]}));
    let id = anns.recv();
    assert!(!id["result"].is_null(), "subscription id: {id}");
    let k = dev_key(4);
    for (nonce, memory) in [(0u64, 8u64 << 30), (1, 512 << 20)] {
        let t = Tx {
            chain_id: "xen-dev-1".into(),
            from: k.public(),
            nonce,
            fee: Amount(1000),
            body: TxBody::Announce {
                job_id: format!("job-{nonce}"),
                requirements: zennet_protocol::tx::Requirements {
                    count: 1,
                    memory_bytes: memory,
                    cpu_millicores: 1000,
                    disk_bytes: 1 << 30,
                    image: "debian".into(),
                },
                endpoint: "/ip4/127.0.0.1/tcp/4001".into(),
                price_ceiling: Amount(5),
                expiry_height: 1_000_000,
            },
        };
        d.call("xen_submitTx", json!([t.sign(&k)])).unwrap();
    }
    let a = anns.recv();
    assert_eq!(a["method"], "xen_announcement");
    assert_eq!(
        a["params"]["result"]["job_id"], "job-1",
        "only the announcement that fits 1 GiB"
    );
    let listed = d
        .call(
            "xen_getAnnouncements",
            json!([{"max_memory_bytes": 1u64 << 30}]),
        )
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
}
