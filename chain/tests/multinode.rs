//! Four dev delegates as four `xencoind` processes on loopback (250 ms
//! slots): they produce in turn and agree; a SIGKILLed delegate is skipped
//! while the other three keep finalising, and on restart it catches up with
//! consistent state; a partitioned minority cannot finalise. Every process
//! is killed by a Drop guard, even when a test fails.

use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SLOT_MS: &str = "250";

mod common;
use common::Daemon;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A 4-delegate network plan: data dirs and p2p ports.
struct Net {
    _dir: tempfile::TempDir,
    dirs: Vec<PathBuf>,
    ports: Vec<u16>,
}

impl Net {
    fn new() -> Net {
        let dir = tempfile::tempdir().unwrap();
        let dirs = (0..4).map(|i| dir.path().join(format!("n{i}"))).collect();
        let ports = (0..4).map(|_| free_port()).collect();
        Net {
            _dir: dir,
            dirs,
            ports,
        }
    }

    /// Starts delegate `i`, peering with `peers`.
    fn start(&self, i: usize, peers: &[usize]) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xencoind"));
        cmd.args([
            "--dev",
            "--validators",
            "4",
            "--slot-ms",
            SLOT_MS,
            "--rpc-addr",
            "127.0.0.1:0",
        ])
        .args(["--dev-key", &i.to_string(), "--data-dir"])
        .arg(&self.dirs[i])
        .args([
            "--p2p-listen",
            &format!("/ip4/127.0.0.1/tcp/{}", self.ports[i]),
        ]);
        for p in peers {
            cmd.args(["--peer", &format!("/ip4/127.0.0.1/tcp/{}", self.ports[*p])]);
        }
        start(cmd, &self.dirs[i])
    }

    fn start_all(&self) -> Vec<Daemon> {
        (0..4).map(|i| self.start(i, &others(i))).collect()
    }
}

fn others(i: usize) -> Vec<usize> {
    (0..4).filter(|j| *j != i).collect()
}

fn start(cmd: Command, _dir: &Path) -> Daemon {
    common::spawn(cmd)
}

fn rpc(addr: SocketAddr, method: &str, params: Value) -> Value {
    common::rpc(addr, method, params).unwrap_or_else(|e| panic!("{method}: {e}"))
}

fn head(d: &Daemon) -> (u64, u64) {
    let h = rpc(d.rpc, "xen_head", json!([]));
    (
        h["height"].as_u64().unwrap(),
        h["irreversible_height"].as_u64().unwrap(),
    )
}

fn block(d: &Daemon, h: u64) -> Value {
    rpc(d.rpc, "xen_getBlock", json!([h]))
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn producer(b: &Value) -> String {
    b["header"]["producer"].as_str().unwrap().to_string()
}

#[test]
fn four_delegates_take_turns_agree_skip_a_dead_one_and_catch_it_up() {
    let net = Net::new();
    let mut nodes: Vec<Option<Daemon>> = net.start_all().into_iter().map(Some).collect();
    let d =
        |nodes: &Vec<Option<Daemon>>, i: usize| -> SocketAddr { nodes[i].as_ref().unwrap().rpc };
    wait_for("irreversible height 8 on every node", 40, || {
        nodes.iter().all(|n| head(n.as_ref().unwrap()).1 >= 8)
    });
    // every node has the same irreversible blocks, made by all four in turn
    let mut producers = std::collections::BTreeSet::new();
    for h in 1..=8 {
        let b0 = rpc(d(&nodes, 0), "xen_getBlock", json!([h]));
        for i in 1..4 {
            assert_eq!(
                rpc(d(&nodes, i), "xen_getBlock", json!([h]))["header"],
                b0["header"],
                "nodes 0 and {i} disagree at {h}"
            );
        }
        producers.insert(producer(&b0));
    }
    assert_eq!(producers.len(), 4, "all four delegates produced");
    // a tx submitted to one node is gossiped, included by whoever owns the slot, and final everywhere
    let k = zennet_protocol::keys::SecretKey::from_seed("xencoin-dev-6");
    let to = zennet_protocol::keys::SecretKey::from_seed("xencoin-dev-7").address();
    let tx = zennet_protocol::tx::Tx {
        chain_id: "xen-dev-1".into(),
        from: k.public(),
        nonce: 0,
        fee: zennet_protocol::Amount(1000),
        body: zennet_protocol::tx::TxBody::Transfer {
            to,
            amount: zennet_protocol::Amount(77),
        },
    }
    .sign(&k);
    let hash = rpc(d(&nodes, 1), "xen_submitTx", json!([tx]));
    wait_for("tx irreversible on every node", 40, || {
        (0..4).all(|i| rpc(d(&nodes, i), "xen_getTx", json!([hash]))["status"] == "irreversible")
    });
    // SIGKILL delegate 3 at an arbitrary point; the other three keep finalising
    drop(nodes[3].take()); // Drop kills (SIGKILL) and reaps
    let (_, lib0) = head(nodes[0].as_ref().unwrap());
    wait_for("finality to advance by 6 with 3 of 4", 40, || {
        head(nodes[0].as_ref().unwrap()).1 >= lib0 + 6
    });
    // restart: it catches up with the others and agrees
    nodes[3] = Some(net.start(3, &others(3)));
    let (_, target) = head(nodes[0].as_ref().unwrap());
    wait_for("restarted delegate to catch up", 40, || {
        head(nodes[3].as_ref().unwrap()).0 >= target
    });
    for h in [1, target / 2, target] {
        assert_eq!(
            block(nodes[3].as_ref().unwrap(), h)["header"],
            block(nodes[0].as_ref().unwrap(), h)["header"],
            "disagree at {h}"
        );
    }
    // and it produces again: its key appears above the catch-up point
    let key3 = zennet_protocol::keys::SecretKey::from_seed("xencoin-dev-3")
        .public()
        .to_string();
    let (now, _) = head(nodes[3].as_ref().unwrap());
    wait_for("restarted delegate to produce", 40, || {
        let (h, _) = head(nodes[0].as_ref().unwrap());
        (now + 1..=h).any(|x| producer(&block(nodes[0].as_ref().unwrap(), x)) == key3)
    });
}

#[test]
fn partitioned_minority_cannot_finalise() {
    let net = Net::new();
    // 0,1,2 see each other; 3 sees no one
    let majority: Vec<Daemon> = (0..3)
        .map(|i| {
            net.start(
                i,
                &[0, 1, 2]
                    .into_iter()
                    .filter(|j| *j != i)
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let minority = net.start(3, &[]);
    wait_for("majority finalises", 40, || head(&majority[0]).1 >= 5);
    let (h3, lib3) = head(&minority);
    assert!(h3 >= 1, "the minority node still produces in its slots");
    assert_eq!(lib3, 0, "but cannot finalise alone");
}
