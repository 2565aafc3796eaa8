//! The agent's nftables ruleset, as text for `nft -f -`.
//!
//! Two tables, both named after [`NetConfig::nft_table`] and so never
//! touching anyone else's:
//! - `ip <table>`: `input` (containers reach the host only for replies and
//!   DNS to allowed resolvers), `forward` (container to container only for
//!   pairs of the same tenant; DNS exception before the drop of the blocked
//!   private ranges; nothing unsolicited into containers), `output` (no ICMP
//!   redirects onto the bridge: they would tell a container to bypass the
//!   gateway), `postrouting` (masquerade of the subnet leaving through any
//!   other interface).
//! - `bridge <table>`: on frames entering the bridge from a container port
//!   (set `ifaces`; `meta ibrname` would be simpler but needs
//!   nft_meta_bridge, missing on some kernels), only IPv4 and ARP whose
//!   source address is the one allocated to that port (set `ports`:
//!   anti-spoofing, so the pair filter cannot be fooled); IPv6 and
//!   everything else is dropped.
//!
//! Container ports are also bridge-isolated and containers hold a /32 with a
//! default route via the gateway, so all container-to-container traffic is
//! routed through the host and meets the `forward` chain.

use std::fmt::Write;
use std::net::Ipv4Addr;

use super::{Attachment, NetConfig};

/// Element text of the `pairs` set for every ordered pair of the same-tenant
/// addresses `a` and each of `peers`, both directions.
pub(super) fn pair_elements(a: Ipv4Addr, peers: &[Ipv4Addr]) -> Vec<String> {
    peers
        .iter()
        .flat_map(|p| [format!("{a} . {p}"), format!("{p} . {a}")])
        .collect()
}

/// The bridge-table elements of one attachment: its `ports` element
/// (veth . address) and its `ifaces` element (veth).
pub(super) struct PortElements {
    port: String,
    iface: String,
}

/// The bridge-table elements of one attachment.
pub(super) fn port_elements(att: &Attachment) -> PortElements {
    PortElements {
        port: format!("\"{}\" . {}", att.host_veth, att.ip),
        iface: format!("\"{}\"", att.host_veth),
    }
}

fn elements(list: &[String]) -> String {
    list.join(", ")
}

/// The whole ruleset, replacing any previous version of the agent's two
/// tables in one transaction, with the set elements for `atts` (the
/// persisted attachments) already in place.
pub(super) fn ruleset(cfg: &NetConfig, atts: &[&Attachment]) -> String {
    let t = &cfg.nft_table;
    let br = &cfg.bridge;
    let subnet = cfg.subnet.trunc();
    let mut pairs = Vec::new();
    for (i, a) in atts.iter().enumerate() {
        for b in &atts[i + 1..] {
            if a.tenant == b.tenant {
                pairs.extend(pair_elements(a.ip, &[b.ip]));
            }
        }
    }
    let ports: Vec<String> = atts
        .iter()
        .map(|a| format!("\"{}\" . {}", a.host_veth, a.ip))
        .collect();
    let blocked: Vec<String> = cfg.blocked.iter().map(|n| n.trunc().to_string()).collect();
    let dns: Vec<String> = cfg.dns_allow.iter().map(|a| a.to_string()).collect();
    let set = |name: &str, ty: &str, flags: &str, elems: &[String]| {
        let mut s = format!("  set {name} {{\n    type {ty}\n{flags}");
        if !elems.is_empty() {
            let _ = writeln!(s, "    elements = {{ {} }}", elements(elems));
        }
        s.push_str("  }\n");
        s
    };
    let mut s = String::new();
    // Create-then-delete makes the delete valid whether or not the table
    // exists; the new tables follow in the same transaction.
    let _ = writeln!(s, "table ip {t} {{}}\ndelete table ip {t}");
    let _ = writeln!(s, "table bridge {t} {{}}\ndelete table bridge {t}");
    let _ = writeln!(s, "table ip {t} {{");
    s.push_str(&set("pairs", "ipv4_addr . ipv4_addr", "", &pairs));
    s.push_str(&set(
        "blocked",
        "ipv4_addr",
        "    flags interval\n    auto-merge\n",
        &blocked,
    ));
    s.push_str(&set("dns", "ipv4_addr", "", &dns));
    let _ = write!(
        s,
        r#"  chain input {{
    type filter hook input priority filter; policy accept;
    iifname "{br}" ct state established,related accept
    iifname "{br}" ip daddr @dns meta l4proto {{ tcp, udp }} th dport 53 accept
    iifname "{br}" counter drop
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname "{br}" oifname "{br}" ip saddr . ip daddr @pairs accept
    iifname "{br}" oifname "{br}" counter drop
    oifname "{br}" ct state established,related accept
    oifname "{br}" counter drop
    iifname "{br}" ip saddr != {subnet} counter drop
    iifname "{br}" ip daddr @dns meta l4proto {{ tcp, udp }} th dport 53 accept
    iifname "{br}" ip daddr @blocked counter drop
  }}
  chain output {{
    type filter hook output priority filter; policy accept;
    oifname "{br}" icmp type redirect drop
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {subnet} oifname != "{br}" masquerade
  }}
}}
"#
    );
    let _ = writeln!(s, "table bridge {t} {{");
    s.push_str(&set("ports", "ifname . ipv4_addr", "", &ports));
    let ifaces: Vec<String> = atts
        .iter()
        .map(|a| format!("\"{}\"", a.host_veth))
        .collect();
    s.push_str(&set("ifaces", "ifname", "", &ifaces));
    let _ = write!(
        s,
        r#"  chain prerouting {{
    type filter hook prerouting priority filter; policy accept;
    iifname @ifaces ether type ip iifname . ip saddr @ports accept
    iifname @ifaces ether type arp iifname . arp saddr ip @ports accept
    iifname @ifaces counter drop
  }}
}}
"#
    );
    s
}

/// Script removing both tables; valid whether or not they exist.
pub(super) fn delete_tables(table: &str) -> String {
    format!(
        "table ip {table} {{}}\ndelete table ip {table}\ntable bridge {table} {{}}\ndelete table bridge {table}\n"
    )
}

/// Script adding the elements of one attachment.
pub(super) fn add_elements(table: &str, pairs: &[String], port: &PortElements) -> String {
    let mut s = String::new();
    if !pairs.is_empty() {
        let _ = writeln!(s, "add element ip {table} pairs {{ {} }}", elements(pairs));
    }
    let _ = writeln!(s, "add element bridge {table} ports {{ {} }}", port.port);
    let _ = writeln!(s, "add element bridge {table} ifaces {{ {} }}", port.iface);
    s
}

/// Script removing the elements of one attachment. Each delete is preceded
/// by an add of the same elements, so it succeeds whether or not they were
/// there (nft 1.0.6 has no `destroy`), all in one transaction.
pub(super) fn remove_elements(table: &str, pairs: &[String], port: &PortElements) -> String {
    let mut s = add_elements(table, pairs, port);
    if !pairs.is_empty() {
        let _ = writeln!(
            s,
            "delete element ip {table} pairs {{ {} }}",
            elements(pairs)
        );
    }
    let _ = writeln!(s, "delete element bridge {table} ports {{ {} }}", port.port);
    let _ = writeln!(
        s,
        "delete element bridge {table} ifaces {{ {} }}",
        port.iface
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn dns_exception_comes_before_the_blocked_drop() {
        let mut cfg = NetConfig::default_for("/nonexistent");
        cfg.dns_allow = vec![Ipv4Addr::new(10, 1, 2, 3)];
        let rules = ruleset(&cfg, &[]);
        let dns = rules.find("ip daddr @dns meta l4proto { tcp, udp } th dport 53 accept\n    iifname \"zn0\" ip daddr @blocked").expect("dns rule right before blocked drop");
        assert!(dns > rules.find("chain forward").unwrap());
        assert!(rules.contains("elements = { 10.1.2.3 }"));
        assert!(rules.contains("masquerade"));
    }
}
