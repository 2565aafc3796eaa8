//! One provider's session, the publisher's side of `protocol/README.md`:
//! hello and auth (the provider's hello key must be its noise-authenticated
//! peer key), rounds under the announcement's ceiling, terms for the
//! container indices this provider gets, countersign and `ChannelOpen`,
//! then a voucher for every usage report that passes `check_report`.

use super::{Job, PubContract, State};
use anyhow::{bail, Context};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zennet_net::Session;
use zennet_protocol::market::{check_hellos, check_report, session_transcript, Contract, Hello, Msg, Terms, MARKET_VERSION};
use zennet_protocol::negotiate::{publisher_move, PublisherMove};
use zennet_protocol::tx::{Hash32, TxBody};
use zennet_protocol::voucher::Voucher;
use zennet_protocol::Rates;

const STEP: Duration = Duration::from_secs(15);
/// How far a provider's clock may run ahead of the publisher's (reports
/// count time from the container's start, which follows the channel's opening).
pub const CLOCK_SLACK_MS: u64 = 2_000;

/// Serves one provider until the job stops or the provider goes away.
pub async fn serve(job: Arc<Job>, mut s: Session) -> anyhow::Result<()> {
    let provider = s.peer_key;
    let Msg::Hello(theirs) = s.recv_within(STEP).await? else { bail!("expected the provider's hello") };
    if theirs.key != provider {
        bail!("the provider's hello names a key other than its peer id's");
    }
    let mine = Hello { version: MARKET_VERSION, chain_id: job.chain_id.clone(), job: job.ann, key: job.key.public(), nonce: Hash32::random() };
    s.send(&Msg::Hello(mine.clone())).await?;
    check_hellos(&theirs, &mine)?;
    let transcript = session_transcript(&theirs, &mine);
    let Msg::Auth { sig } = s.recv_within(STEP).await? else { bail!("expected the provider's auth") };
    provider.verify(&transcript, &sig).context("the provider's session signature")?;
    s.send(&Msg::Auth { sig: job.key.sign(&transcript) }).await?;
    job.sessions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);

    // History: a provider once dropped for misreporting is refused; one
    // whose contracts failed lets the others go first.
    let history = job.records.get(&provider.address().to_string())?;
    if history.dropped > 0 {
        let why = format!("this publisher dropped {} of your contracts for usage beyond the limits", history.dropped);
        s.send(&Msg::Reject { reason: why.clone() }).await?;
        bail!("provider {}: {why}", provider.address());
    }

    // Rounds.
    let mut last_counter: Option<Rates> = None;
    let offer = loop {
        let offer = match s.recv_within(STEP).await? {
            Msg::Offer(o) => {
                if o.round == 0 {
                    job.offers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                o
            }
            Msg::Reject { reason } => bail!("provider {} declined: {reason}", provider.address()),
            other => bail!("unexpected message during negotiation: {other:?}"),
        };
        match publisher_move(&offer.rates, &job.spec, job.ceiling, offer.round, last_counter.as_ref()) {
            PublisherMove::Accept => {
                s.send(&Msg::Accept { round: offer.round }).await?;
                break offer;
            }
            PublisherMove::Counter(rates) => {
                s.send(&Msg::Counter { round: offer.round + 1, rates }).await?;
                last_counter = Some(rates);
            }
            PublisherMove::Reject(why) => {
                s.send(&Msg::Reject { reason: why.clone() }).await?;
                bail!("provider {}: {why}", provider.address());
            }
        }
    };
    if history.failed > 0 {
        tokio::time::sleep(super::record::FAILED_WAIT).await;
    }
    let indices = job.assign(offer.count);
    if indices.is_empty() {
        s.send(&Msg::Reject { reason: "the job is full".into() }).await?;
        return Ok(());
    }
    let mut proposed = Vec::new();
    for &index in &indices {
        let terms = Terms {
            chain_id: job.chain_id.clone(),
            job: job.ann,
            index,
            provider,
            publisher: job.key.public(),
            spec: job.spec.clone(),
            rates: offer.rates,
            interval_ms: job.interval_ms,
            exposure_bound: job.exposure,
            deposit: job.deposit,
            expiry_height: job.expiry_height,
            host_key_fingerprint: String::new(),
        };
        s.send(&Msg::Propose(terms.clone())).await?;
        proposed.push(terms);
    }
    let r = run_contracts(&job, &mut s, proposed).await;
    if r.is_err() {
        job.fail_session(&indices, &format!("{:#}", r.as_ref().err().unwrap()));
    }
    r
}

async fn run_contracts(job: &Arc<Job>, s: &mut Session, mut proposed: Vec<Terms>) -> anyhow::Result<()> {
    let provider = s.peer_key;
    let mut stop = job.stop.subscribe();
    let mut check = tokio::time::interval(Duration::from_millis(job.interval_ms as u64 / 2));
    loop {
        tokio::select! {
            msg = s.recv() => match msg.context("provider session")? {
                Msg::Sign { terms, sig, host_key } => {
                    let Some(pos) = proposed.iter().position(|p| p.index == terms.index) else { bail!("sign for terms never proposed") };
                    let mut want = proposed.remove(pos);
                    want.host_key_fingerprint = terms.host_key_fingerprint.clone();
                    if want != terms {
                        bail!("the provider changed more than the host-key fingerprint");
                    }
                    terms.validate(true)?;
                    super::ssh::check_host_key(&host_key, &terms.host_key_fingerprint)?;
                    provider.verify(&terms.signing_bytes(), &sig).context("the provider's contract signature")?;
                    let publisher_sig = job.key.sign(&terms.signing_bytes());
                    let contract = Contract { terms, provider_sig: sig, publisher_sig };
                    contract.verify()?;
                    let id = contract.terms.id();
                    s.send(&Msg::Countersign { contract: id, sig: publisher_sig }).await?;
                    let (chain, key) = (job.chain.clone(), job.key.clone());
                    let body = TxBody::ChannelOpen { provider: provider.address(), deposit: job.deposit, expiry_height: job.expiry_height };
                    let fee = job.fee;
                    let (tx, nonce) = tokio::task::spawn_blocking(move || chain.submit(&key, fee, body)).await?.context("submit ChannelOpen")?;
                    let channel = Hash32::channel_id(&job.key.address(), nonce);
                    job.add(PubContract::new(contract, channel, tx, host_key));
                    s.send(&Msg::ChannelOpened { contract: id, channel, tx }).await?;
                }
                Msg::Ready { contract } => job.update(&contract, |c| {
                    c.state = State::Ready;
                    c.last_seen = Instant::now();
                }),
                Msg::Usage(report) => {
                    let id = report.report.contract;
                    let Some(c) = job.get(&id) else { bail!("usage for unknown contract {id}") };
                    if matches!(c.state, State::Ended | State::Failed) {
                        // Closed by this side: the last voucher sent before the close is final.
                        continue;
                    }
                    let since_open = c.opened_at.elapsed().as_millis() as u64;
                    let checked = if report.report.elapsed_ms > since_open + CLOCK_SLACK_MS {
                        Err(zennet_protocol::market::MarketError::BadReport(format!("claims {} ms since the start, only {since_open} ms since the channel opened", report.report.elapsed_ms)))
                    } else {
                        check_report(&c.contract, c.last_report.as_ref(), &report)
                    };
                    match checked {
                        Ok(owed) => {
                            let mut cumulative = owed.min(job.deposit);
                            // The budget caps what all contracts are paid together.
                            let mut budget_spent = false;
                            if let Some(b) = job.budget {
                                let others = job.paid_total().0.saturating_sub(c.paid().0);
                                let room = b.0.saturating_sub(others);
                                if cumulative.0 >= room {
                                    cumulative = zennet_protocol::Amount(room.max(c.paid().0));
                                    budget_spent = true;
                                }
                            }
                            let v = Voucher { chain_id: job.chain_id.clone(), channel: c.channel, cumulative, nonce: report.report.seq }.sign(&job.key);
                            job.update(&id, |c| {
                                c.last_report = Some(report.report.clone());
                                c.last_seen = Instant::now();
                                c.voucher = Some(v.clone());
                            });
                            s.send(&Msg::Voucher { contract: id, voucher: v }).await?;
                            if budget_spent {
                                eprintln!("zennet: the budget {} is spent: stopping the fleet", job.budget.unwrap_or_default());
                                job.request_stop("the budget is spent");
                            } else if owed >= job.deposit {
                                s.send(&Msg::Close { contract: Some(id), reason: "the deposit is spent".into() }).await?;
                                job.update(&id, |c| c.end("the deposit is spent"));
                            }
                        }
                        Err(e) => {
                            let reason = format!("dropped: {e}");
                            s.send(&Msg::Close { contract: Some(id), reason: reason.clone() }).await?;
                            job.update(&id, |c| c.fail(&reason));
                        }
                    }
                }
                Msg::VoucherAck { contract, nonce } => job.update(&contract, |c| {
                    if let Some(v) = c.voucher.as_ref().filter(|v| v.voucher.nonce == nonce) {
                        c.acked_amount = v.voucher.cumulative;
                    }
                    c.acked = c.acked.max(nonce);
                }),
                Msg::Close { contract: Some(id), reason } => job.update(&id, |c| c.fail(&format!("provider closed: {reason}"))),
                Msg::Close { contract: None, reason } | Msg::Reject { reason } => bail!("provider ended the session: {reason}"),
                other => bail!("unexpected message: {other:?}"),
            },
            _ = stop.changed() => {
                let _ = s.send(&Msg::Close { contract: None, reason: "the publisher stopped".into() }).await;
                job.for_provider(&provider, |c| c.end("stopped"));
                return Ok(());
            }
            _ = check.tick() => {
                // Contracts the publisher decided to end.
                let mut closing = Vec::new();
                job.for_provider(&provider, |c| {
                    if let (Some(why), State::Opening | State::Ready) = (c.drop_reason.clone(), c.state) {
                        c.end(&why);
                        closing.push((c.contract.terms.id(), why));
                    }
                });
                for (id, reason) in closing {
                    s.send(&Msg::Close { contract: Some(id), reason }).await?;
                }
                // A running contract with no report for two intervals (plus
                // slack) has failed.
                let limit = Duration::from_millis(job.interval_ms as u64 * 2 + 1000);
                job.for_provider(&provider, |c| {
                    if c.state == State::Ready && c.last_seen.elapsed() > limit {
                        c.fail("no usage report for two intervals");
                    }
                });
                if job.provider_done(&provider) && proposed.is_empty() {
                    let _ = s.send(&Msg::Close { contract: None, reason: "no contracts left".into() }).await;
                    return Ok(());
                }
            }
        }
    }
}
