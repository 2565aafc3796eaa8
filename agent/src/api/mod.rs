//! The provider's local control: what a provider (or the console screen)
//! changes and reads while the agent runs, without a shell.
//! - [`Control`] owns the run-time switches the market obeys (accepting,
//!   paused, draining), the asking price and the most capacity sold, and
//!   persists every change in the store (table `settings`) before it
//!   answers; it also carries the market's events (contract started and
//!   ended, payment) to whoever listens.
//! - [`dbus`]: the D-Bus object `/org/zennet/Agent1`, interface
//!   `org.zennet.Agent1` (`agent/dbus/org.zennet.Agent1.xml`), served
//!   peer-to-peer on a private unix socket or on the system bus; mutating
//!   methods only for root and the `zennet` group.
//! - [`client`]: `zennet-agent status|pause|resume|drain|set-price|set-limits|recalibrate|contracts`.
//! - [`console`]: `zennet-agent console`, the appliance's console status screen.
//! - [`metrics`]: the Prometheus text endpoint.
//! - [`recalibrate`]: Recalibrate at run time (a child `zennet-agent calibrate`).
//!
//! The configuration's layers, lowest first: `zennet.toml`, the kernel
//! command line's `zennet.*=` options, then what D-Bus calls changed (kept
//! in the store, so they win over the file until changed again over D-Bus).

pub mod client;
pub mod console;
pub mod dbus;
pub mod metrics;
pub mod recalibrate;

use crate::store::{ContractState, ControlSettings, SellLimits, Store};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use zennet_protocol::spec::Capacity;
use zennet_protocol::Amount;

/// Errors of the control API, each naming what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A mutating call from a caller that is neither root nor in group `zennet`.
    #[error("{method} refused: caller uid {uid} gid {gid} is neither root nor in group zennet")]
    Denied { method: &'static str, uid: u32, gid: u32 },
    /// An argument out of its bounds.
    #[error("{what} = {value}: {reason}")]
    Invalid { what: &'static str, value: String, reason: String },
    /// Recalibration while contracts are open.
    #[error("Recalibrate is refused while contracts are open ({active} signed, active or being negotiated): Drain first, then Recalibrate")]
    Busy { active: u32 },
    /// A run-time calibration could not start or failed.
    #[error("calibration: {0}")]
    Calibration(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The control socket or bus.
    #[error("control socket {path}: {source}")]
    Socket { path: String, source: std::io::Error },
    /// D-Bus itself.
    #[error("D-Bus: {0}")]
    Bus(#[from] zbus::Error),
    /// The metrics endpoint.
    #[error("metrics endpoint {addr}: {source}")]
    Metrics { addr: String, source: std::io::Error },
}

/// Whether the market takes new work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RunState {
    /// Answering announcements.
    Accepting = 0,
    /// Declining announcements; running contracts go on.
    Paused = 1,
    /// Declining announcements until every running contract has ended and settled.
    Draining = 2,
}

impl RunState {
    fn from_u8(v: u8) -> RunState {
        match v {
            1 => RunState::Paused,
            2 => RunState::Draining,
            _ => RunState::Accepting,
        }
    }
}

/// Something the market did, for signals and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A contract's container is running (contract id, publisher address).
    Started { contract: String, publisher: String },
    /// A contract ended and was settled (id, reason, what its best voucher paid).
    Ended { contract: String, reason: String, paid: u64 },
    /// A voucher was committed (contract id, its cumulative amount).
    Payment { contract: String, cumulative: u64 },
}

/// Events kept for a slow listener before it starts losing them.
const EVENT_QUEUE: usize = 256;
/// Most contracts ListContracts returns (those not settled first).
pub const MAX_LISTED: usize = 1000;
/// The highest price accepted by SetPrice, base units per machine-second (10^4 XEN).
pub const MAX_PRICE_PER_SECOND: u64 = 10_000 * Amount::BASE_PER_XEN;

/// The run-time control of the market: switches, price, limits, events.
/// Shared by the market (which obeys it), the D-Bus object and the metrics.
pub struct Control {
    state: AtomicU8,
    settings: Mutex<ControlSettings>,
    events: broadcast::Sender<Event>,
    /// Where settings are persisted (none: kept in memory only).
    store: Option<Arc<Store>>,
    /// The engine's capacity: the most any limit may be.
    capacity: Capacity,
    /// The provider's address.
    pub address: String,
    /// The machine price below SetPrice: `market.price_per_second` of the
    /// file, or the kernel command line, or `--price-per-second`.
    base_price: u64,
    /// How Recalibrate calibrates (none: it is refused).
    recalibration: Option<recalibrate::Recalibration>,
    /// A run-time calibration is running.
    calibrating: AtomicBool,
    /// Containers the market holds for sessions (negotiating or running).
    reserved: AtomicU32,
    /// The calibration new offers use (none: uncalibrated default rates).
    in_force: Mutex<Option<recalibrate::InForce>>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").field("state", &self.state()).field("address", &self.address).finish()
    }
}

impl Default for Control {
    /// Accepting, no store, no limits of its own.
    fn default() -> Self {
        Control::new(None, Capacity { memory_bytes: u64::MAX, cpu_millicores: u32::MAX, pids_max: u32::MAX, disk_bytes: u64::MAX }, String::new(), ControlSettings::default())
    }
}

impl Control {
    /// Control over a market with `capacity`, starting from `settings` (as
    /// saved in `store`: a saved Pause or Drain starts paused).
    pub fn new(store: Option<Arc<Store>>, capacity: Capacity, address: String, settings: ControlSettings) -> Control {
        let state = if settings.paused { RunState::Paused } else { RunState::Accepting };
        Control { state: AtomicU8::new(state as u8), settings: Mutex::new(settings), events: broadcast::channel(EVENT_QUEUE).0, store, capacity, address, base_price: 1_000, recalibration: None, calibrating: AtomicBool::new(false), reserved: AtomicU32::new(0), in_force: Mutex::new(None) }
    }

    /// Control loaded from the store's saved settings and latest calibration.
    pub fn load(store: Arc<Store>, capacity: Capacity, address: String) -> Result<Control, ApiError> {
        let s = store.control_settings()?;
        let rec = store.latest_calibration().unwrap_or_else(|e| {
            tracing::warn!("latest calibration unreadable, serving uncalibrated: {e}");
            None
        });
        let c = Control::new(Some(store), capacity, address, s);
        *c.in_force.lock().unwrap() = rec.as_ref().map(recalibrate::InForce::of);
        Ok(c)
    }

    /// The machine price used until SetPrice sets one (the configured price).
    pub fn with_base_price(mut self, price_per_second: u64) -> Control {
        self.base_price = price_per_second;
        self
    }

    /// Lets Recalibrate calibrate at run time, this way.
    pub fn with_recalibration(mut self, how: recalibrate::Recalibration) -> Control {
        self.recalibration = Some(how);
        self
    }

    /// The store settings are kept in, if any.
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }

    pub fn state(&self) -> RunState {
        RunState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Why a new announcement is declined, if it is.
    pub fn declines(&self) -> Option<&'static str> {
        if self.calibrating() {
            return Some("the provider is calibrating");
        }
        match self.state() {
            RunState::Accepting => None,
            RunState::Paused => Some("the provider paused the market"),
            RunState::Draining => Some("the provider is draining"),
        }
    }

    /// The asking price set by SetPrice, if any.
    pub fn price_per_second(&self) -> Option<u64> {
        self.settings.lock().unwrap().price_per_second
    }

    /// The asking price in force: SetPrice's, else the configured one.
    pub fn effective_price(&self) -> u64 {
        self.price_per_second().unwrap_or(self.base_price)
    }

    /// A run-time calibration is running.
    pub fn calibrating(&self) -> bool {
        self.calibrating.load(Ordering::SeqCst)
    }

    /// The market holds `n` more containers for a session. Then it checks
    /// [`Control::declines`] again: with Recalibrate's own order (flag
    /// first, then this count; both SeqCst) one of the two always sees the other.
    pub fn reserve(&self, n: u32) {
        self.reserved.fetch_add(n, Ordering::SeqCst);
    }

    /// The market released `n` containers.
    pub fn unreserve(&self, n: u32) {
        let _ = self.reserved.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| Some(r.saturating_sub(n)));
    }

    /// Containers held for sessions now.
    pub fn reserved(&self) -> u32 {
        self.reserved.load(Ordering::SeqCst)
    }

    /// The calibration new offers use, if the machine is calibrated.
    pub fn calibration(&self) -> Option<recalibrate::InForce> {
        self.in_force.lock().unwrap().clone()
    }

    /// Contracts signed or active (what Recalibrate waits for).
    pub fn open_contracts(&self) -> Result<u32, ApiError> {
        let Some(store) = &self.store else { return Ok(0) };
        Ok(store.contracts()?.iter().filter(|r| matches!(r.state, ContractState::Active | ContractState::Signed)).count() as u32)
    }

    /// The most capacity sold at once: the engine's capacity, lowered by SetLimits.
    pub fn limits(&self) -> SellLimits {
        let c = &self.capacity;
        let cap = SellLimits { memory_bytes: c.memory_bytes, cpu_millicores: c.cpu_millicores as u64, disk_bytes: c.disk_bytes };
        match self.settings.lock().unwrap().limits {
            Some(l) => SellLimits { memory_bytes: l.memory_bytes.min(cap.memory_bytes), cpu_millicores: l.cpu_millicores.min(cap.cpu_millicores), disk_bytes: l.disk_bytes.min(cap.disk_bytes) },
            None => cap,
        }
    }

    /// Applies `change` to the settings and persists them before returning.
    pub(crate) fn update(&self, change: impl FnOnce(&mut ControlSettings)) -> Result<(), ApiError> {
        let mut s = self.settings.lock().unwrap();
        let mut next = s.clone();
        change(&mut next);
        if let Some(store) = &self.store {
            store.put_control_settings(&next)?;
        }
        *s = next;
        Ok(())
    }

    fn set_state(&self, st: RunState) -> Result<(), ApiError> {
        self.update(|s| s.paused = st != RunState::Accepting)?;
        let prev = RunState::from_u8(self.state.swap(st as u8, Ordering::AcqRel));
        if prev != st {
            tracing::info!("market {prev:?} -> {st:?}");
            eprintln!("zennet-agent: market {}", match st {
                RunState::Accepting => "resumed: answering announcements",
                RunState::Paused => "paused: declining new announcements",
                RunState::Draining => "draining: declining new announcements, running contracts finish",
            });
        }
        Ok(())
    }

    /// Starts paused without saving it (`market.accept_work = false` in the config).
    pub fn start_paused(&self) {
        self.state.store(RunState::Paused as u8, Ordering::Release);
    }

    /// Stop answering announcements.
    pub fn pause(&self) -> Result<(), ApiError> {
        self.set_state(RunState::Paused)
    }

    /// Answer announcements again.
    pub fn resume(&self) -> Result<(), ApiError> {
        self.set_state(RunState::Accepting)
    }

    /// Stop answering announcements; running contracts finish and settle.
    pub fn drain(&self) -> Result<(), ApiError> {
        self.set_state(RunState::Draining)
    }

    /// The asking price of the whole machine per second for new offers.
    pub fn set_price(&self, price_per_second: u64) -> Result<(), ApiError> {
        if price_per_second == 0 || price_per_second > MAX_PRICE_PER_SECOND {
            return Err(ApiError::Invalid { what: "price_per_second", value: price_per_second.to_string(), reason: format!("must be 1..={MAX_PRICE_PER_SECOND} base units") });
        }
        self.update(|s| s.price_per_second = Some(price_per_second))?;
        eprintln!("zennet-agent: asking price now {price_per_second} base units per machine-second");
        Ok(())
    }

    /// The most capacity sold at once (each at most the engine's capacity, none zero).
    pub fn set_limits(&self, l: SellLimits) -> Result<(), ApiError> {
        let c = &self.capacity;
        for (what, v, max) in [("memory_bytes", l.memory_bytes, c.memory_bytes), ("cpu_millicores", l.cpu_millicores, c.cpu_millicores as u64), ("disk_bytes", l.disk_bytes, c.disk_bytes)] {
            if v == 0 || v > max {
                return Err(ApiError::Invalid { what, value: v.to_string(), reason: format!("must be 1..={max} (the engine's capacity)") });
            }
        }
        self.update(|s| s.limits = Some(l))?;
        eprintln!("zennet-agent: limits now memory={} cpu_millicores={} disk={}", l.memory_bytes, l.cpu_millicores, l.disk_bytes);
        Ok(())
    }

    /// Calibrates now, in the background ([`recalibrate::start`]); refused
    /// while contracts are open or a calibration runs.
    pub fn recalibrate(self: &Arc<Self>) -> Result<String, ApiError> {
        recalibrate::start(self)
    }

    /// Publishes a market event (no one listening is fine).
    pub fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// What the store says about contracts now.
    pub fn snapshot(&self) -> Result<Snapshot, ApiError> {
        let mut snap = Snapshot::default();
        let Some(store) = &self.store else { return Ok(snap) };
        for r in store.contracts()? {
            snap.earnings = snap.earnings.saturating_add(r.paid().0);
            let spec = &r.contract.terms.spec;
            if matches!(r.state, ContractState::Active | ContractState::Signed) {
                snap.sold.memory_bytes += spec.memory_bytes;
                snap.sold.cpu_millicores += spec.cpu_millicores as u64;
                snap.sold.disk_bytes += spec.disk_bytes;
            }
            if r.state == ContractState::Active {
                snap.active += 1;
            }
            if let Some(u) = &r.last_usage {
                for (i, (_, v)) in u.named().enumerate() {
                    snap.usage[i] = snap.usage[i].saturating_add(v);
                }
            }
            snap.contracts.push(json!({
                "id": r.id().to_string(),
                "state": r.state,
                "container": r.container,
                "publisher": r.contract.terms.publisher.address().to_string(),
                "memory_bytes": spec.memory_bytes,
                "cpu_millicores": spec.cpu_millicores,
                "disk_bytes": spec.disk_bytes,
                "paid": r.paid().0,
                "channel": r.channel.map(|c| c.to_string()),
                "end_reason": r.end_reason,
            }));
        }
        snap.total = snap.contracts.len() as u64;
        // Bounded: open contracts first, then as many settled ones as fit.
        snap.contracts.sort_by_key(|c| c["state"] == "settled");
        snap.contracts.truncate(MAX_LISTED);
        Ok(snap)
    }

    /// The state as the API shows it: `calibrating` while a run-time
    /// calibration runs, `drained` once a drain has no contract left.
    pub fn state_name(&self, active: u32) -> &'static str {
        if self.calibrating() {
            return "calibrating";
        }
        match self.state() {
            RunState::Accepting => "accepting",
            RunState::Paused => "paused",
            RunState::Draining if active == 0 => "drained",
            RunState::Draining => "draining",
        }
    }

    /// Free capacity under the limits, given what is sold.
    pub fn free(&self, sold: &SellLimits) -> SellLimits {
        let l = self.limits();
        SellLimits { memory_bytes: l.memory_bytes.saturating_sub(sold.memory_bytes), cpu_millicores: l.cpu_millicores.saturating_sub(sold.cpu_millicores), disk_bytes: l.disk_bytes.saturating_sub(sold.disk_bytes) }
    }
}

/// Contracts as the store has them, summed.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Contracts with a running container.
    pub active: u32,
    /// Every contract record.
    pub total: u64,
    /// What every best voucher promises, base units.
    pub earnings: u64,
    /// Capacity of signed and active contracts.
    pub sold: SellLimits,
    /// Cumulative usage of every contract, in `UsageComponent::ALL` order.
    pub usage: [u64; zennet_protocol::UsageVector::LEN],
    /// One JSON object per contract, at most [`MAX_LISTED`], open ones first.
    pub contracts: Vec<serde_json::Value>,
}
