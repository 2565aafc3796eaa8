//! Metering and payment, the provider's side: every interval a signed
//! cumulative usage report per running contract; each voucher checked
//! (`check_voucher`) and committed to the store before it is acknowledged;
//! unpaid value above the contract's exposure bound freezes the container,
//! a voucher that catches up thaws it, and a container frozen for
//! `grace_intervals` ends. Settlement deletes the container and submits
//! `ChannelClose` with the best stored voucher.

use super::Market;
use crate::store::{ContractRecord, ContractState};
use anyhow::Context;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zennet_net::session::Writer;
use zennet_protocol::market::{check_voucher, Msg, UsageReport};
use zennet_protocol::tx::{Hash32, TxBody};
use zennet_protocol::voucher::SignedVoucher;
use zennet_protocol::Amount;

/// How long settlement waits for its `ChannelClose` to be in a block.
const CLOSE_WAIT: Duration = Duration::from_secs(20);

/// A contract of the current session, with its metering state.
pub struct Live {
    pub rec: ContractRecord,
    /// When its container was created (the reports' clock).
    pub started: Option<Instant>,
    pub seq: u64,
    /// Owed for the usage last reported.
    pub owed: Amount,
    pub frozen_since: Option<Instant>,
}

impl Live {
    pub fn new(rec: ContractRecord) -> Live {
        Live { rec, started: None, seq: 0, owed: Amount::ZERO, frozen_since: None }
    }

    fn unpaid(&self) -> Amount {
        self.owed.saturating_sub(self.rec.paid())
    }
}

/// Commits a contract record (durable when it returns).
pub async fn persist(m: &Arc<Market>, rec: &ContractRecord) -> anyhow::Result<()> {
    let (store, rec) = (m.store.clone(), rec.clone());
    tokio::task::spawn_blocking(move || store.put_contract(&rec)).await?.context("commit the contract record")
}

/// Checks a voucher against the contract and the best one so far; commits
/// it; thaws the container if it is now paid within the bound. Returns the
/// nonce to acknowledge.
pub async fn accept_voucher(m: &Arc<Market>, live: &mut Live, v: SignedVoucher) -> anyhow::Result<u64> {
    let channel = live.rec.channel.context("voucher before the channel was confirmed")?;
    check_voucher(&live.rec.contract, &channel, live.rec.best_voucher.as_ref(), &v)?;
    let nonce = v.voucher.nonce;
    let mut rec = live.rec.clone();
    rec.best_voucher = Some(v);
    persist(m, &rec).await?;
    m.cfg.control.emit(crate::api::Event::Payment { contract: rec.id().to_string(), cumulative: rec.paid().0 });
    live.rec = rec;
    if live.frozen_since.is_some() && live.unpaid() <= live.rec.contract.terms.exposure_bound {
        let (engine, id) = (m.engine.clone(), live.rec.container.clone());
        match tokio::task::spawn_blocking(move || engine.thaw(&id)).await? {
            Ok(()) => {
                live.frozen_since = None;
                tracing::info!("contract {}: paid up, container thawed", live.rec.id());
            }
            Err(e) => tracing::warn!("contract {}: thaw failed: {e}", live.rec.id()),
        }
    }
    Ok(nonce)
}

/// One metering round: reads every running container's usage in one
/// engine call, sends each report, and applies the exposure rule. Returns
/// the contracts to end, with the reason.
pub async fn meter(m: &Arc<Market>, lives: &mut HashMap<Hash32, Live>, tx: &mut Writer) -> anyhow::Result<Vec<(Hash32, String)>> {
    let ids: Vec<String> = lives.values().filter(|l| l.rec.state == ContractState::Active).map(|l| l.rec.container.clone()).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let engine = m.engine.clone();
    let usage = tokio::task::spawn_blocking(move || engine.usage(&ids.iter().map(String::as_str).collect::<Vec<_>>())).await??;
    let usage: HashMap<String, _> = usage.into_iter().collect();
    let mut end = Vec::new();
    for (id, live) in lives.iter_mut().filter(|(_, l)| l.rec.state == ContractState::Active) {
        let Some(u) = usage.get(&live.rec.container) else {
            end.push((*id, "the container is gone".to_string()));
            continue;
        };
        let elapsed_ms = live.started.map_or(0, |s| s.elapsed().as_millis() as u64);
        live.seq += 1;
        let report = UsageReport { contract: *id, seq: live.seq, elapsed_ms, usage: *u }.sign(&m.key);
        tx.send(&Msg::Usage(report)).await?;
        // The publisher has had a whole interval to pay for the previous
        // report; this one's voucher is still in flight.
        let unpaid_prev = live.unpaid();
        live.owed = live.rec.contract.terms.owed(u)?;
        live.rec.last_usage = Some(*u);
        let terms = &live.rec.contract.terms;
        if unpaid_prev > terms.exposure_bound {
            match live.frozen_since {
                None => {
                    let (engine, cid) = (m.engine.clone(), live.rec.container.clone());
                    match tokio::task::spawn_blocking(move || engine.freeze(&cid)).await? {
                        Ok(()) => tracing::warn!("contract {id}: unpaid {unpaid_prev} above the bound {}, container frozen", terms.exposure_bound),
                        Err(e) => tracing::warn!("contract {id}: freeze failed: {e}"),
                    }
                    live.frozen_since = Some(Instant::now());
                }
                Some(t) if t.elapsed() >= Duration::from_millis(terms.interval_ms as u64) * m.cfg.grace_intervals => {
                    end.push((*id, format!("unpaid {unpaid_prev} above the exposure bound {} for {} intervals", terms.exposure_bound, m.cfg.grace_intervals)));
                }
                Some(_) => {}
            }
        }
        // (A frozen container that was paid up is thawed when the voucher arrives.)
    }
    Ok(end)
}

/// Ends a contract: deletes its container, then claims the best voucher
/// with `ChannelClose`. Records every step; a failed claim stays
/// `Settling` and is retried on the next start.
pub async fn settle(m: &Arc<Market>, rec: &mut ContractRecord, reason: &str) {
    let id = rec.id();
    m.ssh.remove(&id);
    let _ = std::fs::remove_file(m.cfg.host_keys_dir.join(&rec.container));
    let (engine, cid) = (m.engine.clone(), rec.container.clone());
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || engine.delete(&cid)).await {
        tracing::debug!("contract {id}: delete container: {e}");
    }
    if rec.state != ContractState::Settling {
        rec.state = ContractState::Settling;
        rec.end_reason = Some(reason.to_string());
        if let Err(e) = persist(m, rec).await {
            tracing::error!("contract {id}: {e:#}");
        }
    }
    let claim = match (&rec.best_voucher, rec.channel) {
        (Some(v), Some(_)) if v.voucher.cumulative > Amount::ZERO => Some(v.clone()),
        _ => None,
    };
    if let Some(v) = claim {
        let (chain, key, fee) = (m.chain.clone(), m.key.clone(), m.cfg.fee);
        let r = tokio::task::spawn_blocking(move || -> anyhow::Result<(Hash32, u64)> {
            // A channel already settled (refunded) or past its expiry cannot
            // be closed; the chain would drop the tx, so do not send it.
            let ch = chain.channel(&v.voucher.channel)?.context("the channel is not on chain")?;
            if ch.settled {
                anyhow::bail!("channel already settled");
            }
            let head = chain.head()?.height;
            if head >= ch.expiry_height {
                anyhow::bail!("channel already settled: expired at height {} (head {head})", ch.expiry_height);
            }
            let (h, _) = chain.submit(&key, fee, TxBody::ChannelClose { voucher: v })?;
            let height = chain.wait_included(&h, CLOSE_WAIT)?;
            Ok((h, height))
        })
        .await
        .expect("settle task");
        match r {
            Ok((h, height)) => {
                rec.settle_tx = Some(h);
                tracing::info!("contract {id}: closed with {} at height {height} ({reason})", rec.paid());
            }
            Err(e) if e.to_string().contains("already settled") => tracing::info!("contract {id}: {e}, nothing to claim"),
            Err(e) => {
                tracing::error!("contract {id}: claiming {} failed, will retry on restart: {e:#}", rec.paid());
                return;
            }
        }
    }
    rec.state = ContractState::Settled;
    if let Err(e) = persist(m, rec).await {
        tracing::error!("contract {id}: {e:#}");
    }
    m.cfg.control.emit(crate::api::Event::Ended { contract: id.to_string(), reason: reason.to_string(), paid: rec.paid().0 });
    // The publisher's record: paid, owed for reported usage but unpaid, and
    // whether it ended for non-payment.
    let owed = rec.last_usage.as_ref().and_then(|u| rec.contract.terms.owed(u).ok()).unwrap_or(Amount::ZERO);
    let (store, publisher) = (m.store.clone(), rec.contract.terms.publisher.address().to_string());
    let (paid, unpaid, dispute) = (rec.paid().0, owed.saturating_sub(rec.paid()).0, reason.starts_with("unpaid"));
    match tokio::task::spawn_blocking(move || store.record_settled(&publisher, paid, unpaid, dispute)).await {
        Ok(Ok(rep)) => tracing::info!("publisher {}: {rep:?}", rec.contract.terms.publisher.address()),
        Ok(Err(e)) => tracing::error!("recording reputation: {e}"),
        Err(e) => tracing::error!("recording reputation: {e}"),
    }
}
