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
mod error;
mod nft;
mod state;

pub use error::NetError;

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

/// Configuration of the agent's container network.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Name of the bridge (at most 15 bytes), e.g. "zn0".
    pub bridge: String,
    /// The containers' subnet; its first host address is the gateway, set on
    /// the bridge.
    pub subnet: Ipv4Net,
    /// Name of the agent's nftables tables (families `ip` and `bridge`).
    pub nft_table: String,
    /// Directory holding one allocation record per attached container.
    pub state_dir: PathBuf,
    /// Destination ranges containers may not reach (the provider's LAN,
    /// link-local, loopback, CGNAT).
    pub blocked: Vec<Ipv4Net>,
    /// Resolvers containers may reach on port 53 (TCP and UDP) even inside a
    /// blocked range or on the host.
    pub dns_allow: Vec<Ipv4Addr>,
}

/// The private, link-local, loopback and CGNAT ranges blocked by default.
pub fn default_blocked() -> Vec<Ipv4Net> {
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8", "100.64.0.0/10"]
        .iter()
        .map(|s| s.parse().expect("valid literal"))
        .collect()
}

/// IPv4 nameservers of a resolv.conf text, without loopback ones (a
/// container cannot reach the host's loopback anyway).
pub fn resolv_conf_nameservers(text: &str) -> Vec<Ipv4Addr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next()).flatten()
        })
        .filter_map(|a| a.parse::<Ipv4Addr>().ok())
        .filter(|a| !a.is_loopback())
        .collect()
}

/// Directly connected IPv4 networks of a /proc/net/route text (routes
/// without a gateway), except those on `skip_iface` and any shorter than a
/// /8 (a device default route would otherwise block everything).
pub fn connected_subnets(proc_net_route: &str, skip_iface: &str) -> Vec<Ipv4Net> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    let mut out = Vec::new();
    for line in proc_net_route.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 || f[0] == skip_iface {
            continue;
        }
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        let (Some(dst), Some(flags), Some(mask)) = (hex(f[1]), hex(f[3]), hex(f[7])) else { continue };
        // The file holds addresses in the kernel's (little-endian) byte order.
        let (dst, mask) = (Ipv4Addr::from(dst.swap_bytes()), u32::from(Ipv4Addr::from(mask.swap_bytes())));
        if flags & RTF_UP == 0 || flags & RTF_GATEWAY != 0 || mask.leading_ones() < 8 {
            continue;
        }
        if let Ok(net) = Ipv4Net::new(dst, mask.leading_ones() as u8) {
            if !out.contains(&net.trunc()) {
                out.push(net.trunc());
            }
        }
    }
    out
}

impl NetConfig {
    /// The production defaults: bridge "zn0", subnet 100.90.0.0/16, tables
    /// "zennet"; `blocked` is [`default_blocked`] plus the host's directly
    /// connected networks (the provider's LAN may use public addresses);
    /// `dns_allow` is the IPv4 nameservers of /etc/resolv.conf.
    pub fn default_for(state_dir: impl Into<PathBuf>) -> Self {
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
        let bridge = "zn0";
        let mut blocked = default_blocked();
        for net in connected_subnets(&routes, bridge) {
            if !blocked.iter().any(|b| b.contains(&net)) {
                blocked.push(net);
            }
        }
        NetConfig {
            bridge: bridge.into(),
            subnet: "100.90.0.0/16".parse().expect("valid literal"),
            nft_table: "zennet".into(),
            state_dir: state_dir.into(),
            blocked,
            dns_allow: resolv_conf_nameservers(&resolv),
        }
    }

    /// The gateway: the first host address of the subnet.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet.network()) + 1)
    }

    fn validate(&self) -> Result<(), NetError> {
        check_name("bridge", &self.bridge, 15)?;
        check_name("nft table", &self.nft_table, 64)?;
        if self.subnet.prefix_len() > 29 {
            return Err(NetError::Config(format!("subnet {} is smaller than a /29", self.subnet)));
        }
        Ok(())
    }
}

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

/// Host veth name for a container id: "zv" + 10 hex digits of its FNV-1a
/// hash (12 bytes, under the kernel's 15).
pub fn veth_name(id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("zv{:010x}", h & 0xff_ffff_ffff)
}

/// Netns name for a container id.
pub fn netns_name(id: &str) -> String {
    format!("zn-{id}")
}

fn check_name(kind: &'static str, value: &str, max: usize) -> Result<(), NetError> {
    let bad = |reason| Err(NetError::InvalidName { kind, value: value.to_string(), reason });
    if value.is_empty() {
        return bad("empty");
    }
    if value.len() > max {
        return bad("too long");
    }
    if value.starts_with(['.', '-']) {
        return bad("starts with '.' or '-'");
    }
    if !value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.') {
        return bad("only ASCII letters, digits, '_', '-' and '.' are allowed");
    }
    Ok(())
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
            script.push_str(&format!("link add name {br} type bridge\nlink set dev {br} addrgenmode none\n"));
        }
        script.push_str(&format!(
            "addr replace {}/{} dev {br}\nlink set dev {br} up\n",
            cfg.gateway(),
            cfg.subnet.prefix_len()
        ));
        cmd::ip_batch(&script, &format!("set up bridge {br}"))?;
        write_proc("/proc/sys/net/ipv4/ip_forward", "1")?;
        let list: Vec<&Attachment> = atts.values().collect();
        cmd::nft(&nft::ruleset(&cfg, &list), &format!("install nft tables {}", cfg.nft_table))?;
        let last = atts.values().map(|a| u32::from(a.ip)).max().unwrap_or(u32::from(cfg.gateway()));
        Ok(Network { cfg, atts: Mutex::new(atts), last: AtomicU32::new(last) })
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
        let theirs = if pid > 0 { std::fs::read_link(format!("/proc/{pid}/ns/net")).ok() } else { None };
        let Some(theirs) = theirs else {
            return Err(NetError::NoProcess { id: id.to_string(), pid });
        };
        if std::fs::read_link("/proc/self/ns/net").ok().as_ref() == Some(&theirs) {
            return Err(NetError::SameNetns { id: id.to_string(), pid });
        }
        let mut atts = self.lock();
        let att = self.allocate(&atts, id, tenant)?;
        state::save(&self.cfg.state_dir, &att)?;
        atts.insert(id.to_string(), att.clone());
        let peers: Vec<Ipv4Addr> =
            atts.values().filter(|a| a.tenant == tenant && a.id != id).map(|a| a.ip).collect();
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

    fn allocate(&self, atts: &BTreeMap<String, Attachment>, id: &str, tenant: &str) -> Result<Attachment, NetError> {
        if let Some(a) = atts.get(id) {
            return Err(NetError::AlreadyAttached { id: id.to_string(), ip: a.ip });
        }
        let host_veth = veth_name(id);
        if let Some(other) = atts.values().find(|a| a.host_veth == host_veth) {
            return Err(NetError::VethCollision { id: id.into(), other: other.id.clone(), veth: host_veth });
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
            .ok_or_else(|| NetError::SubnetExhausted { id: id.into(), subnet: self.cfg.subnet })?;
        self.last.store(u32::from(ip), Ordering::Relaxed);
        Ok(Attachment { id: id.into(), tenant: tenant.into(), ip, host_veth, netns: netns_name(id) })
    }

    fn plumb(&self, att: &Attachment, peers: &[Ipv4Addr], pid: i32) -> Result<(), NetError> {
        let (v, ns, br, gw) = (&att.host_veth, &att.netns, &self.cfg.bridge, self.cfg.gateway());
        let what = format!("attach {}", att.id);
        // Filter elements first: the port is filtered from its first frame.
        let pairs = nft::pair_elements(att.ip, peers);
        cmd::nft(&nft::add_elements(&self.cfg.nft_table, &pairs, &nft::port_elements(att)), &what)?;
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
        tracing::debug!(id, elapsed_us = start.elapsed().as_micros() as u64, "detached");
        Ok(())
    }

    fn detach_locked(&self, atts: &mut BTreeMap<String, Attachment>, id: &str) -> Result<(), NetError> {
        let what = format!("detach {id}");
        if let Some(att) = atts.get(id) {
            let peers: Vec<Ipv4Addr> =
                atts.values().filter(|a| a.tenant == att.tenant && a.id != id).map(|a| a.ip).collect();
            let pairs = nft::pair_elements(att.ip, &peers);
            cmd::nft(&nft::remove_elements(&self.cfg.nft_table, &pairs, &nft::port_elements(att)), &what)?;
        }
        let veth = atts.get(id).map(|a| a.host_veth.clone()).unwrap_or_else(|| veth_name(id));
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
        state::remove(&self.cfg.state_dir, id)?;
        atts.remove(id);
        Ok(())
    }

    /// After a crash: removes every container the agent owns whose id is not
    /// in `keep` (recorded allocations, and veths on the bridge carrying the
    /// agent's alias), with its veth, netns name, nftables elements and
    /// record. Returns the ids removed, sorted.
    pub fn reconcile(&self, keep: &[String]) -> Result<Vec<String>, NetError> {
        let mut atts = self.lock();
        let mut gone: Vec<String> = atts.keys().filter(|id| !keep.contains(id)).cloned().collect();
        for id in self.bridge_port_ids()? {
            if !keep.contains(&id) && !gone.contains(&id) && check_name("id", &id, MAX_ID_LEN).is_ok() {
                gone.push(id);
            }
        }
        gone.sort();
        for id in &gone {
            self.detach_locked(&mut atts, id)?;
        }
        Ok(gone)
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
            .filter_map(|l| l.get("ifalias")?.as_str()?.strip_prefix(ALIAS_PREFIX).map(str::to_string))
            .collect())
    }

    /// Removes everything: every attachment (as `reconcile(&[])`), both
    /// nftables tables and the bridge. For agent shutdown and test cleanup.
    /// `ip_forward` is left on: other software on the host may rely on it.
    pub fn teardown(self) -> Result<(), NetError> {
        self.reconcile(&[])?;
        cmd::nft(&nft::delete_tables(&self.cfg.nft_table), "teardown nft tables")?;
        let br = &self.cfg.bridge;
        if exists(format!("/sys/class/net/{br}")) {
            cmd::ip_batch(&format!("link del dev {br}\n"), &format!("teardown bridge {br}"))?;
        }
        Ok(())
    }

    /// (rx_bytes, tx_bytes) from the container's point of view, read from
    /// the host veth's statistics (container rx = host tx).
    pub fn counters(&self, att: &Attachment) -> Result<(u64, u64), NetError> {
        let read = |name: &str| -> Result<u64, NetError> {
            let path = PathBuf::from(format!("/sys/class/net/{}/statistics/{name}", att.host_veth));
            let text = std::fs::read_to_string(&path).map_err(|source| NetError::Io {
                what: format!("read counters of {}", att.id),
                path: path.clone(),
                source,
            })?;
            text.trim().parse().map_err(|_| NetError::Io {
                what: format!("parse counters of {}", att.id),
                path,
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, text.trim().to_string()),
            })
        };
        Ok((read("tx_bytes")?, read("rx_bytes")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_are_deterministic_and_short() {
        assert_eq!(veth_name("abc"), veth_name("abc"));
        assert_ne!(veth_name("abc"), veth_name("abd"));
        assert_eq!(veth_name("x").len(), 12);
        assert!(veth_name("x").starts_with("zv"));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("id", "c1-abc_2.x", 64).is_ok());
        for bad in ["", "-x", ".x", "a b", "a/b", "a;b", "a\"b"] {
            assert!(check_name("id", bad, 64).is_err(), "{bad:?}");
        }
        assert!(check_name("id", &"a".repeat(65), 64).is_err());
    }

    #[test]
    fn resolv_conf_is_parsed() {
        let text = "# x\nnameserver 10.255.255.53\nnameserver 127.0.0.53\nnameserver ::1\nsearch lan\n";
        assert_eq!(resolv_conf_nameservers(text), vec![Ipv4Addr::new(10, 255, 255, 53)]);
    }

    #[test]
    fn connected_subnets_are_read_from_proc_net_route() {
        let text = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            zn0\t00005A64\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
            ppp0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(connected_subnets(text, "zn0"), vec!["192.0.2.0/24".parse::<Ipv4Net>().unwrap()]);
    }

    #[test]
    fn dns_exception_comes_before_the_blocked_drop() {
        let mut cfg = NetConfig::default_for("/nonexistent");
        cfg.dns_allow = vec![Ipv4Addr::new(10, 1, 2, 3)];
        let rules = nft::ruleset(&cfg, &[]);
        let dns = rules.find("ip daddr @dns meta l4proto { tcp, udp } th dport 53 accept\n    iifname \"zn0\" ip daddr @blocked").expect("dns rule right before blocked drop");
        assert!(dns > rules.find("chain forward").unwrap());
        assert!(rules.contains("elements = { 10.1.2.3 }"));
        assert!(rules.contains("masquerade"));
    }
}
