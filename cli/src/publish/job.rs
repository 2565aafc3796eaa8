//! What the publisher keeps of a job while it runs: every contract's state,
//! last report, vouchers, local ssh port, and the job's terms shared by all
//! of its provider sessions.

use super::record;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;
use tokio::sync::watch;
use zennet_net::rpc::Chain;
use zennet_protocol::keys::{PublicKey, SecretKey};
use zennet_protocol::market::{Contract, UsageReport};
use zennet_protocol::spec::ContainerSpec;
use zennet_protocol::tx::{ChannelId, Hash32};
use zennet_protocol::voucher::SignedVoucher;
use zennet_protocol::Amount;
use std::sync::Arc;

/// Where a contract is, as the publisher sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Opening,
    Ready,
    Ended,
    Failed,
}

/// One contract as the publisher keeps it.
#[derive(Debug, Clone)]
pub struct PubContract {
    pub contract: Contract,
    pub channel: ChannelId,
    pub state: State,
    pub reason: Option<String>,
    pub last_report: Option<UsageReport>,
    pub voucher: Option<SignedVoucher>,
    pub acked: u64,
    /// Cumulative amount of the newest voucher the provider acknowledged.
    pub acked_amount: Amount,
    pub last_seen: Instant,
    /// When the channel was opened: no report may claim more time than has
    /// passed since (plus [`session::CLOCK_SLACK_MS`]).
    pub opened_at: Instant,
    /// Set when the publisher decided to end it (the session closes it).
    pub drop_reason: Option<String>,
    /// The container's SSH host key line (its fingerprint is in the terms).
    pub host_key: String,
    /// The local port tunnelled to the container's SSH server, once listening.
    pub port: Option<u16>,
    /// The `ChannelOpen` tx carrying the deposit, and whether a block holds it
    /// (for the progress line; the provider checks the channel itself).
    pub open_tx: Hash32,
    pub deposit_in_block: bool,
}

impl PubContract {
    pub(crate) fn new(contract: Contract, channel: ChannelId, open_tx: Hash32, host_key: String) -> Self {
        PubContract { contract, channel, state: State::Opening, reason: None, last_report: None, voucher: None, acked: 0, acked_amount: Amount::ZERO, last_seen: Instant::now(), opened_at: Instant::now(), drop_reason: None, host_key, port: None, open_tx, deposit_in_block: false }
    }
    /// Ready, with its local ssh port listening.
    pub fn reachable(&self) -> bool {
        self.state == State::Ready && self.port.is_some()
    }
    /// `zn-1`, `zn-2`, ...: the host name in the ssh config.
    pub fn host_name(&self) -> String {
        format!("zn-{}", self.contract.terms.index + 1)
    }
    pub(crate) fn end(&mut self, why: &str) {
        if matches!(self.state, State::Opening | State::Ready) {
            self.state = State::Ended;
            self.reason = Some(why.into());
        }
    }
    pub(crate) fn fail(&mut self, why: &str) {
        if matches!(self.state, State::Opening | State::Ready) {
            self.state = State::Failed;
            self.reason = Some(why.into());
        }
    }
    pub(crate) fn paid(&self) -> Amount {
        self.voucher.as_ref().map_or(Amount::ZERO, |v| v.voucher.cumulative)
    }
}

/// The job being hired for, shared by every session.
pub struct Job {
    pub key: SecretKey,
    pub chain: Arc<Chain>,
    pub chain_id: String,
    pub ann: Hash32,
    pub spec: ContainerSpec,
    pub ceiling: Amount,
    pub deposit: Amount,
    pub exposure: Amount,
    pub interval_ms: u32,
    pub expiry_height: u64,
    pub fee: Amount,
    pub want: u32,
    pub records: record::Records,
    pub(crate) next_index: Mutex<u32>,
    pub(crate) contracts: Mutex<BTreeMap<Hash32, PubContract>>,
    /// Most the job may pay in vouchers over all its contracts.
    pub budget: Option<Amount>,
    /// Why the job stopped on its own (budget spent), if it did.
    pub(crate) stop_reason: Mutex<Option<String>>,
    /// Providers that opened a session, and those that made an offer.
    pub(crate) sessions: std::sync::atomic::AtomicU32,
    pub(crate) offers: std::sync::atomic::AtomicU32,
    /// What was announced, in words (for errors).
    pub announced: String,
    /// Why the latest sessions ended without a container (newest last).
    pub(crate) refusals: Mutex<Vec<String>>,
    pub stop: watch::Sender<bool>,
}

/// The words of [`Job::shortfall`].
fn shortfall_text(ready: usize, want: u32, announced: &str, sessions: u32, offers: u32, refusals: &[String]) -> String {
    let mut s = format!("{ready} of {want} containers ready; announced {announced}");
    if sessions == 0 {
        s.push_str("; no provider answered (none online on this chain, none with that much free memory, cpu and disk or that image, or the ceiling is below every provider's reserve price)");
    } else {
        s.push_str(&format!("; {sessions} providers answered, {offers} made offers"));
        if !refusals.is_empty() {
            s.push_str(&format!("; what failed: {}", refusals.join("; ")));
        }
    }
    s
}

/// How many session failures a job keeps for its error message.
const REFUSALS_KEPT: usize = 5;

impl Job {
    /// Keeps why a provider's session ended badly (the newest few, no repeats).
    pub(crate) fn note_refusal(&self, why: String) {
        let mut r = self.refusals.lock().unwrap();
        r.retain(|w| *w != why);
        r.push(why);
        let excess = r.len().saturating_sub(REFUSALS_KEPT);
        r.drain(..excess);
    }

    /// Why fewer containers than wanted are ready: what was announced, who
    /// answered, and what went wrong with those who did.
    pub fn shortfall(&self) -> String {
        let (sessions, offers) = (self.sessions.load(std::sync::atomic::Ordering::Relaxed), self.offers.load(std::sync::atomic::Ordering::Relaxed));
        shortfall_text(self.reachable(), self.want, &self.announced, sessions, offers, &self.refusals.lock().unwrap())
    }

    /// Hands out up to `n` container indices not yet given to anyone.
    pub(crate) fn assign(&self, n: u32) -> Vec<u32> {
        let mut next = self.next_index.lock().unwrap();
        let k = n.min(self.want - *next);
        let v = (*next..*next + k).collect();
        *next += k;
        v
    }
    pub(crate) fn add(&self, c: PubContract) {
        self.contracts.lock().unwrap().insert(c.contract.terms.id(), c);
    }
    pub(crate) fn get(&self, id: &Hash32) -> Option<PubContract> {
        self.contracts.lock().unwrap().get(id).cloned()
    }
    pub(crate) fn update(&self, id: &Hash32, f: impl FnOnce(&mut PubContract)) {
        if let Some(c) = self.contracts.lock().unwrap().get_mut(id) {
            f(c)
        }
    }
    pub(crate) fn for_provider(&self, p: &PublicKey, mut f: impl FnMut(&mut PubContract)) {
        self.contracts.lock().unwrap().values_mut().filter(|c| c.contract.terms.provider == *p).for_each(&mut f)
    }
    pub(crate) fn provider_done(&self, p: &PublicKey) -> bool {
        self.contracts.lock().unwrap().values().filter(|c| c.contract.terms.provider == *p).all(|c| matches!(c.state, State::Ended | State::Failed))
    }
    /// A session failed: its contracts failed; indices never contracted go back.
    pub(crate) fn fail_session(&self, indices: &[u32], why: &str) {
        let mut cs = self.contracts.lock().unwrap();
        for c in cs.values_mut().filter(|c| indices.contains(&c.contract.terms.index)) {
            c.fail(why);
        }
    }
    /// Marks every ready contract but the `k` with the most cpu time per
    /// base unit owed (from their last reports) to be closed. Returns how many.
    pub(crate) fn keep_best(&self, k: usize) -> usize {
        let mut cs = self.contracts.lock().unwrap();
        let mut ranked: Vec<(u128, Hash32)> = cs
            .values()
            .filter(|c| c.state == State::Ready)
            .map(|c| {
                let eff = c.last_report.as_ref().map_or(0, |r| {
                    let cpu = r.usage.get(zennet_protocol::UsageComponent::CpuUserNs) as u128 + r.usage.get(zennet_protocol::UsageComponent::CpuSystemNs) as u128;
                    let owed = c.contract.terms.owed(&r.usage).map_or(0, |a| a.0) as u128;
                    cpu * 1_000_000 / owed.max(1)
                });
                (eff, c.contract.terms.id())
            })
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.0.cmp(&b.1.0)));
        let dropped: Vec<Hash32> = ranked.iter().skip(k).map(|x| x.1).collect();
        for id in &dropped {
            if let Some(c) = cs.get_mut(id) {
                c.drop_reason = Some(format!("not among the {k} most efficient"));
            }
        }
        dropped.len()
    }
    /// One row per contract for the providers' record.
    pub(crate) fn record_rows(&self, outcome: &BTreeMap<Hash32, super::settle::Outcome>) -> Vec<(String, record::ProviderRecord)> {
        self.snapshot()
            .iter()
            .map(|c| {
                let dropped = c.reason.as_deref().is_some_and(|r| r.starts_with("dropped"));
                let cpu = c.last_report.as_ref().map_or(0, |r| r.usage.get(zennet_protocol::UsageComponent::CpuUserNs).saturating_add(r.usage.get(zennet_protocol::UsageComponent::CpuSystemNs)));
                let row = record::ProviderRecord {
                    contracts: 1,
                    paid: outcome.get(&c.contract.terms.id()).map_or(0, |o| o.paid.0),
                    failed: (c.state == State::Failed && !dropped) as u64,
                    dropped: dropped as u64,
                    cpu_ns: cpu,
                };
                (c.contract.terms.provider.address().to_string(), row)
            })
            .collect()
    }
    /// Ready contracts whose local ssh port is listening.
    /// Total of the newest voucher of every contract.
    pub(crate) fn paid_total(&self) -> Amount {
        Amount(self.contracts.lock().unwrap().values().map(|c| c.paid().0).sum())
    }
    /// Stops the job on its own (the command's run loop sees `stop`).
    pub(crate) fn request_stop(&self, why: &str) {
        let mut r = self.stop_reason.lock().unwrap();
        if r.is_none() {
            *r = Some(why.to_string());
        }
        let _ = self.stop.send(true);
    }
    pub(crate) fn reachable(&self) -> usize {
        self.contracts.lock().unwrap().values().filter(|c| c.reachable()).count()
    }
    /// Ready contracts, and those of them marked to be closed.
    pub(crate) fn ready_and_closing(&self) -> (usize, usize) {
        let cs = self.contracts.lock().unwrap();
        let ready = cs.values().filter(|c| c.state == State::Ready);
        (ready.clone().count(), ready.filter(|c| c.drop_reason.is_some()).count())
    }
    pub(crate) fn snapshot(&self) -> Vec<PubContract> {
        self.contracts.lock().unwrap().values().cloned().collect()
    }
}


#[cfg(test)]
mod tests {
    use super::shortfall_text;

    #[test]
    fn a_shortfall_says_what_was_announced_and_what_failed() {
        let none = shortfall_text(0, 4, "4 x 64 MiB", 0, 0, &[]);
        assert!(none.starts_with("0 of 4 containers ready; announced 4 x 64 MiB; no provider answered"), "{none}");
        let why = ["provider xen1a declined: below the reserve".to_string(), "provider xen1b: offer costs 9 per hour at full load, above the ceiling 1".to_string()];
        let some = shortfall_text(1, 4, "4 x 64 MiB", 2, 2, &why);
        assert_eq!(some, "1 of 4 containers ready; announced 4 x 64 MiB; 2 providers answered, 2 made offers; what failed: provider xen1a declined: below the reserve; provider xen1b: offer costs 9 per hour at full load, above the ceiling 1");
    }
}
