//! One test per tx rule and rejection reason.

use super::*;
use zennet_protocol::keys::SecretKey;
use zennet_protocol::tx::{Requirements, Tx};
use zennet_protocol::voucher::Voucher;

const CHAIN: &str = "xen-test";

fn params() -> ChainParams {
    ChainParams {
        chain_id: CHAIN.into(),
        initial_block_reward: Amount(1000),
        halving_interval: 10,
        producer_fee_share_bps: 2500,
        min_fee: Amount(1),
        max_producers: 21,
        slot_ms: 1000,
    }
}

fn key(n: &str) -> SecretKey {
    SecretKey::from_seed(n)
}

fn setup() -> Ledger {
    Ledger::genesis(
        params(),
        &[
            (key("pub").address(), Amount(1_000_000)),
            (key("prov").address(), Amount(1_000)),
        ],
        &[key("del").address()],
    )
}

fn tx(l: &Ledger, k: &SecretKey, body: TxBody) -> SignedTx {
    let nonce = l.account(&k.address()).nonce;
    Tx {
        chain_id: CHAIN.into(),
        from: k.public(),
        nonce,
        fee: Amount(10),
        body,
    }
    .sign(k)
}

fn open(l: &mut Ledger, deposit: u64, expiry: u64) -> ChannelId {
    let t = tx(
        l,
        &key("pub"),
        TxBody::ChannelOpen {
            provider: key("prov").address(),
            deposit: Amount(deposit),
            expiry_height: expiry,
        },
    );
    l.apply_tx(&t).unwrap().0.channel.unwrap()
}

fn voucher(ch: ChannelId, amount: u64, nonce: u64) -> TxBody {
    let v = Voucher {
        chain_id: CHAIN.into(),
        channel: ch,
        cumulative: Amount(amount),
        nonce,
    }
    .sign(&key("pub"));
    TxBody::ChannelClose { voucher: v }
}

fn advance(l: &mut Ledger, to: u64) {
    while l.height < to {
        l.finish_block(key("del").address());
    }
}

#[test]
fn transfer_moves_money_and_fee() {
    let mut l = setup();
    let t = tx(
        &l,
        &key("pub"),
        TxBody::Transfer {
            to: key("x").address(),
            amount: Amount(500),
        },
    );
    let (_, fee) = l.apply_tx(&t).unwrap();
    assert_eq!(fee, Amount(10));
    assert_eq!(
        l.account(&key("pub").address()).balance,
        Amount(1_000_000 - 510)
    );
    assert_eq!(l.account(&key("x").address()).balance, Amount(500));
    assert_eq!(l.account(&key("pub").address()).nonce, 1);
    l.finish_block(key("del").address());
    l.audit().unwrap();
}

#[test]
fn rejects_bad_signature() {
    let mut l = setup();
    let mut t = tx(
        &l,
        &key("pub"),
        TxBody::Transfer {
            to: key("x").address(),
            amount: Amount(5),
        },
    );
    t.tx.fee = Amount(11); // signature no longer matches
    assert!(matches!(l.apply_tx(&t), Err(TxError::BadSignature(_))));
    // signed by someone else than `from`
    let mut t2 = tx(
        &l,
        &key("pub"),
        TxBody::Transfer {
            to: key("x").address(),
            amount: Amount(5),
        },
    );
    t2.sig = key("other").sign(&t2.tx.signing_bytes());
    assert!(matches!(l.apply_tx(&t2), Err(TxError::BadSignature(_))));
    assert_eq!(l.account(&key("pub").address()).nonce, 0);
}

#[test]
fn rejects_wrong_chain_id() {
    let mut l = setup();
    let k = key("pub");
    let t = Tx {
        chain_id: "xen-main".into(),
        from: k.public(),
        nonce: 0,
        fee: Amount(10),
        body: TxBody::RegisterDelegate,
    }
    .sign(&k);
    assert!(matches!(l.apply_tx(&t), Err(TxError::WrongChainId { .. })));
}

#[test]
fn rejects_nonce_replay_and_gap() {
    let mut l = setup();
    let t = tx(
        &l,
        &key("pub"),
        TxBody::Transfer {
            to: key("x").address(),
            amount: Amount(5),
        },
    );
    l.apply_tx(&t).unwrap();
    assert_eq!(
        l.apply_tx(&t),
        Err(TxError::NonceReplay {
            expected: 1,
            got: 0
        })
    );
    let k = key("pub");
    let ahead = Tx {
        chain_id: CHAIN.into(),
        from: k.public(),
        nonce: 5,
        fee: Amount(10),
        body: TxBody::RegisterDelegate,
    }
    .sign(&k);
    assert_eq!(
        l.apply_tx(&ahead),
        Err(TxError::NonceGap {
            expected: 1,
            got: 5
        })
    );
}

#[test]
fn rejects_overspend_and_low_fee() {
    let mut l = setup();
    let t = tx(
        &l,
        &key("prov"),
        TxBody::Transfer {
            to: key("x").address(),
            amount: Amount(991),
        },
    );
    assert_eq!(
        l.apply_tx(&t),
        Err(TxError::InsufficientBalance {
            need: Amount(1001),
            have: Amount(1000)
        })
    );
    let k = key("prov");
    let cheap = Tx {
        chain_id: CHAIN.into(),
        from: k.public(),
        nonce: 0,
        fee: Amount(0),
        body: TxBody::RegisterDelegate,
    }
    .sign(&k);
    assert!(matches!(l.apply_tx(&cheap), Err(TxError::FeeTooLow { .. })));
    // an unknown account has nothing
    let t = tx(&l, &key("nobody"), TxBody::RegisterDelegate);
    assert!(matches!(
        l.apply_tx(&t),
        Err(TxError::InsufficientBalance { .. })
    ));
}

#[test]
fn rejects_zero_transfer() {
    let mut l = setup();
    let t = tx(
        &l,
        &key("pub"),
        TxBody::Transfer {
            to: key("x").address(),
            amount: Amount(0),
        },
    );
    assert_eq!(l.apply_tx(&t), Err(TxError::ZeroAmount));
}

#[test]
fn channel_close_pays_and_refunds() {
    let mut l = setup();
    let ch = open(&mut l, 1000, 5);
    let pub_before = l.account(&key("pub").address()).balance;
    let t = tx(&l, &key("prov"), voucher(ch, 300, 7));
    l.apply_tx(&t).unwrap();
    assert_eq!(
        l.account(&key("prov").address()).balance,
        Amount(1000 - 10 + 300)
    );
    assert_eq!(
        l.account(&key("pub").address()).balance,
        Amount(pub_before.0 + 700)
    );
    let c = &l.channels[&ch];
    assert!(c.settled);
    assert_eq!(c.paid, Amount(300));
    l.finish_block(key("del").address());
    l.audit().unwrap();
}

#[test]
fn rejects_close_above_deposit() {
    let mut l = setup();
    let ch = open(&mut l, 1000, 5);
    let t = tx(&l, &key("prov"), voucher(ch, 1001, 1));
    assert_eq!(
        l.apply_tx(&t),
        Err(TxError::CloseAboveDeposit {
            amount: Amount(1001),
            deposit: Amount(1000)
        })
    );
}

#[test]
fn topup_raises_the_close_limit() {
    let mut l = setup();
    let ch = open(&mut l, 1000, 5);
    let t = tx(
        &l,
        &key("pub"),
        TxBody::ChannelTopUp {
            channel: ch,
            amount: Amount(500),
        },
    );
    l.apply_tx(&t).unwrap();
    let t = tx(&l, &key("prov"), voucher(ch, 1500, 2));
    l.apply_tx(&t).unwrap();
    // only the publisher may top up
    let ch2 = open(&mut l, 10, 5);
    let t = tx(
        &l,
        &key("prov"),
        TxBody::ChannelTopUp {
            channel: ch2,
            amount: Amount(5),
        },
    );
    assert_eq!(l.apply_tx(&t), Err(TxError::NotChannelParty("publisher")));
}

#[test]
fn rejects_close_after_expiry() {
    let mut l = setup();
    let ch = open(&mut l, 1000, 3);
    advance(&mut l, 3); // next block is 4 > expiry 3
    let t = tx(&l, &key("prov"), voucher(ch, 100, 1));
    assert_eq!(
        l.apply_tx(&t),
        Err(TxError::ChannelExpired {
            expiry: 3,
            height: 4
        })
    );
}

#[test]
fn rejects_refund_before_expiry_then_allows_it() {
    let mut l = setup();
    let ch = open(&mut l, 1000, 3);
    advance(&mut l, 2);
    let t = tx(&l, &key("pub"), TxBody::ChannelRefund { channel: ch });
    assert_eq!(
        l.apply_tx(&t),
        Err(TxError::ChannelNotExpired {
            expiry: 3,
            height: 3
        })
    );
    advance(&mut l, 3);
    let before = l.account(&key("pub").address()).balance;
    l.apply_tx(&t).unwrap();
    assert_eq!(
        l.account(&key("pub").address()).balance,
        Amount(before.0 + 1000 - 10)
    );
    l.audit().unwrap();
}

#[test]
fn rejects_double_close_and_refund_after_close() {
    let mut l = setup();
    let ch = open(&mut l, 1000, 3);
    let t = tx(&l, &key("prov"), voucher(ch, 100, 1));
    l.apply_tx(&t).unwrap();
    let t = tx(&l, &key("prov"), voucher(ch, 200, 2));
    assert_eq!(l.apply_tx(&t), Err(TxError::ChannelSettled(ch)));
    advance(&mut l, 4);
    let t = tx(&l, &key("pub"), TxBody::ChannelRefund { channel: ch });
    assert_eq!(l.apply_tx(&t), Err(TxError::ChannelSettled(ch)));
}

#[test]
fn rejects_close_by_non_provider_and_bad_vouchers() {
    let mut l = setup();
    let ch = open(&mut l, 1000, 9);
    let t = tx(&l, &key("pub"), voucher(ch, 100, 1));
    assert_eq!(l.apply_tx(&t), Err(TxError::NotChannelParty("provider")));
    // voucher signed by someone other than the publisher
    let v = Voucher {
        chain_id: CHAIN.into(),
        channel: ch,
        cumulative: Amount(5),
        nonce: 1,
    }
    .sign(&key("prov"));
    let t = tx(&l, &key("prov"), TxBody::ChannelClose { voucher: v });
    assert!(matches!(l.apply_tx(&t), Err(TxError::BadVoucher(_))));
    // voucher for another network
    let v = Voucher {
        chain_id: "xen-main".into(),
        channel: ch,
        cumulative: Amount(5),
        nonce: 1,
    }
    .sign(&key("pub"));
    let t = tx(&l, &key("prov"), TxBody::ChannelClose { voucher: v });
    assert!(matches!(l.apply_tx(&t), Err(TxError::BadVoucher(_))));
    // tampered amount
    let mut v = Voucher {
        chain_id: CHAIN.into(),
        channel: ch,
        cumulative: Amount(5),
        nonce: 1,
    }
    .sign(&key("pub"));
    v.voucher.cumulative = Amount(900);
    let t = tx(&l, &key("prov"), TxBody::ChannelClose { voucher: v });
    assert!(matches!(l.apply_tx(&t), Err(TxError::BadVoucher(_))));
    // unknown channel
    let t = tx(&l, &key("prov"), voucher(Hash32([9; 32]), 1, 1));
    assert_eq!(
        l.apply_tx(&t),
        Err(TxError::UnknownChannel(Hash32([9; 32])))
    );
}

#[test]
fn rejects_channel_open_with_past_expiry() {
    let mut l = setup();
    let t = tx(
        &l,
        &key("pub"),
        TxBody::ChannelOpen {
            provider: key("prov").address(),
            deposit: Amount(5),
            expiry_height: 1,
        },
    );
    assert_eq!(
        l.apply_tx(&t),
        Err(TxError::ExpiryNotInFuture {
            expiry: 1,
            height: 1
        })
    );
}

#[test]
fn rejects_vote_for_non_delegate_and_tallies_stake() {
    let mut l = setup();
    let t = tx(
        &l,
        &key("pub"),
        TxBody::Vote {
            delegate: key("x").address(),
        },
    );
    assert_eq!(
        l.apply_tx(&t),
        Err(TxError::NotDelegate(key("x").address()))
    );
    let t = tx(
        &l,
        &key("pub"),
        TxBody::Vote {
            delegate: key("del").address(),
        },
    );
    l.apply_tx(&t).unwrap();
    let bal = l.account(&key("pub").address()).balance.0 as u128;
    assert_eq!(l.tally()[&key("del").address()], bal);
    let t = tx(&l, &key("prov"), TxBody::RegisterDelegate);
    l.apply_tx(&t).unwrap();
    let t = tx(&l, &key("prov"), TxBody::RegisterDelegate);
    assert_eq!(
        l.apply_tx(&t),
        Err(TxError::AlreadyDelegate(key("prov").address()))
    );
}

#[test]
fn announcements_are_pruned_at_expiry() {
    let mut l = setup();
    let t = tx(
        &l,
        &key("pub"),
        TxBody::Announce {
            job_id: "job-1".into(),
            requirements: Requirements {
                count: 2,
                memory_bytes: 512 << 20,
                cpu_millicores: 1000,
                disk_bytes: 1 << 30,
                image: "debian".into(),
            },
            endpoint: "/ip4/127.0.0.1/tcp/4001".into(),
            price_ceiling: Amount(100),
            expiry_height: 3,
        },
    );
    let id = l.apply_tx(&t).unwrap().0.announcement.unwrap();
    advance(&mut l, 2);
    assert!(l.anns.contains_key(&id));
    advance(&mut l, 3);
    assert!(!l.anns.contains_key(&id));
    let long = tx(
        &l,
        &key("pub"),
        TxBody::Announce {
            job_id: "x".repeat(300),
            requirements: Requirements::default(),
            endpoint: String::new(),
            price_ceiling: Amount(1),
            expiry_height: 10,
        },
    );
    assert_eq!(l.apply_tx(&long), Err(TxError::StringTooLong));
    let past = tx(
        &l,
        &key("pub"),
        TxBody::Announce {
            job_id: "j".into(),
            requirements: Requirements::default(),
            endpoint: String::new(),
            price_ceiling: Amount(1),
            expiry_height: 2,
        },
    );
    assert_eq!(
        l.apply_tx(&past),
        Err(TxError::ExpiryNotInFuture {
            expiry: 2,
            height: 4
        })
    );
}

fn pay_fees(l: &mut Ledger, total: u64) {
    let k = key("pub");
    let nonce = l.account(&k.address()).nonce;
    let t = Tx {
        chain_id: CHAIN.into(),
        from: k.public(),
        nonce,
        fee: Amount(total),
        body: TxBody::Transfer {
            to: key("x").address(),
            amount: Amount(1),
        },
    }
    .sign(&k);
    l.apply_tx(&t).unwrap();
}

#[test]
fn fees_burn_and_producer_share_doubles_at_halving() {
    let mut l = setup();
    let d = key("del").address();
    pay_fees(&mut l, 1000);
    l.finish_block(d); // height 1: 25% to producer, reward 1000
    assert_eq!(l.account(&d).balance, Amount(1000 + 250));
    assert_eq!(l.totals.burnt, Amount(750));
    advance(&mut l, 9);
    let before = l.account(&d).balance;
    pay_fees(&mut l, 1000);
    l.finish_block(d); // height 10: one halving: 50% share, reward 500
    assert_eq!(l.account(&d).balance, Amount(before.0 + 500 + 500));
    assert_eq!(l.totals.burnt, Amount(750 + 500));
    assert_eq!(l.producer_fee_share_bps(20), 10_000); // 25% * 4
    assert_eq!(l.producer_fee_share_bps(30), 10_000); // capped at 100%
    l.audit().unwrap();
}

#[test]
fn failed_tx_leaves_state_untouched() {
    let mut l = setup();
    let ch = open(&mut l, 1000, 5);
    let snapshot = (l.accounts.clone(), l.channels.clone());
    let t = tx(&l, &key("prov"), voucher(ch, 5000, 1));
    assert!(l.apply_tx(&t).is_err());
    assert_eq!((l.accounts.clone(), l.channels.clone()), snapshot);
}
