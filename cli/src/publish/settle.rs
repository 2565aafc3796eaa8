//! The end of a job: every channel must end settled. Providers close their
//! channels with the best voucher when the session ends; a channel still
//! open after [`CLOSE_WAIT`] (its provider vanished) is refunded with
//! `ChannelRefund` once the chain passes its expiry, if that is at most
//! [`REFUND_WAIT_BLOCKS`] away; otherwise the outcome says when.

use super::Job;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use zennet_protocol::tx::Channel;
use zennet_protocol::tx::{Hash32, TxBody};
use zennet_protocol::Amount;

/// How long providers get to close after the stop.
pub const CLOSE_WAIT: Duration = Duration::from_secs(30);
/// Longest wait for an expiry before refunding.
pub const REFUND_WAIT_BLOCKS: u64 = 120;

/// How one channel ended.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// `closed` (by the provider), `refunded`, or `open` (refundable later).
    pub how: &'static str,
    pub paid: Amount,
    pub refunded: Amount,
}

fn view(job: &Job, id: &Hash32) -> Option<Channel> {
    job.chain.channel(id).ok().flatten()
}

/// Waits for the providers' closes, then refunds what is left.
pub async fn settle_all(job: &std::sync::Arc<Job>) -> BTreeMap<Hash32, Outcome> {
    let j = job.clone();
    tokio::task::spawn_blocking(move || settle_blocking(&j)).await.unwrap_or_default()
}

fn settle_blocking(job: &Job) -> BTreeMap<Hash32, Outcome> {
    let contracts = job.snapshot();
    let mut out = BTreeMap::new();
    let deadline = Instant::now() + CLOSE_WAIT;
    // Closed by providers.
    loop {
        for c in &contracts {
            let id = c.contract.terms.id();
            if out.contains_key(&id) {
                continue;
            }
            if let Some(ch) = view(job, &c.channel).filter(|ch| ch.settled) {
                out.insert(id, Outcome { how: "closed", paid: ch.paid, refunded: c.contract.terms.deposit.saturating_sub(ch.paid) });
            }
        }
        // A channel whose provider holds no voucher is never closed; only
        // a refund ends it, so do not wait for it.
        // Nor for one whose provider vanished.
        let vanished = |c: &super::PubContract| c.state == super::State::Failed && !c.reason.as_deref().is_some_and(|r| r.starts_with("dropped") || r.starts_with("provider closed"));
        let waiting = contracts.iter().filter(|c| !out.contains_key(&c.contract.terms.id()) && c.voucher.is_some() && !vanished(c)).count();
        if waiting == 0 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Refunds.
    for c in &contracts {
        let id = c.contract.terms.id();
        if out.contains_key(&id) {
            continue;
        }
        let Some(ch) = view(job, &c.channel) else {
            eprintln!("zennet: channel {} of zn-{} never reached a block", c.channel, c.contract.terms.index + 1);
            continue;
        };
        let expiry = ch.expiry_height;
        let head = job.chain.head().map(|h| h.height).unwrap_or(0);
        if expiry > head + REFUND_WAIT_BLOCKS {
            eprintln!("zennet: channel {} stays open until height {expiry}; refund it then with the same wallet", c.channel);
            out.insert(id, Outcome { how: "open", paid: Amount::ZERO, refunded: Amount::ZERO });
            continue;
        }
        eprintln!("zennet: channel {} of zn-{} was not closed; refunding after height {expiry}", c.channel, c.contract.terms.index + 1);
        while job.chain.head().map(|h| h.height).unwrap_or(0) <= expiry {
            std::thread::sleep(Duration::from_millis(250));
        }
        let r = job.chain.submit(&job.key, job.fee, TxBody::ChannelRefund { channel: c.channel }).and_then(|(h, _)| job.chain.wait_included(&h, Duration::from_secs(30)));
        match r {
            Ok(_) => {
                out.insert(id, Outcome { how: "refunded", paid: Amount::ZERO, refunded: ch.deposit });
            }
            Err(e) => {
                // The provider may have closed in the meantime.
                match view(job, &c.channel).filter(|ch| ch.settled) {
                    Some(ch) => {
                        out.insert(id, Outcome { how: "closed", paid: ch.paid, refunded: c.contract.terms.deposit.saturating_sub(ch.paid) });
                    }
                    None => eprintln!("zennet: refund of channel {} failed: {e:#}", c.channel),
                }
            }
        }
    }
    out
}
