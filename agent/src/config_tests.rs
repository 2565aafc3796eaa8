//! Tests of `zennet.toml` parsing, overrides and the last-valid fallback.

use super::*;

fn invalid_key(e: ConfigError) -> String {
    match e {
        ConfigError::Invalid { key, .. } => key,
        other => panic!("expected an invalid key, got {other}"),
    }
}

#[test]
fn the_documented_file_is_the_default_and_covers_every_key() {
    assert_eq!(Config::parse(DOCUMENTED, "zennet.toml", &[]).unwrap(), Config::default());
    let all: toml::Table = toml::to_string(&Config::default()).unwrap().parse().unwrap();
    for (section, keys) in &all {
        for key in keys.as_table().unwrap().keys() {
            assert!(DOCUMENTED.contains(&format!("\n{key} = ")), "{section}.{key} is not documented in zennet.toml");
        }
    }
    assert_eq!(Config::parse("", "empty", &[]).unwrap(), Config::default());
}

#[test]
fn the_appliance_file_is_valid_for_the_agent() {
    let f = include_str!("../../buildroot/board/zennet/rootfs-overlay/etc/zennet/zennet.toml");
    let c = Config::parse(f, "rootfs-overlay/etc/zennet/zennet.toml", &[]).unwrap();
    assert_eq!(c.os.get("hostname").and_then(|v| v.as_str()), Some("zennet"));
    assert_eq!((c.agent.log_level.as_str(), c.chain.rpc.as_str(), c.calibration.max_age_hours), ("warn", "", 0), "quiet until configured");
    assert_eq!((c.market, c.limits), (Market::default(), Limits::default()));
}

#[test]
fn bad_values_name_the_key_value_and_reason() {
    let e = Config::parse("[market]\nprice_per_second = 0\n", "f", &[]).unwrap_err();
    assert!(e.to_string().contains("market.price_per_second") && e.to_string().contains("at least 1"), "{e}");
    assert_eq!(invalid_key(Config::parse("[agent]\nlog_level = \"loud\"\n", "f", &[]).unwrap_err()), "agent.log_level");
    assert_eq!(invalid_key(Config::parse("[metrics]\nlisten = \"nowhere\"\n", "f", &[]).unwrap_err()), "metrics.listen");
    assert_eq!(invalid_key(Config::parse("[market]\nmin_interval_ms = 10\n", "f", &[]).unwrap_err()), "market.min_interval_ms");
    let e = Config::parse("[market]\nprice_per_secnd = 5\n", "f", &[]).unwrap_err();
    assert!(e.to_string().contains("price_per_secnd"), "{e}");
    let e = Config::parse("[market]\nmax_contracts = \"many\"\n", "f", &[]).unwrap_err();
    assert!(e.to_string().contains("max_contracts") && e.to_string().contains("many"), "{e}");
    let e = Config::parse("[market\n", "/etc/zennet/zennet.toml", &[]).unwrap_err();
    assert!(e.to_string().contains("/etc/zennet/zennet.toml") && e.to_string().contains("line 1"), "{e}");
}

#[test]
fn kernel_command_line_overrides_the_file() {
    let o = cmdline_overrides("quiet console=ttyS0 zennet.data=none zennet.market.price_per_second=2500 zennet.market.accept_work=false zennet.chain.rpc=http://10.0.2.2:8645 zennet.os.hostname=zn");
    assert_eq!(o.len(), 4, "zennet.data is the OS's: {o:?}");
    let c = Config::parse("[market]\nprice_per_second = 7\n", "f", &o).unwrap();
    assert_eq!(c.market.price_per_second, 2500);
    assert!(!c.market.accept_work);
    assert_eq!(c.chain.rpc, "http://10.0.2.2:8645");
    let bad = cmdline_overrides("zennet.market.price_per_second=0");
    assert_eq!(invalid_key(Config::parse("", "f", &bad).unwrap_err()), "market.price_per_second");
}

#[test]
fn an_invalid_file_leaves_the_last_valid_one_in_force() {
    let d = tempfile::tempdir().unwrap();
    let (file, good) = (d.path().join("zennet.toml"), last_good_path(d.path()));
    std::fs::write(&file, "[market]\nprice_per_second = 42\n").unwrap();
    let l = load(&file, "", &good);
    assert!(l.refused.is_none());
    assert_eq!(l.config.market.price_per_second, 42);
    std::fs::write(&file, "[market]\nprice_per_second = -1\n").unwrap();
    let l = load(&file, "", &good);
    assert!(l.refused.unwrap().to_string().contains("price_per_second"));
    assert_eq!((l.config.market.price_per_second, l.from), (42, "last valid configuration"));
    // no last valid file: defaults, still refused
    std::fs::remove_file(&good).unwrap();
    let l = load(&file, "", &good);
    assert_eq!((l.config, l.from), (Config::default(), "defaults"));
    // a missing file is the defaults, not an error
    let l = load(&d.path().join("none.toml"), "", &good);
    assert!(l.refused.is_none());
}
