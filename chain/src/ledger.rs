//! The ledger: account state and every transaction rule, in one place
//! (including the payment-channel rules). A tx either applies completely or
//! leaves the state untouched and returns the [`TxError`] naming why.
//!
//! Money invariant (checked by [`Ledger::audit`]): the sum of balances plus
//! the open channels' remaining deposits plus everything burnt equals the
//! genesis supply plus every block reward minted.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use zennet_protocol::keys::Address;
use zennet_protocol::tx::{ChannelId, Hash32, SignedTx, TxBody};
use zennet_protocol::Amount;

/// Consensus parameters; part of genesis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainParams {
    /// Network id signed into every tx and voucher.
    pub chain_id: String,
    /// Reward for producing a block before the first halving.
    pub initial_block_reward: Amount,
    /// Blocks between reward halvings.
    pub halving_interval: u64,
    /// Producer's share of fees before the first halving, in basis points;
    /// the rest is burnt. The share doubles at every halving (capped at 100%).
    pub producer_fee_share_bps: u64,
    /// Smallest fee a tx may pay.
    pub min_fee: Amount,
    /// Size of the producer schedule (top delegates by votes).
    pub max_producers: usize,
    /// Slot length in milliseconds.
    pub slot_ms: u64,
}

/// One account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Spendable balance.
    pub balance: Amount,
    /// Nonce the next tx from this account must carry.
    pub nonce: u64,
    /// The delegate this account's stake backs.
    pub vote: Option<Address>,
}

pub use zennet_protocol::tx::{Announcement, Channel};

/// Why a tx is invalid. Every variant is a rule; each has a test.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("bad signature: {0}")]
    BadSignature(String),
    #[error("wrong chain id: expected {expected:?}, got {got:?}")]
    WrongChainId { expected: String, got: String },
    #[error("nonce {got} already used (account nonce is {expected}): replay")]
    NonceReplay { expected: u64, got: u64 },
    #[error("nonce {got} is ahead of account nonce {expected}")]
    NonceGap { expected: u64, got: u64 },
    #[error("fee {got} below minimum {min}")]
    FeeTooLow { min: Amount, got: Amount },
    #[error("insufficient balance: need {need}, have {have}")]
    InsufficientBalance { need: Amount, have: Amount },
    #[error("a string field is longer than the maximum")]
    StringTooLong,
    #[error("amount must be positive")]
    ZeroAmount,
    #[error("expiry height {expiry} is not after the current height {height}")]
    ExpiryNotInFuture { expiry: u64, height: u64 },
    #[error("unknown channel {0}")]
    UnknownChannel(ChannelId),
    #[error("channel {0} is already closed or refunded")]
    ChannelSettled(ChannelId),
    #[error("sender is not the channel's {0}")]
    NotChannelParty(&'static str),
    #[error("voucher is invalid: {0}")]
    BadVoucher(String),
    #[error("voucher amount {amount} exceeds the deposit {deposit}")]
    CloseAboveDeposit { amount: Amount, deposit: Amount },
    #[error("channel expired at height {expiry}; now {height}")]
    ChannelExpired { expiry: u64, height: u64 },
    #[error("channel does not expire until height {expiry}; now {height}")]
    ChannelNotExpired { expiry: u64, height: u64 },
    #[error("{0} is not a registered delegate")]
    NotDelegate(Address),
    #[error("{0} is already a delegate")]
    AlreadyDelegate(Address),
    #[error("channel {0} already exists")]
    DuplicateChannel(ChannelId),
    #[error("arithmetic overflow")]
    Overflow,
}

/// What applying a tx produced, for its receipt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxEffect {
    /// The channel a ChannelOpen created.
    pub channel: Option<ChannelId>,
    /// The announcement an Announce created.
    pub announcement: Option<Hash32>,
}

/// Keys changed since the last [`Ledger::take_dirty`], for the store.
#[derive(Debug, Default, Clone)]
pub struct Dirty {
    pub accounts: BTreeSet<Address>,
    pub channels: BTreeSet<ChannelId>,
    pub anns: BTreeSet<Hash32>,
    pub delegates: BTreeSet<Address>,
}

/// Chain-wide totals kept for the money invariant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub genesis_supply: Amount,
    pub minted: Amount,
    pub burnt: Amount,
}

/// The whole state.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub params: ChainParams,
    pub accounts: BTreeMap<Address, Account>,
    pub delegates: BTreeSet<Address>,
    pub channels: BTreeMap<ChannelId, Channel>,
    pub anns: BTreeMap<Hash32, Announcement>,
    pub totals: Totals,
    /// Height of the last applied block (0 = genesis).
    pub height: u64,
    /// Fees collected by txs applied since the last [`Ledger::finish_block`].
    pub pending_fees: Amount,
    pub dirty: Dirty,
}

fn add(a: Amount, b: Amount) -> Result<Amount, TxError> {
    a.checked_add(b).ok_or(TxError::Overflow)
}

impl Ledger {
    /// Genesis: prefunded balances and initial delegates (each funded one votes for itself).
    pub fn genesis(
        params: ChainParams,
        balances: &[(Address, Amount)],
        delegates: &[Address],
    ) -> Ledger {
        let mut l = Ledger {
            params,
            accounts: BTreeMap::new(),
            delegates: BTreeSet::new(),
            channels: BTreeMap::new(),
            anns: BTreeMap::new(),
            totals: Totals::default(),
            height: 0,
            pending_fees: Amount::ZERO,
            dirty: Dirty::default(),
        };
        for (a, amt) in balances {
            let acc = l.accounts.entry(*a).or_default();
            acc.balance = acc
                .balance
                .checked_add(*amt)
                .expect("genesis supply overflows u64");
            l.totals.genesis_supply = l
                .totals
                .genesis_supply
                .checked_add(*amt)
                .expect("genesis supply overflows u64");
            l.dirty.accounts.insert(*a);
        }
        for d in delegates {
            l.delegates.insert(*d);
            l.dirty.delegates.insert(*d);
            // A funded genesis delegate backs itself, so the initial schedule has stake.
            if let Some(acc) = l.accounts.get_mut(d) {
                acc.vote = Some(*d);
            }
        }
        l
    }

    /// The account at `a` (default if never seen).
    pub fn account(&self, a: &Address) -> Account {
        self.accounts.get(a).cloned().unwrap_or_default()
    }

    /// Marks every key of `self` and of `other` changed, so that replacing
    /// `other`'s stored state by `self` rewrites (or removes) all of it.
    pub fn mark_all_dirty(&mut self, other: &Ledger) {
        let d = &mut self.dirty;
        d.accounts
            .extend(self.accounts.keys().chain(other.accounts.keys()).copied());
        d.channels
            .extend(self.channels.keys().chain(other.channels.keys()).copied());
        d.anns
            .extend(self.anns.keys().chain(other.anns.keys()).copied());
        d.delegates
            .extend(self.delegates.iter().chain(other.delegates.iter()).copied());
    }

    /// Takes the set of keys changed since the last call.
    pub fn take_dirty(&mut self) -> Dirty {
        std::mem::take(&mut self.dirty)
    }

    /// Checks what can be checked without state: chain id, string bounds, signature.
    pub fn check_stateless(&self, stx: &SignedTx) -> Result<(), TxError> {
        if stx.tx.chain_id != self.params.chain_id {
            return Err(TxError::WrongChainId {
                expected: self.params.chain_id.clone(),
                got: stx.tx.chain_id.clone(),
            });
        }
        if !stx.tx.body.strings_bounded() {
            return Err(TxError::StringTooLong);
        }
        stx.verify()
            .map_err(|e| TxError::BadSignature(e.to_string()))
    }

    /// Checks fee and funds for a tx at nonce `expected_nonce` (the mempool passes
    /// the next nonce after the sender's pending txs).
    pub fn check_funds(&self, stx: &SignedTx, available: Amount) -> Result<(), TxError> {
        if stx.tx.fee < self.params.min_fee {
            return Err(TxError::FeeTooLow {
                min: self.params.min_fee,
                got: stx.tx.fee,
            });
        }
        let need = add(stx.tx.fee, spend_of(&stx.tx.body))?;
        if need > available {
            return Err(TxError::InsufficientBalance {
                need,
                have: available,
            });
        }
        Ok(())
    }

    /// Applies a tx in the block at `self.height + 1`, verifying its signature
    /// first. Returns the effect and the fee collected.
    pub fn apply_tx(&mut self, stx: &SignedTx) -> Result<(TxEffect, Amount), TxError> {
        self.check_stateless(stx)?;
        self.apply_verified(stx)
    }

    /// Like [`Ledger::apply_tx`] for a tx whose signature and chain id were checked.
    pub fn apply_verified(&mut self, stx: &SignedTx) -> Result<(TxEffect, Amount), TxError> {
        let tx = &stx.tx;
        let sender = tx.sender();
        let acc = self.account(&sender);
        if tx.nonce < acc.nonce {
            return Err(TxError::NonceReplay {
                expected: acc.nonce,
                got: tx.nonce,
            });
        }
        if tx.nonce > acc.nonce {
            return Err(TxError::NonceGap {
                expected: acc.nonce,
                got: tx.nonce,
            });
        }
        self.check_funds(stx, acc.balance)?;
        let height = self.height + 1;
        // Validate the body fully before any mutation.
        let mut effect = TxEffect::default();
        match &tx.body {
            TxBody::Transfer { amount, .. } | TxBody::ChannelTopUp { amount, .. }
                if amount.0 == 0 =>
            {
                return Err(TxError::ZeroAmount)
            }
            TxBody::Transfer { to, amount } => {
                add(self.account(to).balance, *amount)?;
            }
            TxBody::Announce { expiry_height, .. } => {
                if *expiry_height <= height {
                    return Err(TxError::ExpiryNotInFuture {
                        expiry: *expiry_height,
                        height,
                    });
                }
                effect.announcement = Some(stx.hash());
            }
            TxBody::ChannelOpen {
                deposit,
                expiry_height,
                ..
            } => {
                if deposit.0 == 0 {
                    return Err(TxError::ZeroAmount);
                }
                if *expiry_height <= height {
                    return Err(TxError::ExpiryNotInFuture {
                        expiry: *expiry_height,
                        height,
                    });
                }
                let id = Hash32::channel_id(&sender, tx.nonce);
                if self.channels.contains_key(&id) {
                    return Err(TxError::DuplicateChannel(id));
                }
                effect.channel = Some(id);
            }
            TxBody::ChannelTopUp { channel, amount } => {
                let ch = self
                    .channels
                    .get(channel)
                    .ok_or(TxError::UnknownChannel(*channel))?;
                if ch.publisher != sender {
                    return Err(TxError::NotChannelParty("publisher"));
                }
                if ch.settled {
                    return Err(TxError::ChannelSettled(*channel));
                }
                if height > ch.expiry_height {
                    return Err(TxError::ChannelExpired {
                        expiry: ch.expiry_height,
                        height,
                    });
                }
                add(ch.deposit, *amount)?;
            }
            TxBody::ChannelClose { voucher } => {
                let v = &voucher.voucher;
                let ch = self
                    .channels
                    .get(&v.channel)
                    .ok_or(TxError::UnknownChannel(v.channel))?;
                if ch.provider != sender {
                    return Err(TxError::NotChannelParty("provider"));
                }
                if ch.settled {
                    return Err(TxError::ChannelSettled(v.channel));
                }
                if height > ch.expiry_height {
                    return Err(TxError::ChannelExpired {
                        expiry: ch.expiry_height,
                        height,
                    });
                }
                if v.chain_id != self.params.chain_id {
                    return Err(TxError::BadVoucher(format!("chain id {:?}", v.chain_id)));
                }
                if voucher.publisher.address() != ch.publisher {
                    return Err(TxError::BadVoucher(
                        "not signed by the channel's publisher".into(),
                    ));
                }
                voucher
                    .verify()
                    .map_err(|e| TxError::BadVoucher(e.to_string()))?;
                if v.cumulative > ch.deposit {
                    return Err(TxError::CloseAboveDeposit {
                        amount: v.cumulative,
                        deposit: ch.deposit,
                    });
                }
                add(self.account(&sender).balance, v.cumulative)?;
                add(self.account(&ch.publisher).balance, ch.deposit)?;
            }
            TxBody::ChannelRefund { channel } => {
                let ch = self
                    .channels
                    .get(channel)
                    .ok_or(TxError::UnknownChannel(*channel))?;
                if ch.publisher != sender {
                    return Err(TxError::NotChannelParty("publisher"));
                }
                if ch.settled {
                    return Err(TxError::ChannelSettled(*channel));
                }
                if height <= ch.expiry_height {
                    return Err(TxError::ChannelNotExpired {
                        expiry: ch.expiry_height,
                        height,
                    });
                }
                add(acc.balance, ch.deposit)?;
            }
            TxBody::RegisterDelegate => {
                if self.delegates.contains(&sender) {
                    return Err(TxError::AlreadyDelegate(sender));
                }
            }
            TxBody::Vote { delegate } => {
                if !self.delegates.contains(delegate) {
                    return Err(TxError::NotDelegate(*delegate));
                }
            }
        }
        // Everything checked: mutate. None of the below can fail.
        let need = tx
            .fee
            .checked_add(spend_of(&tx.body))
            .expect("checked in check_funds");
        {
            let a = self.accounts.entry(sender).or_default();
            a.balance = a.balance.checked_sub(need).expect("checked in check_funds");
            a.nonce += 1;
        }
        self.dirty.accounts.insert(sender);
        self.pending_fees = self
            .pending_fees
            .checked_add(tx.fee)
            .expect("fees are bounded by supply");
        match &tx.body {
            TxBody::Transfer { to, amount } => self.credit(*to, *amount),
            TxBody::Announce {
                job_id,
                requirements,
                endpoint,
                price_ceiling,
                expiry_height,
            } => {
                let id = effect.announcement.expect("set above");
                self.anns.insert(
                    id,
                    Announcement {
                        id,
                        publisher: sender,
                        job_id: job_id.clone(),
                        requirements: requirements.clone(),
                        endpoint: endpoint.clone(),
                        price_ceiling: *price_ceiling,
                        expiry_height: *expiry_height,
                        height,
                    },
                );
                self.dirty.anns.insert(id);
            }
            TxBody::ChannelOpen {
                provider,
                deposit,
                expiry_height,
            } => {
                let id = effect.channel.expect("set above");
                let ch = Channel {
                    id,
                    publisher: sender,
                    provider: *provider,
                    deposit: *deposit,
                    expiry_height: *expiry_height,
                    settled: false,
                    paid: Amount::ZERO,
                };
                self.channels.insert(id, ch);
                self.dirty.channels.insert(id);
            }
            TxBody::ChannelTopUp { channel, amount } => {
                let ch = self.channels.get_mut(channel).expect("checked");
                ch.deposit = ch.deposit.checked_add(*amount).expect("checked");
                self.dirty.channels.insert(*channel);
            }
            TxBody::ChannelClose { voucher } => {
                let id = voucher.voucher.channel;
                let ch = self.channels.get_mut(&id).expect("checked");
                let pay = voucher.voucher.cumulative;
                let refund = ch.deposit.checked_sub(pay).expect("checked pay <= deposit");
                let publisher = ch.publisher;
                ch.deposit = Amount::ZERO;
                ch.paid = pay;
                ch.settled = true;
                self.dirty.channels.insert(id);
                self.credit(sender, pay);
                self.credit(publisher, refund);
            }
            TxBody::ChannelRefund { channel } => {
                let ch = self.channels.get_mut(channel).expect("checked");
                let refund = ch.deposit;
                ch.deposit = Amount::ZERO;
                ch.settled = true;
                self.dirty.channels.insert(*channel);
                self.credit(sender, refund);
            }
            TxBody::RegisterDelegate => {
                self.delegates.insert(sender);
                self.dirty.delegates.insert(sender);
            }
            TxBody::Vote { delegate } => {
                self.accounts.get_mut(&sender).expect("exists").vote = Some(*delegate);
            }
        }
        Ok((effect, tx.fee))
    }

    fn credit(&mut self, to: Address, amount: Amount) {
        let a = self.accounts.entry(to).or_default();
        a.balance = a
            .balance
            .checked_add(amount)
            .expect("overflow checked before mutation");
        self.dirty.accounts.insert(to);
    }

    /// Number of halvings that happened by `height`.
    pub fn halvings(&self, height: u64) -> u32 {
        let h = height / self.params.halving_interval.max(1);
        h.min(63) as u32
    }

    /// Block reward at `height`.
    pub fn block_reward(&self, height: u64) -> Amount {
        Amount(self.params.initial_block_reward.0 >> self.halvings(height))
    }

    /// Producer's share of fees at `height` in basis points: doubles at each halving.
    pub fn producer_fee_share_bps(&self, height: u64) -> u64 {
        let n = self.halvings(height).min(20);
        self.params
            .producer_fee_share_bps
            .saturating_mul(1u64 << n)
            .min(10_000)
    }

    /// Closes the block at `self.height + 1`: pays the producer its reward
    /// and its share of the fees collected since the last block, burns the rest of the fees, prunes expired
    /// announcements, advances the height. Returns the ids pruned.
    pub fn finish_block(&mut self, producer: Address) -> Vec<Hash32> {
        let height = self.height + 1;
        let fees = std::mem::take(&mut self.pending_fees);
        let share = (fees.0 as u128 * self.producer_fee_share_bps(height) as u128 / 10_000) as u64;
        let burnt = fees.0 - share;
        let reward = self.block_reward(height);
        self.credit(
            producer,
            Amount(share).checked_add(reward).expect("supply fits u64"),
        );
        self.totals.minted = self
            .totals
            .minted
            .checked_add(reward)
            .expect("supply fits u64");
        self.totals.burnt = self
            .totals
            .burnt
            .checked_add(Amount(burnt))
            .expect("supply fits u64");
        let expired: Vec<Hash32> = self
            .anns
            .values()
            .filter(|a| a.expiry_height <= height)
            .map(|a| a.id)
            .collect();
        for id in &expired {
            self.anns.remove(id);
            self.dirty.anns.insert(*id);
        }
        self.height = height;
        expired
    }

    /// Stake-weighted votes per registered delegate (stake = voter's balance).
    pub fn tally(&self) -> BTreeMap<Address, u128> {
        let mut t: BTreeMap<Address, u128> = self.delegates.iter().map(|d| (*d, 0u128)).collect();
        for acc in self.accounts.values() {
            if let Some(d) = acc.vote {
                if let Some(w) = t.get_mut(&d) {
                    *w += acc.balance.0 as u128;
                }
            }
        }
        t
    }

    /// Checks the money invariant; returns the discrepancy if any.
    pub fn audit(&self) -> Result<(), String> {
        let mut held: u128 = self.accounts.values().map(|a| a.balance.0 as u128).sum();
        held += self
            .channels
            .values()
            .map(|c| c.deposit.0 as u128)
            .sum::<u128>();
        held += self.totals.burnt.0 as u128 + self.pending_fees.0 as u128;
        let issued = self.totals.genesis_supply.0 as u128 + self.totals.minted.0 as u128;
        if held == issued {
            Ok(())
        } else {
            Err(format!("held+burnt {held} != issued {issued}"))
        }
    }
}

/// Amount a body moves out of the sender's balance (besides the fee).
pub fn spend_of(body: &TxBody) -> Amount {
    match body {
        TxBody::Transfer { amount, .. } | TxBody::ChannelTopUp { amount, .. } => *amount,
        TxBody::ChannelOpen { deposit, .. } => *deposit,
        _ => Amount::ZERO,
    }
}

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;
