//! Configuration of the container network, and the names derived from a
//! container id.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use super::{Ipv4Net, NetError};

/// Configuration of the agent's container network.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
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
    [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "127.0.0.0/8",
        "100.64.0.0/10",
    ]
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
        let (Some(dst), Some(flags), Some(mask)) = (hex(f[1]), hex(f[3]), hex(f[7])) else {
            continue;
        };
        // The file holds addresses in the kernel's (little-endian) byte order.
        let (dst, mask) = (
            Ipv4Addr::from(dst.swap_bytes()),
            u32::from(Ipv4Addr::from(mask.swap_bytes())),
        );
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

    pub(super) fn validate(&self) -> Result<(), NetError> {
        check_name("bridge", &self.bridge, 15)?;
        check_name("nft table", &self.nft_table, 64)?;
        if self.subnet.prefix_len() > 29 {
            return Err(NetError::Config(format!(
                "subnet {} is smaller than a /29",
                self.subnet
            )));
        }
        Ok(())
    }
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

pub(super) fn check_name(kind: &'static str, value: &str, max: usize) -> Result<(), NetError> {
    let bad = |reason| {
        Err(NetError::InvalidName {
            kind,
            value: value.to_string(),
            reason,
        })
    };
    if value.is_empty() {
        return bad("empty");
    }
    if value.len() > max {
        return bad("too long");
    }
    if value.starts_with(['.', '-']) {
        return bad("starts with '.' or '-'");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return bad("only ASCII letters, digits, '_', '-' and '.' are allowed");
    }
    Ok(())
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
        let text =
            "# x\nnameserver 10.255.255.53\nnameserver 127.0.0.53\nnameserver ::1\nsearch lan\n";
        assert_eq!(
            resolv_conf_nameservers(text),
            vec![Ipv4Addr::new(10, 255, 255, 53)]
        );
    }

    #[test]
    fn connected_subnets_are_read_from_proc_net_route() {
        let text =
            "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            zn0\t00005A64\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
            ppp0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(
            connected_subnets(text, "zn0"),
            vec!["192.0.2.0/24".parse::<Ipv4Net>().unwrap()]
        );
    }
}
