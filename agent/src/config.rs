//! `zennet.toml`, the agent's configuration: its schema (every key has a
//! default; `agent/zennet.toml` documents each one), the `zennet.<section>.<key>=<value>`
//! kernel command line overrides, and the rule that an invalid configuration
//! is refused with the key, the value and the reason while the last valid one
//! stays in force. How `run` applies it, and where D-Bus changes come in:
//! `cli/layers.rs`.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The documented default configuration (also the schema's reference).
pub const DOCUMENTED: &str = include_str!("../zennet.toml");

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub agent: Agent,
    pub chain: Chain,
    pub market: Market,
    pub limits: Limits,
    pub calibration: Calibration,
    pub metrics: Metrics,
    /// `[os]`: the appliance's own settings (host name; read by its rcS), not the agent's.
    pub os: toml::Table,
    /// `[network]`: the appliance's DHCP interface (read by its rcS), not the agent's.
    pub network: toml::Table,
}

/// `[agent]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Agent {
    pub state_dir: PathBuf,
    pub log_level: String,
    pub log_file: String,
    pub log_max_bytes: u64,
    /// Extra arguments the appliance's launcher (zennet-agent-run) adds to `run`; `run` itself ignores it.
    pub extra_args: String,
}

impl Default for Agent {
    fn default() -> Self {
        Agent { state_dir: "/var/lib/zennet".into(), log_level: "info".into(), log_file: String::new(), log_max_bytes: 16 << 20, extra_args: String::new() }
    }
}

/// `[chain]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Chain {
    pub rpc: String,
}

impl Default for Chain {
    fn default() -> Self {
        Chain { rpc: "http://127.0.0.1:8645".into() }
    }
}

/// `[market]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Market {
    pub accept_work: bool,
    pub price_per_second: u64,
    pub max_contracts: u32,
    pub min_interval_ms: u32,
    pub exposure_bound: u64,
}

impl Default for Market {
    fn default() -> Self {
        Market { accept_work: true, price_per_second: 1_000, max_contracts: 64, min_interval_ms: 500, exposure_bound: 100 * zennet_protocol::Amount::BASE_PER_XEN }
    }
}

/// `[limits]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_memory_mib: u64,
    pub max_disk_mib: u64,
    pub max_cpu_millicores: u32,
    pub network: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_memory_mib: 4096, max_disk_mib: 8192, max_cpu_millicores: 0, network: true }
    }
}

/// `[calibration]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Calibration {
    pub max_age_hours: u64,
    pub quick: bool,
    /// The machine's network capacity, Mbit/s (0: the default route's
    /// interface speed, else 1000).
    pub network_mbps: u64,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration { max_age_hours: 168, quick: false, network_mbps: 0 }
    }
}

/// `[metrics]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    pub listen: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics { listen: "127.0.0.1:9464".into() }
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("{source_name}: {reason}")]
    Syntax { source_name: String, reason: String },
    #[error("{source_name}: key `{key}` = {value}: {reason}")]
    Invalid { source_name: String, key: String, value: String, reason: String },
}

impl Config {
    /// Parses TOML text (after `overrides` are applied) and validates it.
    /// `source_name` names the origin in errors (a path, or "kernel command line").
    pub fn parse(text: &str, source_name: &str, overrides: &[(String, toml::Value)]) -> Result<Config, ConfigError> {
        let syntax = |reason: String| ConfigError::Syntax { source_name: source_name.into(), reason };
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| syntax(e.message().to_string() + &line_of(text, e.span())))?;
        for (key, value) in overrides {
            let (section, k) = key.split_once('.').ok_or_else(|| syntax(format!("override `zennet.{key}` must be zennet.<section>.<key>")))?;
            let sec = table.entry(section).or_insert_with(|| toml::Value::Table(Default::default()));
            let Some(sec) = sec.as_table_mut() else { return Err(syntax(format!("`{section}` is not a section"))) };
            sec.insert(k.to_string(), value.clone());
        }
        // Re-serialised so that serde's error span points at a `key = value` line.
        let merged = toml::to_string(&table).map_err(|e| syntax(e.to_string()))?;
        let cfg: Config = toml::from_str(&merged).map_err(|e: toml::de::Error| {
            let reason = e.message().trim().to_string();
            match e.span().and_then(|s| key_at(&merged, s.start)) {
                Some((key, value)) => ConfigError::Invalid { source_name: source_name.into(), key, value, reason },
                None => syntax(reason),
            }
        })?;
        cfg.validate().map_err(|(key, value, reason)| ConfigError::Invalid { source_name: source_name.into(), key: key.into(), value, reason })?;
        Ok(cfg)
    }

    /// Checks what types cannot: ranges, formats, addresses.
    fn validate(&self) -> Result<(), (&'static str, String, String)> {
        let levels = ["error", "warn", "info", "debug", "trace"];
        if !levels.contains(&self.agent.log_level.as_str()) {
            return Err(("agent.log_level", format!("{:?}", self.agent.log_level), format!("must be one of {levels:?}")));
        }
        if !self.agent.state_dir.is_absolute() {
            return Err(("agent.state_dir", format!("{:?}", self.agent.state_dir), "must be an absolute path".into()));
        }
        if !self.agent.log_file.is_empty() && !Path::new(&self.agent.log_file).is_absolute() {
            return Err(("agent.log_file", format!("{:?}", self.agent.log_file), "must be empty or an absolute path".into()));
        }
        if self.agent.log_max_bytes < 4096 {
            return Err(("agent.log_max_bytes", self.agent.log_max_bytes.to_string(), "at least 4096".into()));
        }
        if !self.chain.rpc.is_empty() && !self.chain.rpc.starts_with("http://") {
            return Err(("chain.rpc", format!("{:?}", self.chain.rpc), "must be empty (no market) or an http:// URL".into()));
        }
        if self.market.price_per_second == 0 {
            return Err(("market.price_per_second", "0".into(), "a machine-second must cost at least 1 base unit".into()));
        }
        let (lo, hi) = zennet_protocol::market::INTERVAL_MS_RANGE;
        if !(lo..=hi).contains(&self.market.min_interval_ms) {
            return Err(("market.min_interval_ms", self.market.min_interval_ms.to_string(), format!("must be {lo}..={hi}")));
        }
        if self.market.max_contracts == 0 {
            return Err(("market.max_contracts", "0".into(), "must be above zero (market.accept_work = false stops selling)".into()));
        }
        if self.market.exposure_bound == 0 {
            return Err(("market.exposure_bound", "0".into(), "must be above zero".into()));
        }
        for (k, v) in [("limits.max_memory_mib", self.limits.max_memory_mib), ("limits.max_disk_mib", self.limits.max_disk_mib)] {
            if v == 0 {
                return Err((k, "0".into(), "must be above zero".into()));
            }
        }
        let max_mbps = crate::calibrate::kernels::MAX_BYTES_PER_S / 125_000;
        if self.calibration.network_mbps > max_mbps {
            return Err(("calibration.network_mbps", self.calibration.network_mbps.to_string(), format!("must be 0 (detect) ..={max_mbps}")));
        }
        if !self.metrics.listen.is_empty() && self.metrics.listen.parse::<SocketAddr>().is_err() {
            return Err(("metrics.listen", format!("{:?}", self.metrics.listen), "must be empty (off) or ip:port".into()));
        }
        Ok(())
    }
}

/// ` (line N)` for a byte span of `text`.
fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.map(|s| format!(" (line {})", text[..s.start.min(text.len())].lines().count().max(1))).unwrap_or_default()
}

/// The `section.key` and value on the line of byte `offset` of TOML `text`.
fn key_at(text: &str, offset: usize) -> Option<(String, String)> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    let (k, v) = line.split_once('=')?;
    let section = text[..line_start].lines().rev().find_map(|l| l.trim().strip_prefix('[').and_then(|l| l.strip_suffix(']')));
    let key = match section {
        Some(s) => format!("{s}.{}", k.trim()),
        None => k.trim().to_string(),
    };
    Some((key, v.trim().to_string()))
}

/// `zennet.<section>.<key>=<value>` options of a kernel command line. Values
/// are TOML (`true`, `42`, `"text"`); a bare word is taken as a string.
/// Options without a section (`zennet.data=none`) belong to the OS's boot
/// script and are skipped.
pub fn cmdline_overrides(cmdline: &str) -> Vec<(String, toml::Value)> {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("zennet."))
        .filter_map(|w| w.split_once('='))
        .filter(|(k, _)| k.contains('.'))
        .map(|(k, v)| {
            let value = format!("v = {v}").parse::<toml::Table>().ok().and_then(|mut t| t.remove("v")).unwrap_or_else(|| toml::Value::String(v.to_string()));
            (k.to_string(), value)
        })
        .collect()
}

/// What [`load`] settled on.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// The refusal of the file as it is now, if it was refused.
    pub refused: Option<ConfigError>,
    /// Where the configuration in force came from.
    pub from: &'static str,
}

/// Loads `path` (defaults when missing) with the kernel command line
/// overrides. A valid result is saved as `last_good`; an invalid one is
/// refused and the last valid configuration (or the defaults) stays in force.
pub fn load(path: &Path, cmdline: &str, last_good: &Path) -> Loaded {
    let overrides = cmdline_overrides(cmdline);
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            let refused = ConfigError::Syntax { source_name: path.display().to_string(), reason: format!("cannot read: {e}") };
            return fall_back(last_good, refused);
        }
    };
    match Config::parse(&text, &path.display().to_string(), &overrides) {
        Ok(config) => {
            if let Ok(t) = toml::to_string(&config) {
                let tmp = last_good.with_extension("tmp");
                if std::fs::write(&tmp, t).and_then(|_| std::fs::rename(&tmp, last_good)).is_err() {
                    tracing::warn!(path = %last_good.display(), "cannot save the last valid configuration");
                }
            }
            Loaded { config, refused: None, from: "file" }
        }
        Err(e) => fall_back(last_good, e),
    }
}

fn fall_back(last_good: &Path, refused: ConfigError) -> Loaded {
    let prev = std::fs::read_to_string(last_good).ok().and_then(|t| Config::parse(&t, "last valid configuration", &[]).ok());
    match prev {
        Some(config) => Loaded { config, refused: Some(refused), from: "last valid configuration" },
        None => Loaded { config: Config::default(), refused: Some(refused), from: "defaults" },
    }
}

/// Where the last valid configuration is kept: `<state_dir>/config.last-good.toml`.
pub fn last_good_path(state_dir: &Path) -> PathBuf {
    state_dir.join("config.last-good.toml")
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
