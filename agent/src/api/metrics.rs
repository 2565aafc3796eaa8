//! The Prometheus text endpoint (`GET /metrics`, OpenMetrics text from
//! `prometheus-client`) on a local address: contracts, earnings in base
//! units, usage totals per component, containers, calibration age, chain
//! head lag, the market's state. Values are read from the store, the
//! engine and the chain at each scrape.

use super::{ApiError, Control};
use crate::containers::Engine;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zennet_protocol::UsageComponent;

/// Largest request head read.
const MAX_REQUEST: usize = 8 << 10;
/// Scrapes served at once.
const MAX_SCRAPES: usize = 16;
/// A scraper must send its request within this.
const REQUEST_WAIT: Duration = Duration::from_secs(5);

type Labels = Vec<(String, String)>;

/// The metrics and where their values come from.
pub struct Metrics {
    ctl: Arc<Control>,
    engine: Option<Arc<Engine>>,
    chain: Option<zennet_net::rpc::Chain>,
    registry: Registry,
    contracts: Gauge,
    active: Gauge,
    earnings: Counter,
    usage: Family<Labels, Counter>,
    containers: Gauge,
    calibration_age: Gauge,
    head_lag_ms: Gauge,
    state: Gauge,
    /// Last totals seen, so counters move by the difference.
    last: Mutex<(u64, [u64; zennet_protocol::UsageVector::LEN])>,
}

impl Metrics {
    /// Metrics of `ctl`'s store, `engine`'s containers and the chain at `rpc`.
    pub fn new(ctl: Arc<Control>, engine: Option<Arc<Engine>>, rpc: Option<&str>) -> Metrics {
        let mut registry = Registry::with_prefix("zennet");
        let m = Metrics {
            ctl,
            engine,
            chain: rpc.map(zennet_net::rpc::Chain::new),
            contracts: Gauge::default(),
            active: Gauge::default(),
            earnings: Counter::default(),
            usage: Family::default(),
            containers: Gauge::default(),
            calibration_age: Gauge::default(),
            head_lag_ms: Gauge::default(),
            state: Gauge::default(),
            last: Mutex::new((0, [0; zennet_protocol::UsageVector::LEN])),
            registry: Registry::default(),
        };
        registry.register("contracts", "Contract records in the store", m.contracts.clone());
        registry.register("contracts_active", "Contracts whose container runs", m.active.clone());
        registry.register("earnings_base_units", "What every best voucher promises, base units", m.earnings.clone());
        registry.register("usage", "Cumulative usage of every contract, by component (units in the component's name)", m.usage.clone());
        registry.register("containers", "Containers the engine runs", m.containers.clone());
        registry.register("calibration_age_seconds", "Age of the latest calibration (-1: none)", m.calibration_age.clone());
        registry.register("chain_head_lag_milliseconds", "Now minus the chain head's timestamp (-1: no chain)", m.head_lag_ms.clone());
        registry.register("market_state", "0 accepting, 1 paused, 2 draining", m.state.clone());
        Metrics { registry, ..m }
    }

    /// Reads every value now and encodes the text exposition. Blocking.
    pub fn render(&self) -> Result<String, ApiError> {
        let snap = self.ctl.snapshot()?;
        self.contracts.set(snap.total as i64);
        self.active.set(snap.active as i64);
        {
            let mut last = self.last.lock().unwrap();
            self.earnings.inc_by(snap.earnings.saturating_sub(last.0));
            for (i, c) in UsageComponent::ALL.iter().enumerate() {
                self.usage.get_or_create(&vec![("component".into(), c.name().into())]).inc_by(snap.usage[i].saturating_sub(last.1[i]));
            }
            *last = (last.0.max(snap.earnings), std::array::from_fn(|i| last.1[i].max(snap.usage[i])));
        }
        if let Some(e) = &self.engine {
            self.containers.set(e.list().map_or(-1, |l| l.len() as i64));
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let age = match self.ctl.store() {
            Some(s) => s.latest_calibration()?.map_or(-1, |r| now.as_secs().saturating_sub(r.time_unix_s) as i64),
            None => -1,
        };
        self.calibration_age.set(age);
        let lag = self.chain.as_ref().and_then(|c| c.head().ok()).map_or(-1, |h| (now.as_millis() as u64).saturating_sub(h.timestamp_ms) as i64);
        self.head_lag_ms.set(lag);
        self.state.set(self.ctl.state() as u8 as i64);
        let mut out = String::new();
        encode(&mut out, &self.registry).map_err(|e| ApiError::Invalid { what: "metrics", value: String::new(), reason: e.to_string() })?;
        Ok(out)
    }
}

/// Serves `GET /metrics` on `addr`; returns the bound address (port 0 picks one).
pub async fn serve(m: Arc<Metrics>, addr: &str) -> Result<SocketAddr, ApiError> {
    let err = |source| ApiError::Metrics { addr: addr.to_string(), source };
    let sa: SocketAddr = addr.parse().map_err(|e| err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("not ip:port: {e}"))))?;
    let listener = tokio::net::TcpListener::bind(sa).await.map_err(err)?;
    let bound = listener.local_addr().map_err(err)?;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else { return };
            let Ok((stream, _)) = listener.accept().await else { continue };
            let m = m.clone();
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = answer(m, stream).await {
                    tracing::debug!("metrics scrape: {e}");
                }
            });
        }
    });
    Ok(bound)
}

/// One HTTP/1.x request: `GET /metrics` or 404.
async fn answer(m: Arc<Metrics>, mut s: tokio::net::TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        std::io::Result::Ok(())
    };
    tokio::time::timeout(REQUEST_WAIT, read).await.map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request"))??;
    let line = String::from_utf8_lossy(&buf[..buf.iter().position(|&b| b == b'\r').unwrap_or(buf.len())]).into_owned();
    let (status, ctype, body) = if line.starts_with("GET /metrics ") || line == "GET /metrics" {
        match tokio::task::spawn_blocking(move || m.render()).await {
            Ok(Ok(b)) => ("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", b),
            Ok(Err(e)) => ("500 Internal Server Error", "text/plain", format!("{e}\n")),
            Err(e) => ("500 Internal Server Error", "text/plain", format!("{e}\n")),
        }
    } else {
        ("404 Not Found", "text/plain", "only GET /metrics is served\n".to_string())
    };
    let head = format!("HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).await?;
    s.write_all(body.as_bytes()).await?;
    s.shutdown().await
}
