//! `xencoind bench` (hidden): prints one `chain <figure>=<value>` line per
//! figure. No assertions; `make bench-chain` runs it.
//!
//! * `apply_tps`: signed transfers admitted (signature checked) and applied
//!   in blocks, each block committed to redb, per second, on one node.
//! * `verify_per_s`: voucher signature checks per second of one core's CPU time.
//! * `inclusion_ms_p50`, `finality_ms_p50`: submit-to-block and
//!   submit-to-irreversible latency with 1 s slots. Measured on a one-delegate
//!   node until the p2p layer exists (then: 4 delegates on loopback).

use crate::daemon::now_ms;
use crate::node::{dev_genesis, dev_key, Node, DEV_CHAIN_ID};
use std::sync::{Arc, Mutex};
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
    eprintln!("note: latency figures are from a one-delegate node (p2p layer not built)");
    Ok(())
}

fn apply_tps() -> anyhow::Result<f64> {
    const SENDERS: usize = 2000;
    const PER_SENDER: u64 = 10;
    let dir = tempfile::tempdir()?;
    let keys: Vec<SecretKey> = (0..SENDERS).map(|i| SecretKey::from_seed(&format!("bench-{i}"))).collect();
    let mut g = dev_genesis(1, 1000);
    g.balances.extend(keys.iter().map(|k| (k.address(), Amount::xen(10))));
    let mut node = Node::open(dir.path(), g, Some(dev_key(0)))?;
    node.max_block_txs = 5000;
    let to = dev_key(5).address();
    let mut txs = Vec::with_capacity(SENDERS * PER_SENDER as usize);
    for n in 0..PER_SENDER {
        for k in &keys {
            let t = Tx { chain_id: DEV_CHAIN_ID.into(), from: k.public(), nonce: n, fee: Amount(1000), body: TxBody::Transfer { to, amount: Amount(1) } };
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
        .map(|i| Voucher { chain_id: DEV_CHAIN_ID.into(), channel: Hash32([3; 32]), cumulative: Amount(i * 7), nonce: i }.sign(&k))
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
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn latency() -> anyhow::Result<(u64, u64)> {
    let dir = tempfile::tempdir()?;
    let slot_ms = 1000;
    let node = Arc::new(Mutex::new(Node::open(dir.path(), dev_genesis(1, slot_ms), Some(dev_key(0)))?));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = {
        let (node, stop) = (node.clone(), stop.clone());
        std::thread::spawn(move || -> anyhow::Result<()> {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let now = now_ms();
                std::thread::sleep(Duration::from_millis(slot_ms - now % slot_ms));
                node.lock().unwrap().maybe_produce(now_ms())?;
            }
            Ok(())
        })
    };
    let k = dev_key(7);
    let (mut inc, mut fin) = (Vec::new(), Vec::new());
    for i in 0..8u64 {
        // spread submissions over the slot
        std::thread::sleep(Duration::from_millis(137 * i % slot_ms + 50));
        let t = Tx { chain_id: DEV_CHAIN_ID.into(), from: k.public(), nonce: i, fee: Amount(1000), body: TxBody::Transfer { to: dev_key(8).address(), amount: Amount(1) } }.sign(&k);
        let t0 = Instant::now();
        let h = {
            let mut n = node.lock().unwrap();
            let n = &mut *n;
            n.mempool.admit(&n.ledger, t)?
        };
        let mut included = None;
        loop {
            std::thread::sleep(Duration::from_millis(2));
            let n = node.lock().unwrap();
            if let Some(r) = n.store.receipt(&h)? {
                included.get_or_insert(t0.elapsed().as_millis() as u64);
                if n.tip.irreversible >= r.height {
                    fin.push(t0.elapsed().as_millis() as u64);
                    break;
                }
            }
            anyhow::ensure!(t0.elapsed() < Duration::from_secs(30), "tx not finalised in 30 s");
        }
        inc.push(included.unwrap_or_default());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    producer.join().map_err(|_| anyhow::anyhow!("producer panicked"))??;
    inc.sort();
    fin.sort();
    Ok((inc[inc.len() / 2], fin[fin.len() / 2]))
}
