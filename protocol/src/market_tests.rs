//! Tests of the market messages: session binding, contract signatures,
//! report plausibility, voucher rules, frame bounds.

use super::*;
use crate::voucher::Voucher;

/// An ed25519 host key line and its `ssh-keygen -l` fingerprint.
const HOST_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdjhDkSzo1T9YHtBRSd2jQv9Se44yk0exnI5fhaD6Vh";
const HOST_FP: &str = "SHA256:97tAFgD/+etBGQaDgpmPzQ6d51P5bnnueP7QnAzgyHg";
const OTHER_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXb7ktOGoDcBYRAmJ3hq5d6N5FzV3l5KJ+dG0W8tE7c";

fn keys() -> (SecretKey, SecretKey) {
    (SecretKey::from_seed("provider"), SecretKey::from_seed("publisher"))
}

fn hello(k: &SecretKey, n: u8) -> Hello {
    Hello { version: MARKET_VERSION, chain_id: "xen-dev-1".into(), job: Hash32([1; 32]), key: k.public(), nonce: Hash32([n; 32]) }
}

fn terms() -> Terms {
    let (p, u) = keys();
    // cpu: 10^6 pico base units per ns (1000 base units per cpu-second); wall: 1 pico per ns
    let mut rates = Rates::zero();
    rates.pico_per_unit[UsageComponent::CpuUserNs as usize] = 1_000_000;
    rates.pico_per_unit[UsageComponent::CpuSystemNs as usize] = 1_000_000;
    rates.pico_per_unit[UsageComponent::WallNs as usize] = 1;
    Terms {
        chain_id: "xen-dev-1".into(),
        job: Hash32([1; 32]),
        index: 0,
        provider: p.public(),
        publisher: u.public(),
        spec: ContainerSpec::small(&u.address().to_string()),
        rates,
        interval_ms: DEFAULT_INTERVAL_MS,
        exposure_bound: Amount(10_000),
        deposit: Amount(1_000_000),
        expiry_height: 1000,
        host_key_fingerprint: HOST_FP.into(),
    }
}

fn contract() -> Contract {
    let (p, u) = keys();
    let t = terms();
    let b = t.signing_bytes();
    Contract { provider_sig: p.sign(&b), publisher_sig: u.sign(&b), terms: t }
}

fn report(seq: u64, elapsed_ms: u64, cpu_ns: u64, wall_ns: u64) -> SignedUsageReport {
    let mut usage = UsageVector::zero();
    usage.set(UsageComponent::CpuUserNs, cpu_ns);
    usage.set(UsageComponent::WallNs, wall_ns);
    UsageReport { contract: contract().terms.id(), seq, elapsed_ms, usage }.sign(&keys().0)
}

#[test]
fn session_is_bound_to_both_keys() {
    let (p, u) = keys();
    let (hp, hu) = (hello(&p, 1), hello(&u, 2));
    check_hellos(&hp, &hu).unwrap();
    let t = session_transcript(&hp, &hu);
    p.public().verify(&t, &p.sign(&t)).unwrap();
    assert!(u.public().verify(&t, &p.sign(&t)).is_err(), "a signature binds one key");
    // another session (other nonce) does not accept this session's signature
    let t2 = session_transcript(&hp, &hello(&u, 3));
    assert!(p.public().verify(&t2, &p.sign(&t)).is_err());
    let mut bad = hu.clone();
    bad.version = 2;
    assert!(matches!(check_hellos(&hp, &bad), Err(MarketError::Invalid { field: "version", .. })));
    bad = hu.clone();
    bad.chain_id = "xen-main".into();
    assert!(matches!(check_hellos(&hp, &bad), Err(MarketError::Invalid { field: "chain_id", .. })));
    assert!(matches!(check_hellos(&hp, &hello(&u, 1)), Err(MarketError::Invalid { field: "nonce", .. })));
}

#[test]
fn contract_signatures_cover_every_term() {
    let c = contract();
    c.verify().unwrap();
    let mut t = c.clone();
    t.terms.deposit = Amount(2_000_000);
    assert!(matches!(t.verify(), Err(MarketError::BadSignature { who: "provider", .. })));
    let mut t = c.clone();
    t.terms.rates.pico_per_unit[0] = 1;
    assert!(t.verify().is_err());
    let mut t = c.clone();
    t.terms.spec.ssh_authorized_keys.push("ssh-ed25519 AAAA x".into());
    assert!(t.verify().is_err());
    let mut t = c.clone();
    t.publisher_sig = t.provider_sig;
    assert!(matches!(t.verify(), Err(MarketError::BadSignature { who: "publisher", .. })));
    assert_ne!(terms().id(), { let mut x = terms(); x.index = 1; x.id() });
}

#[test]
fn terms_are_bounded_with_the_field_named() {
    let field = |t: Terms, complete| match t.validate(complete) { Err(MarketError::Invalid { field, .. }) => field, other => panic!("{other:?}") };
    let mut t = terms();
    t.interval_ms = 100;
    assert_eq!(field(t, true), "interval_ms");
    let mut t = terms();
    t.exposure_bound = Amount(2_000_000);
    assert_eq!(field(t, true), "exposure_bound");
    let mut t = terms();
    t.deposit = Amount::ZERO;
    assert_eq!(field(t, true), "deposit");
    let mut t = terms();
    t.spec.tenant = "someone-else".into();
    assert_eq!(field(t, true), "spec.tenant");
    let mut t = terms();
    t.spec.env.push("K=".to_string() + &"v".repeat(MAX_SPEC_STR));
    assert_eq!(field(t, true), "spec");
    let mut t = terms();
    t.spec.memory_bytes = 0;
    assert_eq!(field(t, true), "spec");
    let mut t = terms();
    t.host_key_fingerprint = String::new();
    t.validate(false).unwrap();
    assert_eq!(field(t, true), "host_key_fingerprint");
}

#[test]
fn reports_are_checked_for_order_signature_and_limits() {
    let c = contract();
    let r1 = report(1, 2_000, 1_000_000_000, 2_000_000_000);
    // 1 s of cpu = 1000 base units; 2 s of wall = 0.002 base units, rounded down once
    assert_eq!(check_report(&c, None, &r1).unwrap(), Amount(1_000));
    let r2 = report(2, 4_000, 2_900_000_000, 4_000_000_000);
    assert_eq!(check_report(&c, Some(&r1.report), &r2).unwrap(), Amount(2_900));
    let err = |prev: Option<&UsageReport>, r: &SignedUsageReport| check_report(&c, prev, r).unwrap_err().to_string();
    assert!(err(Some(&r1.report), &report(3, 4_000, 2_000_000_000, 4_000_000_000)).contains("sequence"));
    assert!(err(Some(&r1.report), &report(2, 1_000, 2_000_000_000, 4_000_000_000)).contains("time went"));
    assert!(err(Some(&r1.report), &report(2, 4_000, 500_000_000, 4_000_000_000)).contains("decreased"));
    // one core for 2 s cannot burn 3 s of cpu
    assert!(err(Some(&r1.report), &report(2, 4_000, 4_000_000_000, 4_000_000_000)).contains("millicore"));
    assert!(err(None, &report(1, 2_000, 0, 9_000_000_000)).contains("wall"));
    let mut mem = report(1, 2_000, 0, 2_000_000_000);
    mem.report.usage.set(UsageComponent::MemByteSeconds, 3 * (64 << 20));
    let mem = mem.report.sign(&keys().0);
    assert!(err(None, &mem).contains("memory"));
    let forged = report(1, 2_000, 0, 0).report.sign(&keys().1);
    assert!(matches!(check_report(&c, None, &forged), Err(MarketError::BadSignature { who: "provider", .. })));
    let mut other = report(1, 2_000, 0, 0).report;
    other.contract = Hash32([9; 32]);
    assert!(err(None, &other.sign(&keys().0)).contains("another contract"));
}

#[test]
fn vouchers_must_be_the_publishers_newer_and_within_the_deposit() {
    let c = contract();
    let (p, u) = keys();
    let ch = Hash32([5; 32]);
    let v = |cum: u64, nonce: u64| Voucher { chain_id: "xen-dev-1".into(), channel: ch, cumulative: Amount(cum), nonce }.sign(&u);
    let v1 = v(100, 1);
    check_voucher(&c, &ch, None, &v1).unwrap();
    check_voucher(&c, &ch, Some(&v1), &v(150, 2)).unwrap();
    let err = |best: Option<&SignedVoucher>, x: &SignedVoucher| check_voucher(&c, &ch, best, x).unwrap_err().to_string();
    assert!(err(Some(&v1), &v(90, 2)).contains("below"));
    assert!(err(Some(&v1), &v(150, 1)).contains("nonce"));
    assert!(err(None, &v(2_000_000, 1)).contains("deposit"));
    let other_channel = Voucher { chain_id: "xen-dev-1".into(), channel: Hash32([6; 32]), cumulative: Amount(1), nonce: 1 }.sign(&u);
    assert!(err(None, &other_channel).contains("channel"));
    let other_chain = Voucher { chain_id: "xen-main".into(), channel: ch, cumulative: Amount(1), nonce: 1 }.sign(&u);
    assert!(err(None, &other_chain).contains("chain"));
    assert!(err(None, &Voucher { chain_id: "xen-dev-1".into(), channel: ch, cumulative: Amount(1), nonce: 1 }.sign(&p)).contains("other than"));
    let mut forged = v(100, 1);
    forged.voucher.cumulative = Amount(900);
    assert!(matches!(check_voucher(&c, &ch, None, &forged), Err(MarketError::BadSignature { .. })));
}

#[test]
fn frames_round_trip_and_bad_ones_are_refused() {
    let c = contract();
    let msgs = vec![
        Msg::Hello(hello(&keys().0, 1)),
        Msg::Auth { sig: keys().0.sign(b"x") },
        Msg::Counter { round: 1, rates: c.terms.rates },
        Msg::Accept { round: 1 },
        Msg::Propose({ let mut t = terms(); t.host_key_fingerprint.clear(); t }),
        Msg::Sign { terms: c.terms.clone(), sig: c.provider_sig, host_key: HOST_KEY.into() },
        Msg::Countersign { contract: c.terms.id(), sig: c.publisher_sig },
        Msg::ChannelOpened { contract: c.terms.id(), channel: Hash32([5; 32]), tx: Hash32([6; 32]) },
        Msg::Ready { contract: c.terms.id() },
        Msg::Usage(report(1, 2_000, 0, 0)),
        Msg::VoucherAck { contract: c.terms.id(), nonce: 1 },
        Msg::Close { contract: None, reason: "done".into() },
    ];
    for m in msgs {
        assert_eq!(decode(&encode(&m)).unwrap(), m);
    }
    assert!(matches!(decode(&vec![b' '; MAX_FRAME_BYTES + 1]), Err(MarketError::TooLarge(_))));
    assert!(matches!(decode(b"{\"type\":\"launch_missiles\"}"), Err(MarketError::Malformed(_))));
    assert!(matches!(decode(b"not json"), Err(MarketError::Malformed(_))));
    let long = encode(&Msg::Reject { reason: "x".repeat(MAX_REASON + 1) });
    assert!(matches!(decode(&long), Err(MarketError::Invalid { field: "reason", .. })));
    let late = encode(&Msg::Accept { round: MAX_ROUNDS });
    assert!(matches!(decode(&late), Err(MarketError::Invalid { field: "round", .. })));
    let bad_terms = encode(&Msg::Sign { terms: { let mut t = terms(); t.interval_ms = 0; t }, sig: c.provider_sig, host_key: HOST_KEY.into() });
    assert!(matches!(decode(&bad_terms), Err(MarketError::Invalid { field: "interval_ms", .. })));
    // The host key must be the one whose fingerprint the terms carry.
    let other_host = encode(&Msg::Sign { terms: c.terms.clone(), sig: c.provider_sig, host_key: OTHER_KEY.into() });
    assert!(matches!(decode(&other_host), Err(MarketError::Invalid { field: "host_key", .. })));
    let junk_host = encode(&Msg::Sign { terms: c.terms.clone(), sig: c.provider_sig, host_key: "ssh-ed25519 AAAA".into() });
    assert!(matches!(decode(&junk_host), Err(MarketError::Invalid { field: "host_key", .. })));
    // Every authorized key must parse as an accepted OpenSSH key.
    let mut t = terms();
    t.spec.ssh_authorized_keys.push("ssh-ed25519 AAAA x".into());
    assert!(matches!(t.validate(true), Err(MarketError::Invalid { field: "spec.ssh_authorized_keys", .. })));
    let mut t = terms();
    t.spec.ssh_authorized_keys.push(format!("{OTHER_KEY} me@home"));
    t.validate(true).unwrap();
}
