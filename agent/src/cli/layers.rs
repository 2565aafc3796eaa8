//! How `zennet-agent run` settles each setting, lowest layer first:
//! 1. the built-in default (`agent/zennet.toml` documents each);
//! 2. `zennet.toml` (`--config`), a key at a time;
//! 3. the kernel command line's `zennet.<section>.<key>=<value>` options;
//! 4. a flag given to `run` (the launcher's or a developer's explicit choice);
//! 5. what D-Bus calls changed (SetPrice, SetLimits, Pause/Resume/Drain):
//!    kept in the store's `settings` table, in force over every layer above
//!    until changed again over D-Bus.
//!
//! Layers 2 and 3 are merged and validated together by [`crate::config`]; a
//! refused file leaves the last valid configuration in force. This module
//! applies the result to [`RunArgs`] where no flag was given.

use super::RunArgs;
use crate::api::recalibrate::Recalibration;
use crate::config::Config;
use anyhow::{Context, Result};

impl RunArgs {
    /// Loads `--config` (with the kernel command line over it), reports a
    /// refusal, and applies every key whose flag was not given. None without `--config`.
    pub fn load_config(&mut self) -> Option<Config> {
        let p = self.config.clone()?;
        let cmdline = std::fs::read_to_string(&self.kernel_cmdline).unwrap_or_default();
        let loaded = crate::config::load(&p, &cmdline, &crate::config::last_good_path(&self.state_dir));
        if let Some(e) = &loaded.refused {
            eprintln!("zennet-agent: configuration refused: {e}; using the {}", loaded.from);
        }
        self.apply(&loaded.config);
        Some(loaded.config)
    }

    /// Fills what the command line left unset from `c`.
    pub fn apply(&mut self, c: &Config) {
        if c.agent.state_dir != self.state_dir {
            // The state directory holds the last valid configuration itself,
            // so the launcher passes it (zennet-agent-run reads the key).
            eprintln!("zennet-agent: agent.state_dir = {:?} differs from --state-dir {:?}; using --state-dir", c.agent.state_dir, self.state_dir);
        }
        self.max_memory_mib.get_or_insert(c.limits.max_memory_mib);
        self.max_disk_mib.get_or_insert(c.limits.max_disk_mib);
        if self.max_cpu_millicores.is_none() && c.limits.max_cpu_millicores > 0 {
            self.max_cpu_millicores = Some(c.limits.max_cpu_millicores);
        }
        self.no_network |= !c.limits.network;
        if self.rpc.is_none() && !c.chain.rpc.is_empty() {
            self.rpc = Some(c.chain.rpc.clone());
        }
        self.price_per_second.get_or_insert(c.market.price_per_second);
        self.max_contracts.get_or_insert(c.market.max_contracts);
        self.min_interval_ms.get_or_insert(c.market.min_interval_ms);
        self.max_exposure.get_or_insert(c.market.exposure_bound);
        if self.calibrate_max_age.is_none() && c.calibration.max_age_hours > 0 {
            self.calibrate_max_age = Some(c.calibration.max_age_hours.saturating_mul(3600));
        }
        self.calibrate_quick |= c.calibration.quick;
        if self.calibration_network_mbps.is_none() && c.calibration.network_mbps > 0 {
            self.calibration_network_mbps = Some(c.calibration.network_mbps);
        }
        if self.metrics_listen.is_none() {
            self.metrics_listen = Some(c.metrics.listen.clone());
        }
    }

    /// The machine price below SetPrice, base units per second.
    pub fn price(&self) -> u64 {
        self.price_per_second.unwrap_or(1_000)
    }

    /// How Recalibrate calibrates: this binary's `calibrate`, as configured.
    pub fn recalibration(&self) -> Result<Recalibration> {
        let exe = std::env::current_exe().context("locate the agent binary (for Recalibrate)")?;
        Ok(Recalibration { exe, state_dir: self.state_dir.clone(), quick: self.calibrate_quick, runs: self.calibration_runs, seconds: self.calibration_seconds, network_mbps: self.calibration_network_mbps })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let c = Config::parse("[market]\nprice_per_second = 1500\nmax_contracts = 3\n[limits]\nnetwork = false\nmax_cpu_millicores = 500\n[chain]\nrpc = \"\"\n", "t", &[("market.price_per_second".into(), toml::Value::Integer(2000))]).unwrap();
        let mut a = RunArgs { max_contracts: Some(9), ..RunArgs::default() };
        a.apply(&c);
        assert_eq!((a.price(), a.max_contracts, a.no_network, a.max_cpu_millicores, a.rpc.as_deref()), (2000, Some(9), true, Some(500), None));
        assert_eq!((a.max_memory_mib, a.calibrate_max_age, a.calibrate_quick), (Some(4096), Some(168 * 3600), false));
        assert_eq!(RunArgs::default().price(), 1_000);
        // The network capacity reaches the calibration Recalibrate runs; a flag wins.
        let c = Config::parse("[calibration]\nnetwork_mbps = 250\n", "t", &[]).unwrap();
        let mut a = RunArgs::default();
        a.apply(&c);
        let cmd = a.recalibration().unwrap().command(1000);
        let args: Vec<_> = cmd.get_args().map(|s| s.to_string_lossy().into_owned()).collect();
        assert!(args.windows(2).any(|w| w == ["--network-mbps", "250"]), "{args:?}");
        let mut a = RunArgs { calibration_network_mbps: Some(40), ..RunArgs::default() };
        a.apply(&c);
        assert_eq!(a.calibration_network_mbps, Some(40));
        assert!(Config::parse("[calibration]\nnetwork_mbps = 999999999\n", "t", &[]).unwrap_err().to_string().contains("calibration.network_mbps"));
    }
}
