//! Malicious peers on the market (root: the agent runs real containers).
//! A hand-driven publisher (this test, speaking the protocol through
//! `zennet-net`) sends a real agent vouchers with a bad signature, for
//! another channel and lowering the amount, then an oversized frame; a
//! hand-driven provider sends `zennet rent` garbage, then usage beyond its
//! limits. Each is refused with the reason, and neither side crashes.
mod common;

use common::{bin, dev_keys, devnet, is_root, remove_cgroup_parent, write_key};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use zennet_net::rpc::Chain;
use zennet_net::{Multiaddr, Node, Session};
use zennet_protocol::keyfile::parse_hex;
use zennet_protocol::keys::SecretKey;
use zennet_protocol::market::{session_transcript, Contract, Hello, Msg, Offer, UsageReport, MARKET_VERSION};
use zennet_protocol::negotiate::default_rates;
use zennet_protocol::spec::{Capacity, ContainerSpec};
use zennet_protocol::tx::{Hash32, Requirements, TxBody};
use zennet_protocol::voucher::Voucher;
use zennet_protocol::{Amount, UsageComponent};

const FEE: Amount = Amount(1000);

/// The agent under test: stopped, and its cgroup parents removed, however the test ends.
struct AgentGuard {
    child: std::process::Child,
    parent: String,
}

impl Drop for AgentGuard {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
        remove_cgroup_parent(&self.parent);
    }
}

/// One test at a time (each runs a chain; timing matters).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The next message that is not a usage report.
async fn next_not_usage(s: &mut Session) -> Msg {
    loop {
        match s.recv_within(Duration::from_secs(10)).await.unwrap() {
            Msg::Usage(_) => continue,
            m => return m,
        }
    }
}

/// Reads until the next usage report; fails on a voucher ack.
async fn no_ack_until_next_report(s: &mut Session) -> UsageReport {
    loop {
        match s.recv_within(Duration::from_secs(10)).await.unwrap() {
            Msg::Usage(r) => return r.report,
            Msg::VoucherAck { nonce, .. } => panic!("the agent acknowledged a bad voucher (nonce {nonce})"),
            m => panic!("unexpected {m:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_refuses_bad_vouchers_and_oversized_frames_and_keeps_the_good_one() {
    if !is_root() {
        eprintln!("skipped: the agent's containers need root");
        return;
    }
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let net = devnet(&dir.path().join("chain"));
    let keys = dev_keys();
    let state = dir.path().join("agent");
    std::fs::create_dir_all(&state).unwrap();
    write_key(&state.join("identity.key"), &keys[2].0);
    let parent = format!("zennet-peers{}", std::process::id());
    let agent = Command::new(bin("zennet-agent"))
        .arg("run")
        .arg("--state-dir")
        .arg(&state)
        .args(["--no-network", "--max-memory-mib", "64", "--cgroup-parent", &parent, "--rpc", &net.rpc])
        .env("ZENNET_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("agent.log")).unwrap())
        .spawn()
        .unwrap();
    let mut agent = AgentGuard { child: agent, parent: parent.clone() };
    let mut line = String::new();
    BufReader::new(agent.child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("market=on"), "{line}");

    let key = parse_hex(&keys[1].0).unwrap();
    let chain = std::sync::Arc::new(Chain::new(&net.rpc));
    let node = Node::start(&key, Some("/ip4/127.0.0.1/tcp/0".parse().unwrap())).await.unwrap();
    let endpoint = node.listen_addrs().await.remove(0);
    let mut incoming = node.incoming().unwrap();
    let (c, k, e) = (chain.clone(), key.clone(), endpoint.to_string());
    let (ann, height) = tokio::task::spawn_blocking(move || {
        let head = c.head().unwrap().height;
        let body = TxBody::Announce {
            job_id: "peers".into(),
            requirements: Requirements { count: 1, memory_bytes: 64 << 20, cpu_millicores: 500, disk_bytes: 64 << 20, image: "busybox".into() },
            endpoint: e,
            price_ceiling: Amount(10 * Amount::BASE_PER_XEN),
            expiry_height: head + 100,
        };
        let (h, _) = c.submit(&k, FEE, body).unwrap();
        c.wait_included(&h, Duration::from_secs(20)).unwrap();
        (h, head)
    })
    .await
    .unwrap();

    // The handshake and one contract, by the book.
    let mut s = tokio::time::timeout(Duration::from_secs(20), incoming.next()).await.unwrap().unwrap();
    let Msg::Hello(theirs) = s.recv().await.unwrap() else { panic!() };
    let mine = Hello { version: MARKET_VERSION, chain_id: theirs.chain_id.clone(), job: ann, key: key.public(), nonce: Hash32([9; 32]) };
    s.send(&Msg::Hello(mine.clone())).await.unwrap();
    let t = session_transcript(&theirs, &mine);
    let Msg::Auth { .. } = s.recv().await.unwrap() else { panic!() };
    s.send(&Msg::Auth { sig: key.sign(&t) }).await.unwrap();
    let Msg::Offer(offer) = s.recv().await.unwrap() else { panic!() };
    s.send(&Msg::Accept { round: offer.round }).await.unwrap();
    let mut spec = ContainerSpec::small(&key.address().to_string());
    spec.cpu_millicores = 500;
    spec.pids_max = 256;
    let terms = zennet_protocol::market::Terms {
        chain_id: theirs.chain_id.clone(),
        job: ann,
        index: 0,
        provider: s.peer_key,
        publisher: key.public(),
        spec,
        rates: offer.rates,
        interval_ms: 500,
        exposure_bound: Amount(Amount::BASE_PER_XEN),
        deposit: Amount(Amount::BASE_PER_XEN),
        expiry_height: height + 100,
        host_key_fingerprint: String::new(),
    };
    s.send(&Msg::Propose(terms)).await.unwrap();
    let Msg::Sign { terms, sig, .. } = s.recv().await.unwrap() else { panic!() };
    let contract = Contract { publisher_sig: key.sign(&terms.signing_bytes()), provider_sig: sig, terms };
    contract.verify().unwrap();
    let id = contract.terms.id();
    s.send(&Msg::Countersign { contract: id, sig: contract.publisher_sig }).await.unwrap();
    let (c, k, provider) = (chain.clone(), key.clone(), contract.terms.provider.address());
    let (tx, nonce) = tokio::task::spawn_blocking(move || c.submit(&k, FEE, TxBody::ChannelOpen { provider, deposit: Amount(Amount::BASE_PER_XEN), expiry_height: height + 100 }).unwrap()).await.unwrap();
    let channel = Hash32::channel_id(&key.address(), nonce);
    s.send(&Msg::ChannelOpened { contract: id, channel, tx }).await.unwrap();
    assert_eq!(next_not_usage(&mut s).await, Msg::Ready { contract: id });
    let Msg::Usage(r1) = s.recv().await.unwrap() else { panic!() };
    let voucher = |cumulative: u64, nonce: u64, ch: Hash32| Voucher { chain_id: theirs.chain_id.clone(), channel: ch, cumulative: Amount(cumulative), nonce };

    // A good voucher is acknowledged.
    let good = contract.terms.owed(&r1.report.usage).unwrap().0 + 5;
    s.send(&Msg::Voucher { contract: id, voucher: voucher(good, 1, channel).sign(&key) }).await.unwrap();
    assert_eq!(next_not_usage(&mut s).await, Msg::VoucherAck { contract: id, nonce: 1 });
    // Signed by another key in the publisher's name.
    let mut forged = voucher(good + 100, 2, channel).sign(&SecretKey::from_seed("mallory"));
    forged.publisher = key.public();
    s.send(&Msg::Voucher { contract: id, voucher: forged }).await.unwrap();
    no_ack_until_next_report(&mut s).await;
    // For another channel.
    s.send(&Msg::Voucher { contract: id, voucher: voucher(good + 100, 3, Hash32([7; 32])).sign(&key) }).await.unwrap();
    no_ack_until_next_report(&mut s).await;
    // Lowering the amount.
    s.send(&Msg::Voucher { contract: id, voucher: voucher(good - 1, 4, channel).sign(&key) }).await.unwrap();
    no_ack_until_next_report(&mut s).await;
    // An oversized frame ends the session; the agent settles with the good voucher.
    let (_r, mut w) = s.split();
    // (The agent may close before the whole frame is written: it refuses on the length.)
    // (and stops reading, so the write may never finish: do not wait for it).
    let big = tokio::spawn(async move { w.send_raw(&vec![b' '; 300 * 1024]).await });
    let c = chain.clone();
    let ch = tokio::task::spawn_blocking(move || {
        for _ in 0..150 {
            if let Some(ch) = c.channel(&channel).unwrap().filter(|ch| ch.settled) {
                return ch;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("the agent did not settle");
    })
    .await
    .unwrap();
    big.abort();
    // The session's end is logged once its contracts are settled.
    let read_log = || std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    for _ in 0..50 {
        if read_log().contains("session for") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = read_log();
    assert_eq!(ch.paid, Amount(good), "{log}");
    for why in ["not verify", "for channel", "below the"] {
        assert!(log.contains(why), "no {why:?} in the agent's log:\n{log}");
    }
    assert!(log.contains("above the 262144-byte limit"), "{log}");
    assert!(agent.child.try_wait().unwrap().is_none(), "the agent died:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_drops_a_provider_that_inflates_usage_and_survives_garbage() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let net = devnet(&dir.path().join("chain"));
    let keys = dev_keys();
    let wallet = dir.path().join("publisher.key");
    write_key(&wallet, &keys[1].0);
    let rent = Command::new(bin("zennet"))
        .args(["rent", "--foreground"])
        .arg("--wallet")
        .arg(&wallet)
        .args(["--rpc", &net.rpc, "--json", "--interval-ms", "500", "-n", "2", "-m", "64M", "--duration", "8", "--expiry-blocks", "14", "--timeout", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let key = parse_hex(&keys[3].0).unwrap();
    let chain = std::sync::Arc::new(Chain::new(&net.rpc));
    let c = chain.clone();
    let ann = tokio::task::spawn_blocking(move || {
        for _ in 0..100 {
            if let Some(a) = c.announcements(serde_json::json!({})).unwrap().pop() {
                return a;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("no announcement");
    })
    .await
    .unwrap();
    let node = Node::start(&key, None).await.unwrap();
    let addr: Multiaddr = ann.endpoint.parse().unwrap();
    // Garbage first: the publisher drops that session and keeps listening.
    let (_r, mut w) = node.connect(&addr).await.unwrap().split();
    w.send_raw(b"\x00\x01 not json").await.unwrap();
    w.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut s = node.connect(&addr).await.unwrap();
    let chain_id = chain.chain_id().unwrap();
    let mine = Hello { version: MARKET_VERSION, chain_id, job: ann.id, key: key.public(), nonce: Hash32([3; 32]) };
    s.send(&Msg::Hello(mine.clone())).await.unwrap();
    let Msg::Hello(theirs) = s.recv().await.unwrap() else { panic!() };
    let t = session_transcript(&mine, &theirs);
    s.send(&Msg::Auth { sig: key.sign(&t) }).await.unwrap();
    let Msg::Auth { .. } = s.recv().await.unwrap() else { panic!() };
    let cap = Capacity { memory_bytes: 1 << 30, cpu_millicores: 2000, pids_max: 4096, disk_bytes: 1 << 30 };
    s.send(&Msg::Offer(Offer { round: 0, count: 2, rates: default_rates(Amount(1000), &cap), calibration: None })).await.unwrap();
    let Msg::Accept { .. } = s.recv().await.unwrap() else { panic!() };
    let mut all = Vec::new();
    for _ in 0..2 {
        let Msg::Propose(mut terms) = s.recv().await.unwrap() else { panic!() };
        terms.host_key_fingerprint = "SHA256:97tAFgD/+etBGQaDgpmPzQ6d51P5bnnueP7QnAzgyHg".into();
        all.push(terms);
    }
    for terms in &all {
        let host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdjhDkSzo1T9YHtBRSd2jQv9Se44yk0exnI5fhaD6Vh".to_string();
        s.send(&Msg::Sign { sig: key.sign(&terms.signing_bytes()), terms: terms.clone(), host_key }).await.unwrap();
    }
    let mut ids = Vec::new();
    for _ in 0..2 {
        let Msg::Countersign { contract, .. } = s.recv().await.unwrap() else { panic!() };
        let Msg::ChannelOpened { .. } = s.recv().await.unwrap() else { panic!() };
        s.send(&Msg::Ready { contract }).await.unwrap();
        ids.push(contract);
    }
    let cpu_limit_ns_per_s = all[0].spec.cpu_millicores as u64 * 1_000_000;
    // Contract A: ten times the cpu its limit allows in one second.
    let mut usage = zennet_protocol::UsageVector::zero();
    usage.set(UsageComponent::CpuUserNs, 10 * cpu_limit_ns_per_s);
    usage.set(UsageComponent::WallNs, 1_000_000_000);
    s.send(&Msg::Usage(UsageReport { contract: ids[0], seq: 1, elapsed_ms: 1000, usage }.sign(&key))).await.unwrap();
    let Msg::Close { contract: Some(c), reason } = s.recv_within(Duration::from_secs(10)).await.unwrap() else { panic!() };
    assert_eq!(c, ids[0]);
    assert!(reason.contains("millicore limit"), "{reason}");
    // Contract B: usage within the limits for an hour, an hour its clock claims.
    let mut usage = zennet_protocol::UsageVector::zero();
    usage.set(UsageComponent::CpuUserNs, 3600 * cpu_limit_ns_per_s);
    usage.set(UsageComponent::WallNs, 3_600_000_000_000);
    s.send(&Msg::Usage(UsageReport { contract: ids[1], seq: 1, elapsed_ms: 3_600_000, usage }.sign(&key))).await.unwrap();
    let Msg::Close { contract: Some(c), reason } = s.recv_within(Duration::from_secs(10)).await.unwrap() else { panic!() };
    assert_eq!(c, ids[1]);
    assert!(reason.contains("since the channel opened"), "{reason}");

    let out = rent.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let done: serde_json::Value = stdout.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).find(|v| v["event"] == "done").unwrap_or_else(|| panic!("{stdout}\n{stderr}"));
    for c in done["contracts"].as_array().unwrap() {
        assert_eq!(c["state"], "failed", "{c}");
        assert!(c["reason"].as_str().unwrap().starts_with("dropped: usage report refused"), "{c}");
        assert_eq!(c["voucher"], 0, "{c}");
        // Its deposit came back after expiry.
        assert_eq!(c["settled_by"], "refunded", "{c}\n{stderr}");
    }
    // The garbage session was named.
    assert!(stderr.contains("malformed message"), "{stderr}");

    // The publisher remembers (publisher.redb next to its wallet): its next
    // job refuses this provider, naming why.
    let mut again = Command::new(bin("zennet"))
        .args(["rent", "--foreground"])
        .arg("--wallet")
        .arg(&wallet)
        .args(["--rpc", &net.rpc, "--json", "-n", "1", "-m", "64M", "--timeout", "6"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (c, first) = (chain.clone(), ann.id);
    let ann2 = tokio::task::spawn_blocking(move || {
        for _ in 0..100 {
            if let Some(a) = c.announcements(serde_json::json!({})).unwrap().into_iter().find(|a| a.id != first) {
                return a;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("no second announcement");
    })
    .await
    .unwrap();
    let mut s = node.connect(&ann2.endpoint.parse().unwrap()).await.unwrap();
    let mine = Hello { job: ann2.id, nonce: Hash32([4; 32]), ..mine };
    s.send(&Msg::Hello(mine.clone())).await.unwrap();
    let Msg::Hello(theirs) = s.recv().await.unwrap() else { panic!() };
    s.send(&Msg::Auth { sig: key.sign(&session_transcript(&mine, &theirs)) }).await.unwrap();
    let Msg::Auth { .. } = s.recv().await.unwrap() else { panic!() };
    let Msg::Reject { reason } = s.recv_within(Duration::from_secs(10)).await.unwrap() else { panic!("not refused") };
    assert!(reason.contains("usage beyond the limits"), "{reason}");
    let _ = again.kill();
    let _ = again.wait();
}
