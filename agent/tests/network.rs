//! Container networking against the real kernel (run as root).
//!
//! Stand-in containers are `unshare --user --map-root-user --net` processes:
//! a netns owned by a new user namespace, as libcontainer makes. Every test
//! uses its own bridge `znt<n>`, subnet 100.(90+n).0.0/24, nft tables
//! `znt<n>` and state dir, so tests run in parallel without touching a real
//! agent. Traffic only goes to addresses inside netns the test made (stand-
//! ins, a fake LAN host, a fake internet host) or to addresses the test put
//! on the host itself; every such thing is removed by a Drop guard.

mod netsupport;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use netsupport::*;
use zennet_agent::containers::network::{veth_name, NetError, Network};

/// Attach configures lo, eth0 (/32) and the default route inside a userns-
/// owned netns, names the netns, puts an isolated veth on the bridge,
/// persists the allocation; errors name what failed; setup is idempotent.
#[test]
fn attach_gives_eth0_with_address_and_default_route() {
    let env = Env::new(1, vec![]);
    let mac = || std::fs::read_to_string("/sys/class/net/znt1/address").unwrap();
    let mac_before = mac();
    let c = StandIn::new();
    let att = env
        .net()
        .attach("t1-a", "tenant1", c.pid())
        .expect("attach");
    assert_eq!(
        mac(),
        mac_before,
        "the gateway's MAC does not change with ports"
    );
    assert_eq!(att.netns, "zn-t1-a");
    assert!(env.cfg.subnet.contains(&att.ip) && att.ip != env.gateway());

    let addr = String::from_utf8_lossy(&c.sh("ip -4 -o addr show dev eth0").stdout).into_owned();
    assert!(
        addr.contains(&format!("inet {}/32", att.ip)),
        "eth0: {addr}"
    );
    let route = String::from_utf8_lossy(&c.sh("ip route show default").stdout).into_owned();
    assert!(
        route.contains(&format!("default via {} dev eth0", env.gateway())),
        "route: {route}"
    );
    let v6 = String::from_utf8_lossy(&c.sh("ip -6 -o addr show dev eth0").stdout).into_owned();
    assert!(v6.trim().is_empty(), "no IPv6 on eth0: {v6}");
    // Even a container that configures IPv6 itself gets no IPv6 through the
    // bridge: the test puts fd00:91::1 on the bridge, the container can't
    // ping it, and the bridge table's drop counter moved.
    assert!(sh("ip -6 addr add fd00:91::1/64 dev znt1 nodad")
        .status
        .success());
    assert!(c
        .sh("ip -6 addr add fd00:91::2/64 dev eth0 nodad")
        .status
        .success());
    let ping6 = c.sh("busybox ping -6 -c 2 -W 1 fd00:91::1");
    assert!(
        !ping6.status.success(),
        "IPv6 from a container must be dropped"
    );
    let chain =
        String::from_utf8_lossy(&sh("nft list chain bridge znt1 prerouting").stdout).into_owned();
    let dropped = chain
        .lines()
        .find(|l| l.contains("iifname @ifaces counter packets"))
        .and_then(|l| {
            l.split("packets ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        });
    assert!(dropped.unwrap_or(0) > 0, "bridge drop counter: {chain}");
    let lo = String::from_utf8_lossy(&c.sh("ip -o link show dev lo").stdout).into_owned();
    assert!(lo.contains("UP"), "lo: {lo}");
    // The netns name points at the stand-in's netns.
    let named = sh(&format!(
        "ip netns exec {} ip -4 -o addr show dev eth0",
        att.netns
    ));
    assert!(String::from_utf8_lossy(&named.stdout).contains(&att.ip.to_string()));
    // Host end: on the bridge, isolated, carrying the id.
    let link =
        String::from_utf8_lossy(&sh(&format!("ip -d link show dev {}", att.host_veth)).stdout)
            .into_owned();
    assert!(
        link.contains("master znt1")
            && link.contains("isolated on")
            && link.contains("zennet:t1-a"),
        "{link}"
    );
    assert!(
        env.cfg.state_dir.join("t1-a.json").exists(),
        "allocation persisted"
    );

    // Errors name what failed.
    let again = env.net().attach("t1-a", "tenant1", c.pid()).unwrap_err();
    assert!(matches!(again, NetError::AlreadyAttached { .. }), "{again}");
    let bad = env.net().attach("t1 a;rm", "tenant1", c.pid()).unwrap_err();
    assert!(
        matches!(bad, NetError::InvalidName { kind: "id", .. }),
        "{bad}"
    );
    let dead = env
        .net()
        .attach("t1-dead", "tenant1", 0x3fff_fff0)
        .unwrap_err();
    assert!(matches!(dead, NetError::NoProcess { .. }), "{dead}");
    assert!(!exists("/run/netns/zn-t1-dead"));
    let host = env
        .net()
        .attach("t1-host", "tenant1", std::process::id() as i32)
        .unwrap_err();
    assert!(matches!(host, NetError::SameNetns { .. }), "{host}");
    assert!(!exists("/run/netns/zn-t1-host"));

    // A stale netns name and veth of an id (e.g. a lost record) do not
    // block a new attach of that id.
    let c2 = StandIn::new();
    let stale = veth_name("t1-b");
    let made = sh(&format!(
        "ip netns attach zn-t1-b {} && ip link add {stale} type veth peer name {stale}p",
        c2.pid()
    ));
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let b = env
        .net()
        .attach("t1-b", "tenant1", c2.pid())
        .expect("attach over stale leftovers");
    assert!(
        String::from_utf8_lossy(&c2.sh("ip -4 -o addr show dev eth0").stdout)
            .contains(&b.ip.to_string())
    );
    env.net().detach("t1-b").unwrap();

    // Setup is idempotent while containers are attached.
    let again = Network::setup(env.cfg.clone()).expect("second setup");
    assert_eq!(again.attachments(), vec![att.clone()]);
    assert!(env.set("bridge", "ports").contains(&att.host_veth));
}

/// Measures attach and detach over ten stand-ins (printed with --nocapture).
#[test]
fn attach_and_detach_timing() {
    let env = Env::new(2, vec![]);
    let cs: Vec<StandIn> = (0..10).map(|_| StandIn::new()).collect();
    let mut attach = Vec::new();
    for (i, c) in cs.iter().enumerate() {
        let t = Instant::now();
        env.net()
            .attach(
                &format!("t2-c{i}"),
                if i % 2 == 0 { "even" } else { "odd" },
                c.pid(),
            )
            .unwrap();
        attach.push(t.elapsed());
    }
    let mut detach = Vec::new();
    for i in 0..cs.len() {
        let t = Instant::now();
        env.net().detach(&format!("t2-c{i}")).unwrap();
        detach.push(t.elapsed());
    }
    let stats = |v: &[Duration]| {
        let ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        let avg = ms.iter().sum::<f64>() / ms.len() as f64;
        (
            ms.iter().cloned().fold(f64::MAX, f64::min),
            avg,
            ms.iter().cloned().fold(0.0, f64::max),
        )
    };
    let (a, d) = (stats(&attach), stats(&detach));
    eprintln!("attach ms: min {:.2} avg {:.2} max {:.2}", a.0, a.1, a.2);
    eprintln!("detach ms: min {:.2} avg {:.2} max {:.2}", d.0, d.1, d.2);
    assert!(a.1 < 500.0 && d.1 < 500.0, "attach/detach far too slow");
}

/// Same tenant: TCP both ways. Other tenant: no TCP either way, even with a
/// spoofed source address. Counters move with traffic.
#[test]
fn same_tenant_reach_each_other_other_tenants_cannot() {
    let env = Env::new(3, vec![]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let (a1, a2, b1) = (StandIn::new(), StandIn::new(), StandIn::new());
    let att_a1 = env.net().attach("t3-a1", "alice", a1.pid()).unwrap();
    let att_a2 = env.net().attach("t3-a2", "alice", a2.pid()).unwrap();
    let att_b1 = env.net().attach("t3-b1", "bob", b1.pid()).unwrap();
    let _s_a1 = httpd(&a1.cmd(""), att_a1.ip, 8080, dir.path(), &log);
    let _s_a2 = httpd(&a2.cmd(""), att_a2.ip, 8080, dir.path(), &log);
    let _s_b1 = httpd(&b1.cmd(""), att_b1.ip, 8080, dir.path(), &log);
    let before = env.net().counters(&att_a1).unwrap();

    assert!(
        got_ok(&a1.sh(&fetch_cmd(att_a2.ip, 8080))),
        "a1 -> a2 (same tenant) must work"
    );
    assert!(
        got_ok(&a2.sh(&fetch_cmd(att_a1.ip, 8080))),
        "a2 -> a1 (same tenant) must work"
    );
    assert!(
        got_ok(&b1.sh(&fetch_cmd(att_b1.ip, 8080))),
        "b1's own server works"
    );
    assert!(
        !got_ok(&a1.sh(&fetch_cmd(att_b1.ip, 8080))),
        "a1 -> b1 (other tenant) must fail"
    );
    assert!(
        !got_ok(&b1.sh(&fetch_cmd(att_a2.ip, 8080))),
        "b1 -> a2 (other tenant) must fail"
    );

    let after = env.net().counters(&att_a1).unwrap();
    assert!(
        after.0 > before.0 && after.1 > before.1,
        "counters moved: {before:?} -> {after:?}"
    );

    // b1 claims a2's address as its source: dropped at the bridge.
    let spoof = b1.sh(&format!(
        "sh -c 'ip addr add {a2}/32 dev eth0 && ip route replace default via {gw} dev eth0 src {a2}'",
        a2 = att_a2.ip,
        gw = env.gateway()
    ));
    assert!(
        spoof.status.success(),
        "{}",
        String::from_utf8_lossy(&spoof.stderr)
    );
    assert!(
        !got_ok(&b1.sh(&fetch_cmd(att_a1.ip, 8080))),
        "spoofed b1 -> a1 must fail"
    );

    // After a2 leaves, its pairs are gone.
    env.net().detach("t3-a2").unwrap();
    assert!(!env.set("ip", "pairs").contains(&att_a2.ip.to_string()));
}

/// The container reaches neither the host (bridge address, another host
/// address) nor a LAN host, except an allowed resolver on port 53; it
/// reaches an "internet" host, which sees the host's address (NAT); nothing
/// from outside reaches the container unsolicited.
#[test]
fn host_and_lan_unreachable_dns_allowed_internet_natted() {
    let lan_host: Ipv4Addr = "192.168.214.1".parse().unwrap();
    let lan_peer: Ipv4Addr = "192.168.214.2".parse().unwrap();
    let inet_host: Ipv4Addr = "198.18.4.1".parse().unwrap();
    let inet_peer: Ipv4Addr = "198.18.4.2".parse().unwrap();
    let env = Env::new(4, vec![lan_peer]);
    let lan = Peer::new("znt-lan4", "ztl4", lan_host, lan_peer);
    let inet = Peer::new("znt-inet4", "zti4", inet_host, inet_peer);
    let dir = tempfile::tempdir().unwrap();
    let (host_log, lan_log, inet_log) = (
        dir.path().join("host.log"),
        dir.path().join("lan.log"),
        dir.path().join("inet.log"),
    );
    let gw = env.gateway();
    let _h1 = httpd("", gw, 8080, dir.path(), &host_log);
    let _h2 = httpd("", lan_host, 8081, dir.path(), &host_log);
    let _l1 = httpd(&lan.prefix(), lan_peer, 8080, dir.path(), &lan_log);
    let _l2 = httpd(&lan.prefix(), lan_peer, 53, dir.path(), &lan_log);
    let _i1 = httpd(&inet.prefix(), inet_peer, 8080, dir.path(), &inet_log);

    let c = StandIn::new();
    let att = env.net().attach("t4-c", "carol", c.pid()).unwrap();

    // Controls: every listener answers the host itself.
    assert!(
        got_ok(&sh(&fetch_cmd(gw, 8080))),
        "host -> its bridge address"
    );
    assert!(
        got_ok(&sh(&fetch_cmd(lan_host, 8081))),
        "host -> its LAN address"
    );
    assert!(got_ok(&sh(&fetch_cmd(lan_peer, 8080))), "host -> LAN host");
    assert!(
        got_ok(&sh(&fetch_cmd(inet_peer, 8080))),
        "host -> internet host"
    );

    assert!(
        !got_ok(&c.sh(&fetch_cmd(gw, 8080))),
        "container -> host bridge address must fail"
    );
    assert!(
        !got_ok(&c.sh(&fetch_cmd(lan_host, 8081))),
        "container -> host's other address must fail"
    );
    assert!(
        !got_ok(&c.sh(&fetch_cmd(lan_peer, 8080))),
        "container -> LAN host must fail"
    );
    assert!(
        got_ok(&c.sh(&fetch_cmd(lan_peer, 53))),
        "container -> allowed resolver port 53 must work"
    );

    std::fs::write(&inet_log, "").unwrap();
    assert!(
        got_ok(&c.sh(&fetch_cmd(inet_peer, 8080))),
        "container -> internet host must work"
    );
    let seen = std::fs::read_to_string(&inet_log).unwrap();
    assert!(
        seen.contains(&inet_host.to_string()),
        "internet host sees the host's address: {seen}"
    );
    assert!(
        !seen.contains(&att.ip.to_string()),
        "container address leaked: {seen}"
    );

    // Nothing unsolicited goes into the container from outside.
    let _c1 = httpd(
        &c.cmd(""),
        att.ip,
        8080,
        dir.path(),
        &dir.path().join("c.log"),
    );
    let from_inet = sh(&format!(
        "{} ip route add {} via {inet_host}",
        inet.prefix(),
        att.ip
    ));
    assert!(from_inet.status.success());
    assert!(
        !got_ok(&sh(&format!(
            "{} {}",
            inet.prefix(),
            fetch_cmd(att.ip, 8080)
        ))),
        "internet -> container must fail"
    );
}

/// Detach is idempotent and removes veth, netns name, record and set
/// elements; the address is reused; teardown removes bridge, tables and the
/// remaining attachments.
#[test]
fn detach_and_teardown_leave_nothing() {
    let mut env = Env::new(5, vec![]);
    let (c1, c2) = (StandIn::new(), StandIn::new());
    let a1 = env.net().attach("t5-a1", "dave", c1.pid()).unwrap();
    let a2 = env.net().attach("t5-a2", "dave", c2.pid()).unwrap();
    assert!(env
        .set("ip", "pairs")
        .contains(&format!("{} . {}", a1.ip, a2.ip)));

    env.net().detach("t5-a1").unwrap();
    env.net().detach("t5-a1").expect("detach is idempotent");
    env.net()
        .detach("t5-never")
        .expect("detach of an unknown id is a no-op");
    assert!(!exists(&format!("/sys/class/net/{}", a1.host_veth)));
    assert!(!exists("/run/netns/zn-t5-a1"));
    assert!(!env.cfg.state_dir.join("t5-a1.json").exists());
    assert!(!env.set("ip", "pairs").contains(&a1.ip.to_string()));
    assert!(!env.set("bridge", "ports").contains(&a1.host_veth));
    assert!(env.set("bridge", "ports").contains(&a2.host_veth));
    let links = String::from_utf8_lossy(&c1.sh("ip -o link show").stdout).into_owned();
    assert!(
        !links.contains("eth0"),
        "eth0 gone from the stand-in: {links}"
    );

    // A freed address is not handed out again at once.
    let a3 = env.net().attach("t5-a3", "dave", c1.pid()).unwrap();
    assert!(a3.ip != a1.ip && a3.ip != a2.ip);

    // Someone removed the agent's tables by hand: detach still cleans up.
    assert!(sh("nft delete table bridge znt5").status.success());
    env.net().detach("t5-a3").expect("detach without tables");
    assert!(!exists(&format!("/sys/class/net/{}", a3.host_veth)) && !exists("/run/netns/zn-t5-a3"));
    assert!(!env.cfg.state_dir.join("t5-a3.json").exists());

    env.net.take().unwrap().teardown().expect("teardown");
    for v in [&a2.host_veth, &a3.host_veth] {
        assert!(!exists(&format!("/sys/class/net/{v}")), "{v} left");
    }
    assert!(!exists("/sys/class/net/znt5"));
    assert!(!exists("/run/netns/zn-t5-a2") && !exists("/run/netns/zn-t5-a3"));
    assert!(!sh("nft list table ip znt5").status.success());
    assert!(!sh("nft list table bridge znt5").status.success());
    let left: Vec<_> = std::fs::read_dir(&env.cfg.state_dir).unwrap().collect();
    assert!(left.is_empty(), "records left: {left:?}");
}

/// After a simulated crash (Network dropped without detaching), a fresh
/// setup restores the set elements from the records, and reconcile removes
/// every container not kept, including a veth that was never recorded.
#[test]
fn reconcile_after_crash_removes_everything_not_kept() {
    let mut env = Env::new(6, vec![]);
    let (c1, c2, c3) = (StandIn::new(), StandIn::new(), StandIn::new());
    let a1 = env.net().attach("t6-a1", "erin", c1.pid()).unwrap();
    let a2 = env.net().attach("t6-a2", "erin", c2.pid()).unwrap();
    let b1 = env.net().attach("t6-b1", "frank", c3.pid()).unwrap();
    // A veth the agent made but never recorded (crash in the middle).
    let ghost = veth_name("t6-ghost");
    let made = sh(&format!(
        "ip link add {ghost} type veth peer name {ghost}p && ip link set {ghost} alias zennet:t6-ghost master znt6"
    ));
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    // Crash: the Network goes away without detaching anything.
    drop(env.net.take());
    env.net = Some(Network::setup(env.cfg.clone()).expect("setup after crash"));
    assert_eq!(env.net().attachments().len(), 3);
    assert!(
        env.set("ip", "pairs")
            .contains(&format!("{} . {}", a1.ip, a2.ip)),
        "pairs restored"
    );

    let removed = env.net().reconcile(&["t6-a1".to_string()]).unwrap();
    assert_eq!(removed, vec!["t6-a2", "t6-b1", "t6-ghost"]);
    for v in [&a2.host_veth, &b1.host_veth, &ghost] {
        assert!(!exists(&format!("/sys/class/net/{v}")), "{v} left");
    }
    assert!(!exists("/run/netns/zn-t6-a2") && !exists("/run/netns/zn-t6-b1"));
    assert!(exists(&format!("/sys/class/net/{}", a1.host_veth)) && exists("/run/netns/zn-t6-a1"));
    assert!(env.set("bridge", "ports").contains(&a1.host_veth));
    assert!(!env.set("bridge", "ports").contains(&b1.host_veth));
    assert!(!env.set("ip", "pairs").contains(&a2.ip.to_string()));

    assert_eq!(env.net().reconcile(&[]).unwrap(), vec!["t6-a1"]);
    assert!(!exists(&format!("/sys/class/net/{}", a1.host_veth)) && !exists("/run/netns/zn-t6-a1"));
    assert!(env.net().attachments().is_empty());
    assert!(std::fs::read_dir(&env.cfg.state_dir)
        .unwrap()
        .next()
        .is_none());
    assert!(env.net().reconcile(&[]).unwrap().is_empty());
}
