//! Container networking: the agent's bridge, its nftables policy, and one
//! veth per container.
//!
//! This module owns, on the provider's host:
//! - the bridge [`NetConfig::bridge`] with the gateway address (first host
//!   address of [`NetConfig::subnet`]) and `net.ipv4.ip_forward = 1`;
//! - the nftables tables `ip <nft_table>` and `bridge <nft_table>` (the
//!   policy, detailed in the `nft` submodule: masquerade out; no access to
//!   the host except replies and allowed DNS; no access to `blocked` ranges
//!   except allowed DNS on port 53; containers reach each other only within
//!   a tenant; nothing unsolicited comes in; no IPv6 and no spoofed source
//!   leaves a container);
//! - per container `id`: a veth pair (host end `zv<10 hex>` on the bridge,
//!   bridge-isolated, its alias `zennet:<id>`; container end `eth0`), the netns
//!   name `zn-<id>` and one allocation record `<state_dir>/<id>.json`.
//!
//! The container's netns is created by libcontainer inside the container's
//! user namespace, so it cannot be made beforehand: the engine calls
//! [`Network::attach`] between libcontainer's create and start, with the pid
//! of the container's init. Everything is synchronous (it runs in the
//! single-threaded zygote) and drives the `ip` and `nft` binaries with
//! scripts on stdin: an attach is three processes, a detach at most two.
//!
//! How the engine uses it:
//! - agent start: [`Network::setup`], then [`Network::reconcile`] with the
//!   ids of the containers that survived;
//! - create: libcontainer create, [`Network::attach`] with the init's pid,
//!   start (on failure: [`Network::detach`]);
//! - metering: [`Network::counters`] every interval;
//! - delete: last counters, delete the container, [`Network::detach`];
//! - shutdown or tests: [`Network::teardown`].
//!
//! Needs the full iproute2 `ip` (busybox's lacks `-batch` and `netns
//! attach`), `nft`, and a kernel with veth, bridge, nf_tables for the `ip`
//! and `bridge` families, conntrack and NAT (masquerade).

mod cmd;
mod config;
mod error;
mod nft;
mod state;

pub use config::{
    connected_subnets, default_blocked, netns_name, resolv_conf_nameservers, veth_name, NetConfig,
};
pub use error::NetError;

use config::check_name;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

pub use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Prefix of the alias set on every host veth the agent creates; the rest of
/// the alias is the container id.
const ALIAS_PREFIX: &str = "zennet:";
/// Longest accepted container id or tenant.
const MAX_ID_LEN: usize = 64;

/// One container's place on the network, as persisted and returned by
/// [`Network::attach`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The container id.
    pub id: String,
    /// The tenant (publisher); containers of one tenant may reach each other.
    pub tenant: String,
    /// The container's address (a /32 on its eth0).
    pub ip: Ipv4Addr,
    /// The host end of the veth pair, on the bridge.
    pub host_veth: String,
    /// The netns name (`ip netns`), "zn-<id>".
    pub netns: String,
}

/// The agent's container network: set up once, then attach and detach
/// containers. Holds the allocations in memory, mirrored in `state_dir`.
#[derive(Debug)]
pub struct Network {
    cfg: NetConfig,
    atts: Mutex<BTreeMap<String, Attachment>>,
    /// The address allocated last; allocation goes round the subnet from
    /// there, so a freed address is reused as late as possible (conntrack
    /// entries of its previous owner then have long expired).
    last: AtomicU32,
}

fn exists(path: impl AsRef<Path>) -> bool {
    path.as_ref().symlink_metadata().is_ok()
}

fn write_proc(path: &str, value: &str) -> Result<(), NetError> {
    std::fs::write(path, value).map_err(|source| NetError::Io {
        what: format!("write {value:?} to"),
        path: path.into(),
        source,
    })
}

impl Network {
    /// Brings the network up; idempotent. Creates the bridge if missing and
    /// sets the gateway address on it, enables IPv4 forwarding, loads the
    /// allocation records from `state_dir` and installs both nftables tables
    /// in one transaction, with the set elements of every recorded
    /// attachment (so a restart keeps surviving containers working).
    pub fn setup(cfg: NetConfig) -> Result<Network, NetError> {
        cfg.validate()?;
        let atts = state::load_all(&cfg.state_dir)?;
        let br = &cfg.bridge;
        let mut script = String::new();
        if !exists(format!("/sys/class/net/{br}")) {
            // A fixed MAC: otherwise the bridge takes the lowest of its ports'
            // and the gateway's MAC changes under running containers.
            let h = veth_name(br);
            let mac = format!(
                "02:5a:{}:{}:{}:{}",
                &h[4..6],
                &h[6..8],
                &h[8..10],
                &h[10..12]
            );
            script.push_str(&format!(
                "link add name {br} address {mac} type bridge\nlink set dev {br} addrgenmode none\n"
            ));
        }
        script.push_str(&format!(
            "addr replace {}/{} dev {br}\nlink set dev {br} up\n",
            cfg.gateway(),
            cfg.subnet.prefix_len()
        ));
        cmd::ip_batch(&script, &format!("set up bridge {br}"))?;
        write_proc("/proc/sys/net/ipv4/ip_forward", "1")?;
        let list: Vec<&Attachment> = atts.values().collect();
        cmd::nft(
            &nft::ruleset(&cfg, &list),
            &format!("install nft tables {}", cfg.nft_table),
        )?;
        let last = atts
            .values()
            .map(|a| u32::from(a.ip))
            .max()
            .unwrap_or(u32::from(cfg.gateway()));
        Ok(Network {
            cfg,
            atts: Mutex::new(atts),
            last: AtomicU32::new(last),
        })
    }

    /// The configuration this network was set up with.
    pub fn config(&self) -> &NetConfig {
        &self.cfg
    }

    /// The attachments currently recorded.
    pub fn attachments(&self) -> Vec<Attachment> {
        self.lock().values().cloned().collect()
    }

    /// The recorded attachment of container `id`, if any (e.g. to read its
    /// counters after an agent restart).
    pub fn attachment(&self, id: &str) -> Option<Attachment> {
        self.lock().get(id).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Attachment>> {
        self.atts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connects the netns of process `pid` (the container's init, created
    /// but not started) to the bridge: allocates and records an address,
    /// names the netns "zn-<id>", creates the veth pair with `eth0` inside,
    /// configures lo, eth0 (a /32, no IPv6) and the default route via the
    /// gateway, and adds the nftables elements (same-tenant pairs,
    /// anti-spoofing). On failure everything done so far is undone.
    pub fn attach(&self, id: &str, tenant: &str, pid: i32) -> Result<Attachment, NetError> {
        let start = Instant::now();
        check_name("id", id, MAX_ID_LEN)?;
        check_name("tenant", tenant, MAX_ID_LEN)?;
        let theirs = if pid > 0 {
            std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()
        } else {
            None
        };
        let Some(theirs) = theirs else {
            return Err(NetError::NoProcess {
                id: id.to_string(),
                pid,
            });
        };
        if std::fs::read_link("/proc/self/ns/net").ok().as_ref() == Some(&theirs) {
            return Err(NetError::SameNetns {
                id: id.to_string(),
                pid,
            });
        }
        let mut atts = self.lock();
        let att = self.allocate(&atts, id, tenant)?;
        state::save(&self.cfg.state_dir, &att)?;
        atts.insert(id.to_string(), att.clone());
        let peers: Vec<Ipv4Addr> = atts
            .values()
            .filter(|a| a.tenant == tenant && a.id != id)
            .map(|a| a.ip)
            .collect();
        if let Err(e) = self.plumb(&att, &peers, pid) {
            tracing::warn!(id, error = %e, "attach failed, undoing");
            if let Err(undo) = self.detach_locked(&mut atts, id) {
                tracing::warn!(id, error = %undo, "undoing a failed attach failed too");
            }
            return Err(e);
        }
        tracing::debug!(id, ip = %att.ip, elapsed_us = start.elapsed().as_micros() as u64, "attached");
        Ok(att)
    }

    fn allocate(
        &self,
        atts: &BTreeMap<String, Attachment>,
        id: &str,
        tenant: &str,
    ) -> Result<Attachment, NetError> {
        if let Some(a) = atts.get(id) {
            return Err(NetError::AlreadyAttached {
                id: id.to_string(),
                ip: a.ip,
            });
        }
        let host_veth = veth_name(id);
        if let Some(other) = atts.values().find(|a| a.host_veth == host_veth) {
            return Err(NetError::VethCollision {
                id: id.into(),
                other: other.id.clone(),
                veth: host_veth,
            });
        }
        let used: std::collections::HashSet<Ipv4Addr> = atts.values().map(|a| a.ip).collect();
        let gw = self.cfg.gateway();
        let last = self.last.load(Ordering::Relaxed);
        let hosts = self.cfg.subnet.hosts();
        let ip = hosts
            .clone()
            .filter(|ip| u32::from(*ip) > last)
            .chain(hosts.filter(|ip| u32::from(*ip) <= last))
            .find(|ip| *ip != gw && !used.contains(ip))
            .ok_or_else(|| NetError::SubnetExhausted {
                id: id.into(),
                subnet: self.cfg.subnet,
            })?;
        self.last.store(u32::from(ip), Ordering::Relaxed);
        Ok(Attachment {
            id: id.into(),
            tenant: tenant.into(),
            ip,
            host_veth,
            netns: netns_name(id),
        })
    }

    fn plumb(&self, att: &Attachment, peers: &[Ipv4Addr], pid: i32) -> Result<(), NetError> {
        let (v, ns, br, gw) = (
            &att.host_veth,
            &att.netns,
            &self.cfg.bridge,
            self.cfg.gateway(),
        );
        let what = format!("attach {}", att.id);
        // Filter elements first: the port is filtered from its first frame.
        let pairs = nft::pair_elements(att.ip, peers);
        cmd::nft(
            &nft::add_elements(&self.cfg.nft_table, &pairs, &nft::port_elements(att)),
            &what,
        )?;
        // Leftovers of an earlier life of this id (never recorded, or the
        // record lost) would make the batch fail: remove them first.
        let mut stale = String::new();
        if exists(format!("/run/netns/{ns}")) {
            stale.push_str(&format!("netns del {ns}\n"));
        }
        if exists(format!("/sys/class/net/{v}")) {
            stale.push_str(&format!("link del dev {v}\n"));
        }
        cmd::ip_batch(
            &format!(
                "{stale}netns attach {ns} {pid}\n\
                 link add name {v} type veth peer name eth0 netns {ns}\n\
                 link set dev {v} addrgenmode none\n\
                 link set dev {v} alias {ALIAS_PREFIX}{id} master {br}\n\
                 link set dev {v} type bridge_slave isolated on learning off\n\
                 link set dev {v} up\n",
                id = att.id
            ),
            &what,
        )?;
        cmd::ip_batch_in(
            ns,
            &format!(
                "link set dev lo up\n\
                 link set dev eth0 addrgenmode none\n\
                 addr add {ip}/32 dev eth0\n\
                 link set dev eth0 up\n\
                 route add {gw} dev eth0 scope link\n\
                 route add default via {gw} dev eth0 src {ip}\n",
                ip = att.ip
            ),
            &what,
        )?;
        Ok(())
    }

    /// Disconnects container `id`; idempotent (an unknown id is a no-op).
    /// Removes its nftables elements, its veth pair, its netns name (the
    /// netns itself lives on while the container holds it) and its
    /// allocation record, in that order, so a failure leaves the record for
    /// [`Network::reconcile`] to retry.
    pub fn detach(&self, id: &str) -> Result<(), NetError> {
        check_name("id", id, MAX_ID_LEN)?;
        let start = Instant::now();
        let mut atts = self.lock();
        self.detach_locked(&mut atts, id)?;
        tracing::debug!(
            id,
            elapsed_us = start.elapsed().as_micros() as u64,
            "detached"
        );
        Ok(())
    }

    fn detach_locked(
        &self,
        atts: &mut BTreeMap<String, Attachment>,
        id: &str,
    ) -> Result<(), NetError> {
        let what = format!("detach {id}");
        let mut nft_result = Ok(());
        if let Some(att) = atts.get(id) {
            let peers: Vec<Ipv4Addr> = atts
                .values()
                .filter(|a| a.tenant == att.tenant && a.id != id)
                .map(|a| a.ip)
                .collect();
            let pairs = nft::pair_elements(att.ip, &peers);
            let script =
                nft::remove_elements(&self.cfg.nft_table, &pairs, &nft::port_elements(att));
            // If the tables are gone (removed by hand), so are the elements.
            nft_result = cmd::nft(&script, &what).map(drop).or_else(|e| {
                if self.tables_exist() {
                    Err(e)
                } else {
                    Ok(())
                }
            });
        }
        let veth = atts
            .get(id)
            .map(|a| a.host_veth.clone())
            .unwrap_or_else(|| veth_name(id));
        let ns = netns_name(id);
        let mut script = String::new();
        if exists(format!("/sys/class/net/{veth}")) {
            script.push_str(&format!("link del dev {veth}\n"));
        }
        if exists(format!("/run/netns/{ns}")) {
            script.push_str(&format!("netns del {ns}\n"));
        }
        if !script.is_empty() {
            cmd::ip_batch(&script, &what)?;
        }
        // Keep the record while elements may remain, for a later retry.
        nft_result?;
        state::remove(&self.cfg.state_dir, id)?;
        atts.remove(id);
        Ok(())
    }

    /// After a crash: removes every container the agent owns whose id is not
    /// in `keep` (recorded allocations, and veths on the bridge carrying the
    /// agent's alias), with its veth, netns name, nftables elements and
    /// record. Returns the ids removed, sorted. Goes on past a failing id and
    /// then returns the first error (the others are logged).
    pub fn reconcile(&self, keep: &[String]) -> Result<Vec<String>, NetError> {
        let mut atts = self.lock();
        let mut gone: Vec<String> = atts
            .keys()
            .filter(|id| !keep.contains(id))
            .cloned()
            .collect();
        for id in self.bridge_port_ids()? {
            if !keep.contains(&id)
                && !gone.contains(&id)
                && check_name("id", &id, MAX_ID_LEN).is_ok()
            {
                gone.push(id);
            }
        }
        gone.sort();
        let mut first_err = None;
        for id in &gone {
            if let Err(e) = self.detach_locked(&mut atts, id) {
                tracing::warn!(id, error = %e, "reconcile could not remove");
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(gone),
        }
    }

    /// Whether both nftables tables exist (one `nft` process; used only
    /// on error paths).
    fn tables_exist(&self) -> bool {
        let t = &self.cfg.nft_table;
        cmd::nft(
            &format!("list table ip {t}\nlist table bridge {t}\n"),
            "check nft tables",
        )
        .is_ok()
    }

    /// Ids found in the aliases of the bridge's ports (none if the bridge is
    /// missing).
    fn bridge_port_ids(&self) -> Result<Vec<String>, NetError> {
        if !exists(format!("/sys/class/net/{}", self.cfg.bridge)) {
            return Ok(Vec::new());
        }
        let out = cmd::run(
            "ip",
            &["-j", "link", "show", "master", &self.cfg.bridge],
            "",
            &format!("list ports of {}", self.cfg.bridge),
        )?;
        let links: Vec<serde_json::Value> = serde_json::from_str(out.trim()).unwrap_or_default();
        Ok(links
            .iter()
            .filter_map(|l| {
                l.get("ifalias")?
                    .as_str()?
                    .strip_prefix(ALIAS_PREFIX)
                    .map(str::to_string)
            })
            .collect())
    }

    /// Removes everything: every attachment (as `reconcile(&[])`), both
    /// nftables tables and the bridge. For agent shutdown and test cleanup.
    /// `ip_forward` is left on: other software on the host may rely on it.
    pub fn teardown(self) -> Result<(), NetError> {
        self.reconcile(&[])?;
        cmd::nft(
            &nft::delete_tables(&self.cfg.nft_table),
            "teardown nft tables",
        )?;
        let br = &self.cfg.bridge;
        if exists(format!("/sys/class/net/{br}")) {
            cmd::ip_batch(
                &format!("link del dev {br}\n"),
                &format!("teardown bridge {br}"),
            )?;
        }
        Ok(())
    }

    /// (rx_bytes, tx_bytes) from the container's point of view, read from
    /// the host veth's statistics (container rx = host tx).
    pub fn counters(&self, att: &Attachment) -> Result<(u64, u64), NetError> {
        let read = |name: &str| -> Result<u64, NetError> {
            let path = PathBuf::from(format!(
                "/sys/class/net/{}/statistics/{name}",
                att.host_veth
            ));
            let text = std::fs::read_to_string(&path).map_err(|source| NetError::Io {
                what: format!("read counters of {}", att.id),
                path: path.clone(),
                source,
            })?;
            text.trim().parse().map_err(|_| NetError::Io {
                what: format!("parse counters of {}", att.id),
                path,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    text.trim().to_string(),
                ),
            })
        };
        Ok((read("tx_bytes")?, read("rx_bytes")?))
    }
}
