//! `xencoind bench` (hidden): prints one `chain <figure>=<value>` line per
//! figure. No assertions; `make bench-chain` runs it.
//!
//! * `apply_tps`: signed transfers admitted (signature checked) and applied
//!   in blocks, each block committed to redb, per second, on one node.
//! * `verify_per_s`: voucher signature checks per second of one core's CPU time.
//! * `inclusion_ms_p50`, `finality_ms_p50`: submit-to-block and
//!   submit-to-irreversible latency, 4 delegates on loopback, 1 s slots
//!   (`xencoind --dev --validators 4` started as a child process).

use crate::node::{dev_genesis, dev_key, Node, DEV_CHAIN_ID};
use std::time::{Duration, Instant};
use zennet_protocol::keys::SecretKey;
use zennet_protocol::tx::{Hash32, Tx, TxBody};
use zennet_protocol::voucher::Voucher;
use zennet_protocol::Amount;

/// Runs every figure.
pub fn run() -> anyhow::Result<()> {
    println!("chain apply_tps={:.0}", apply_tps()?);
    println!("chain verify_per_s={:.0}", verify_per_s());
    let (inc, fin) = latency()?;
    println!("chain inclusion_ms_p50={inc}");
    println!("chain finality_ms_p50={fin}");
    Ok(())
}

fn apply_tps() -> anyhow::Result<f64> {
    const SENDERS: usize = 2000;
    const PER_SENDER: u64 = 10;
    let dir = tempfile::tempdir()?;
    let keys: Vec<SecretKey> = (0..SENDERS)
        .map(|i| SecretKey::from_seed(&format!("bench-{i}")))
        .collect();
    let mut g = dev_genesis(1, 1000);
    g.balances
        .extend(keys.iter().map(|k| (k.address(), Amount::xen(10))));
    let mut node = Node::open(dir.path(), g, Some(dev_key(0)))?;
    node.max_block_txs = 5000;
    let to = dev_key(5).address();
    let mut txs = Vec::with_capacity(SENDERS * PER_SENDER as usize);
    for n in 0..PER_SENDER {
        for k in &keys {
            let t = Tx {
                chain_id: DEV_CHAIN_ID.into(),
                from: k.public(),
                nonce: n,
                fee: Amount(1000),
                body: TxBody::Transfer {
                    to,
                    amount: Amount(1),
                },
            };
            txs.push(t.sign(k));
        }
    }
    let total = txs.len();
    let start = Instant::now();
    for t in txs {
        let node = &mut node;
        node.mempool.admit(&node.ledger, t)?;
    }
    let mut slot = node.tip.slot;
    while !node.mempool.is_empty() {
        slot += 1;
        node.maybe_produce(slot * 1000)?;
    }
    let secs = start.elapsed().as_secs_f64();
    let sent = node.ledger.account(&to).balance.0 - Amount::xen(1_000_000).0;
    anyhow::ensure!(sent == total as u64, "applied {sent} of {total}");
    Ok(total as f64 / secs)
}

fn verify_per_s() -> f64 {
    let k = SecretKey::from_seed("bench-publisher");
    let vs: Vec<_> = (0..1000u64)
        .map(|i| {
            Voucher {
                chain_id: DEV_CHAIN_ID.into(),
                channel: Hash32([3; 32]),
                cumulative: Amount(i * 7),
                nonce: i,
            }
            .sign(&k)
        })
        .collect();
    // Per core: divide by this thread's CPU time, so other load on the
    // machine does not count against the figure.
    let start = Instant::now();
    let cpu0 = thread_cpu_secs();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        for v in &vs {
            v.verify().expect("bench vouchers verify");
            n += 1;
        }
    }
    n as f64 / (thread_cpu_secs() - cpu0).max(1e-9)
}

fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// A child process killed and reaped on drop.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rpc(
    addr: std::net::SocketAddr,
    method: &str,
    params: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    use std::io::{Read, Write};
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        .to_string();
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let v: serde_json::Value = serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap_or(""))?;
    if let Some(e) = v.get("error") {
        anyhow::bail!("{method}: {e}");
    }
    Ok(v["result"].clone())
}

/// Submit-to-block and submit-to-irreversible latency (p50) on 4 delegates
/// on loopback with 1 s slots: `xencoind --dev --validators 4` as a child.
fn latency() -> anyhow::Result<(u64, u64)> {
    let dir = tempfile::tempdir()?;
    let free = || -> anyhow::Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    };
    // four consecutive ports each for RPC and p2p, from a random base
    let base = 20_000 + (free()? % 20_000);
    let child = std::process::Command::new(std::env::current_exe()?)
        .args(["--dev", "--validators", "4", "--slot-ms", "1000"])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--rpc-addr", &format!("127.0.0.1:{base}")])
        .args(["--p2p-listen", &format!("/ip4/127.0.0.1/tcp/{}", base + 10)])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let _guard = ChildGuard(child);
    let node0: std::net::SocketAddr = format!("127.0.0.1:{base}").parse()?;
    let start = Instant::now();
    while rpc(node0, "xen_head", serde_json::json!([]))
        .map(|h| h["irreversible_height"].as_u64().unwrap_or(0) < 2)
        .unwrap_or(true)
    {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(60),
            "4-delegate devnet did not start finalising"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let k = dev_key(7);
    let (mut inc, mut fin) = (Vec::new(), Vec::new());
    for i in 0..8u64 {
        // spread submissions over the slot
        std::thread::sleep(Duration::from_millis(137 * i % 1000 + 50));
        let t = Tx {
            chain_id: DEV_CHAIN_ID.into(),
            from: k.public(),
            nonce: i,
            fee: Amount(1000),
            body: TxBody::Transfer {
                to: dev_key(8).address(),
                amount: Amount(1),
            },
        }
        .sign(&k);
        let t0 = Instant::now();
        let h = rpc(node0, "xen_submitTx", serde_json::json!([t]))?;
        let mut included = None;
        loop {
            std::thread::sleep(Duration::from_millis(5));
            let v = rpc(node0, "xen_getTx", serde_json::json!([h]))?;
            match v["status"].as_str() {
                Some("included") => {
                    included.get_or_insert(t0.elapsed().as_millis() as u64);
                }
                Some("irreversible") => {
                    included.get_or_insert(t0.elapsed().as_millis() as u64);
                    fin.push(t0.elapsed().as_millis() as u64);
                    break;
                }
                _ => {}
            }
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(30),
                "tx not finalised in 30 s"
            );
        }
        inc.push(included.unwrap_or_default());
    }
    inc.sort();
    fin.sort();
    Ok((inc[inc.len() / 2], fin[fin.len() / 2]))
}
