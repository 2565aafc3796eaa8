//! The D-Bus object `/org/zennet/Agent1`, interface `org.zennet.Agent1`
//! (its introspection is kept in `agent/dbus/org.zennet.Agent1.xml`).
//! Served either peer-to-peer on a private unix socket (each client its own
//! connection; the caller is known from the socket's peer credentials), or
//! on the system bus under the name `org.zennet.Agent1` (the caller from
//! the bus's `GetConnectionCredentials`; `agent/dbus/org.zennet.Agent1.conf`
//! is the bus policy). Either way the agent itself refuses the mutating
//! methods to callers that are neither root nor in group `zennet`.

use super::{ApiError, Control, Event};
use crate::store::SellLimits;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{fdo, interface, Connection};

/// The object path.
pub const PATH: &str = "/org/zennet/Agent1";
/// The interface and, on a bus, the well-known name.
pub const NAME: &str = "org.zennet.Agent1";
/// The group whose members may call mutating methods.
pub const GROUP: &str = "zennet";
/// Clients served at once on the private socket.
pub const MAX_CLIENTS: usize = 64;
/// A client must finish the D-Bus handshake within this.
const HANDSHAKE: Duration = Duration::from_secs(5);

/// Who called, as the socket or the bus says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// Every group of the caller, when known (primary included).
    pub groups: Vec<u32>,
}

impl Caller {
    /// Root, or a member of `zennet_gid`.
    pub fn may_change(&self, zennet_gid: Option<u32>) -> bool {
        self.uid == 0 || zennet_gid.is_some_and(|g| self.gid == g || self.groups.contains(&g))
    }
}

/// The gid of group `zennet` on this machine, if it exists.
pub fn zennet_gid() -> Option<u32> {
    nix::unistd::Group::from_name(GROUP).ok().flatten().map(|g| g.gid.as_raw())
}

/// The supplementary groups of process `pid` (`/proc/PID/status`), empty if unreadable.
fn groups_of(pid: i32) -> Vec<u32> {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return Vec::new() };
    s.lines().find_map(|l| l.strip_prefix("Groups:")).map(|g| g.split_whitespace().filter_map(|x| x.parse().ok()).take(1024).collect()).unwrap_or_default()
}

/// The D-Bus object. One per private-socket connection (with that
/// connection's caller), or one on the bus (caller asked of the bus).
pub struct Agent1 {
    ctl: Arc<Control>,
    caller: Option<Caller>,
}

impl Agent1 {
    /// Refuses `method` unless the caller may change the agent.
    async fn check(&self, method: &'static str, hdr: &Header<'_>, conn: &Connection) -> fdo::Result<()> {
        let caller = match &self.caller {
            Some(c) => c.clone(),
            None => bus_caller(hdr, conn).await?,
        };
        if caller.may_change(zennet_gid()) {
            return Ok(());
        }
        let e = ApiError::Denied { method, uid: caller.uid, gid: caller.gid };
        tracing::warn!("{e}");
        Err(fdo::Error::AccessDenied(e.to_string()))
    }

    /// Runs `f` on the control off the runtime's threads (store commits).
    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Control) -> Result<T, ApiError> + Send + 'static) -> fdo::Result<T> {
        let ctl = self.ctl.clone();
        match tokio::task::spawn_blocking(move || f(&ctl)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(ApiError::Invalid { what, value, reason })) => Err(fdo::Error::InvalidArgs(format!("{what} = {value}: {reason}"))),
            Ok(Err(e @ (ApiError::Busy { .. } | ApiError::Calibration(_)))) => Err(fdo::Error::NotSupported(e.to_string())),
            Ok(Err(e)) => Err(fdo::Error::Failed(e.to_string())),
            Err(e) => Err(fdo::Error::Failed(format!("control task: {e}"))),
        }
    }
}

/// The caller of a message on the bus.
async fn bus_caller(hdr: &Header<'_>, conn: &Connection) -> fdo::Result<Caller> {
    let sender = hdr.sender().ok_or_else(|| fdo::Error::AccessDenied("a call without a sender".into()))?;
    let creds = fdo::DBusProxy::new(conn).await?.get_connection_credentials(sender.clone().into()).await?;
    let uid = creds.unix_user_id().ok_or_else(|| fdo::Error::AccessDenied(format!("the bus does not know the uid of {sender}")))?;
    let groups = creds.unix_group_ids().cloned().unwrap_or_default();
    Ok(Caller { uid, gid: groups.first().copied().unwrap_or(u32::MAX), groups })
}

fn triple(l: SellLimits) -> (u64, u64, u64) {
    (l.memory_bytes, l.cpu_millicores, l.disk_bytes)
}

#[interface(name = "org.zennet.Agent1", proxy(default_path = "/org/zennet/Agent1", default_service = "org.zennet.Agent1"))]
impl Agent1 {
    /// The provider's chain address.
    #[zbus(property)]
    fn address(&self) -> String {
        self.ctl.address.clone()
    }

    /// `accepting`, `paused`, `draining`, `drained` or `calibrating` (a Recalibrate runs; new announcements are declined).
    #[zbus(property)]
    async fn state(&self) -> fdo::Result<String> {
        self.blocking(|c| Ok(c.state_name(c.snapshot()?.active).to_string())).await
    }

    /// The latest calibration summary, JSON (`null` before the first).
    #[zbus(property)]
    async fn calibration_summary(&self) -> fdo::Result<String> {
        self.blocking(|c| {
            let rec = match c.store() {
                Some(s) => s.latest_calibration()?,
                None => None,
            };
            Ok(serde_json::to_string(&rec.map(|r| r.summary())).unwrap_or_else(|_| "null".into()))
        })
        .await
    }

    /// Capacity of signed and running contracts: (memory bytes, cpu millicores, disk bytes).
    #[zbus(property)]
    async fn capacity_sold(&self) -> fdo::Result<(u64, u64, u64)> {
        self.blocking(|c| Ok(triple(c.snapshot()?.sold))).await
    }

    /// Capacity still for sale under the limits: (memory bytes, cpu millicores, disk bytes).
    #[zbus(property)]
    async fn capacity_free(&self) -> fdo::Result<(u64, u64, u64)> {
        self.blocking(|c| Ok(triple(c.free(&c.snapshot()?.sold)))).await
    }

    /// Contracts whose container runs.
    #[zbus(property)]
    async fn active_contracts(&self) -> fdo::Result<u32> {
        self.blocking(|c| Ok(c.snapshot()?.active)).await
    }

    /// What every best voucher promises, base units.
    #[zbus(property)]
    async fn earnings(&self) -> fdo::Result<u64> {
        self.blocking(|c| Ok(c.snapshot()?.earnings)).await
    }

    /// The asking price for new offers, base units per machine-second: SetPrice's, else the configuration's.
    #[zbus(property)]
    fn price_per_second(&self) -> u64 {
        self.ctl.effective_price()
    }

    /// Stop answering announcements; running contracts go on.
    async fn pause(&self, #[zbus(header)] hdr: Header<'_>, #[zbus(connection)] conn: &Connection) -> fdo::Result<()> {
        self.check("Pause", &hdr, conn).await?;
        self.blocking(|c| c.pause()).await
    }

    /// Answer announcements again.
    async fn resume(&self, #[zbus(header)] hdr: Header<'_>, #[zbus(connection)] conn: &Connection) -> fdo::Result<()> {
        self.check("Resume", &hdr, conn).await?;
        self.blocking(|c| c.resume()).await
    }

    /// Stop taking work; running contracts finish and settle (State becomes `drained`).
    async fn drain(&self, #[zbus(header)] hdr: Header<'_>, #[zbus(connection)] conn: &Connection) -> fdo::Result<()> {
        self.check("Drain", &hdr, conn).await?;
        self.blocking(|c| c.drain()).await
    }

    /// The asking price for new offers: the whole machine per second, base units.
    async fn set_price(&self, price_per_second: u64, #[zbus(header)] hdr: Header<'_>, #[zbus(connection)] conn: &Connection) -> fdo::Result<()> {
        self.check("SetPrice", &hdr, conn).await?;
        self.blocking(move |c| c.set_price(price_per_second)).await
    }

    /// The most capacity sold at once over all contracts.
    async fn set_limits(&self, memory_bytes: u64, cpu_millicores: u64, disk_bytes: u64, #[zbus(header)] hdr: Header<'_>, #[zbus(connection)] conn: &Connection) -> fdo::Result<()> {
        self.check("SetLimits", &hdr, conn).await?;
        self.blocking(move |c| c.set_limits(SellLimits { memory_bytes, cpu_millicores, disk_bytes })).await
    }

    /// Starts a calibration now, in a child process, and returns at once: State is `calibrating` (new announcements declined) until CalibrationSummary holds the new record, which new offers then use. Refused (NotSupported) while any contract is signed or active or a calibration runs: Drain first.
    async fn recalibrate(&self, #[zbus(header)] hdr: Header<'_>, #[zbus(connection)] conn: &Connection) -> fdo::Result<String> {
        self.check("Recalibrate", &hdr, conn).await?;
        let ctl = self.ctl.clone();
        self.blocking(move |_| ctl.recalibrate()).await
    }

    /// The contract records, JSON array (at most 1000, open ones first).
    async fn list_contracts(&self) -> fdo::Result<String> {
        self.blocking(|c| Ok(serde_json::Value::Array(c.snapshot()?.contracts).to_string())).await
    }

    /// A contract's container is running.
    #[zbus(signal)]
    async fn contract_started(emitter: &SignalEmitter<'_>, contract: &str, publisher: &str) -> zbus::Result<()>;

    /// A contract ended and was settled; `paid` is its best voucher, base units.
    #[zbus(signal)]
    async fn contract_ended(emitter: &SignalEmitter<'_>, contract: &str, reason: &str, paid: u64) -> zbus::Result<()>;

    /// A voucher was committed; `cumulative` is what it promises in all, base units.
    #[zbus(signal)]
    async fn payment(emitter: &SignalEmitter<'_>, contract: &str, cumulative: u64) -> zbus::Result<()>;
}

/// Sends the market's events as signals on `conn` until it closes.
async fn forward_signals(ctl: Arc<Control>, conn: Connection) {
    let mut rx = ctl.subscribe();
    let Ok(em) = SignalEmitter::new(&conn, PATH) else { return };
    loop {
        let ev = tokio::select! {
            _ = conn.closed() => return,
            ev = rx.recv() => ev,
        };
        let r = match ev {
            Ok(Event::Started { contract, publisher }) => Agent1::contract_started(&em, &contract, &publisher).await,
            Ok(Event::Ended { contract, reason, paid }) => Agent1::contract_ended(&em, &contract, &reason, paid).await,
            Ok(Event::Payment { contract, cumulative }) => Agent1::payment(&em, &contract, cumulative).await,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("control client too slow: {n} signals dropped");
                continue;
            }
            Err(_) => return,
        };
        if r.is_err() {
            return;
        }
    }
}

/// The private control socket: `<state_dir>/agent.bus`.
pub fn socket_in(state_dir: &Path) -> PathBuf {
    state_dir.join("agent.bus")
}

/// Serves the object peer-to-peer on a unix socket at `path` (replacing a
/// stale one; mode 0666: anyone local may read, the agent checks who
/// changes). Returns once listening.
pub async fn serve_socket(ctl: Arc<Control>, path: &Path) -> Result<tokio::task::JoinHandle<()>, ApiError> {
    use std::os::unix::fs::PermissionsExt;
    let sock_err = |source| ApiError::Socket { path: path.display().to_string(), source };
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(sock_err(e)),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(sock_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(sock_err)?;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    Ok(tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else { return };
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("control socket accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let ctl = ctl.clone();
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = serve_client(ctl, stream).await {
                    tracing::debug!("control client: {e}");
                }
            });
        }
    }))
}

/// One peer-to-peer client: its credentials, the handshake, then the
/// object and its signals until it hangs up.
async fn serve_client(ctl: Arc<Control>, stream: tokio::net::UnixStream) -> Result<(), ApiError> {
    let cred = stream.peer_cred().map_err(|source| ApiError::Socket { path: "peer credentials".into(), source })?;
    let mut groups = cred.pid().map(groups_of).unwrap_or_default();
    groups.push(cred.gid());
    let caller = Caller { uid: cred.uid(), gid: cred.gid(), groups };
    let std = stream.into_std().map_err(|source| ApiError::Socket { path: "control client".into(), source })?;
    let build = zbus::connection::Builder::unix_stream(std).server(zbus::Guid::generate()).p2p().serve_at(PATH, Agent1 { ctl: ctl.clone(), caller: Some(caller) }).build();
    let conn = tokio::time::timeout(HANDSHAKE, build).await.map_err(|_| ApiError::Socket { path: "control client".into(), source: std::io::Error::new(std::io::ErrorKind::TimedOut, "no D-Bus handshake") })??;
    forward_signals(ctl, conn).await;
    Ok(())
}

/// Serves the object on the system bus as `org.zennet.Agent1` (the appliance).
pub async fn serve_system_bus(ctl: Arc<Control>) -> Result<Connection, ApiError> {
    let conn = zbus::connection::Builder::system().name(NAME).serve_at(PATH, Agent1 { ctl: ctl.clone(), caller: None }).build().await?;
    tokio::spawn(forward_signals(ctl, conn.clone()));
    Ok(conn)
}
