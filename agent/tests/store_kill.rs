//! SIGKILL during redb writes loses nothing committed: a child process
//! commits one voucher after another through the store's contract path and
//! prints each nonce once `put_contract` has returned (the point at which
//! the agent acknowledges a voucher); it is killed at a random moment, and
//! the reopened store holds at least the last nonce printed.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use zennet_agent::store::{ContractRecord, ContractState, Store};
use zennet_protocol::keys::SecretKey;
use zennet_protocol::market::{Contract, Terms, DEFAULT_INTERVAL_MS};
use zennet_protocol::tx::Hash32;
use zennet_protocol::voucher::Voucher;
use zennet_protocol::{Amount, ContainerSpec, Rates};

const CHILD: &str = "ZT_STORE_KILL_CHILD";

fn record(nonce: u64) -> ContractRecord {
    let (p, u) = (SecretKey::from_seed("kill provider"), SecretKey::from_seed("kill publisher"));
    let terms = Terms {
        chain_id: "xen-dev-1".into(),
        job: Hash32([3; 32]),
        index: 0,
        provider: p.public(),
        publisher: u.public(),
        spec: ContainerSpec::small(&u.address().to_string()),
        rates: Rates::zero(),
        interval_ms: DEFAULT_INTERVAL_MS,
        exposure_bound: Amount(10_000),
        deposit: Amount(1_000_000),
        expiry_height: 1000,
        host_key_fingerprint: "SHA256:97tAFgD/+etBGQaDgpmPzQ6d51P5bnnueP7QnAzgyHg".into(),
    };
    let b = terms.signing_bytes();
    let contract = Contract { provider_sig: p.sign(&b), publisher_sig: u.sign(&b), terms };
    let voucher = Voucher { chain_id: "xen-dev-1".into(), channel: Hash32([4; 32]), cumulative: Amount(nonce * 10), nonce }.sign(&u);
    ContractRecord { container: "kill-0".into(), channel: Some(Hash32([4; 32])), state: ContractState::Active, best_voucher: Some(voucher), last_usage: None, settle_tx: None, end_reason: None, contract }
}

/// The child's side: commits forever, printing each committed nonce.
#[test]
fn child_writer() {
    let Some(path) = std::env::var_os(CHILD) else { return };
    let store = Store::open(Path::new(&path)).unwrap();
    let start = store.contracts().unwrap().first().and_then(|r| r.best_voucher.as_ref()).map_or(0, |v| v.voucher.nonce);
    let mut out = std::io::stdout().lock();
    for n in start + 1.. {
        store.put_contract(&record(n)).unwrap();
        writeln!(out, "committed {n}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn sigkill_during_commits_loses_nothing_committed() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = Store::path_in(dir.path());
    let mut acked = 0u64;
    for round in 0..5u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["child_writer", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap());
        // Let it commit for a while that differs from round to round.
        let until = Instant::now() + Duration::from_millis(150 + 70 * round);
        let mut line = String::new();
        while Instant::now() < until {
            line.clear();
            if lines.read_line(&mut line).unwrap() == 0 {
                break;
            }
            if let Some(n) = line.trim().strip_prefix("committed ") {
                acked = acked.max(n.parse().unwrap());
            }
        }
        child.kill().unwrap();
        // Whatever it printed before it died was committed.
        for l in lines.lines().map_while(Result::ok) {
            if let Some(n) = l.trim().strip_prefix("committed ") {
                acked = acked.max(n.parse().unwrap());
            }
        }
        child.wait().unwrap();
        let store = Store::open(&path).unwrap();
        let stored = store.contracts().unwrap()[0].best_voucher.as_ref().unwrap().voucher.nonce;
        assert!(stored >= acked, "round {round}: acknowledged nonce {acked}, the store has {stored}");
        assert!(acked > 0, "the child committed nothing");
    }
}
