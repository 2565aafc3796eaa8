//! The automatic negotiation both sides run, so they agree on its rules:
//! what a container costs at full load of its limits (the unit an
//! announcement's price ceiling is stated in), a provider's default rates
//! from its machine price, and each side's answer in a round.
//!
//! Rounds: the provider offers its asking rates (round 0). An offer at or
//! under the publisher's ceiling is accepted. Above it, the publisher
//! counters with the offer scaled down to the ceiling; the provider takes a
//! counter at or above its reserve (offering those rates in the next round)
//! and rejects one below it, naming both figures. At most
//! [`crate::market::MAX_ROUNDS`] rounds.

use crate::pricing::{cost, Rates, PICO_PER_BASE};
use crate::spec::{Capacity, ContainerSpec};
use crate::usage::{UsageComponent, UsageVector};
use crate::Amount;

/// Usage of a container running its limits flat out for `secs` seconds:
/// cpu at the millicore limit (user time), memory at the limit, wall time.
/// Disk and network are not part of the full-load figure.
pub fn full_load_usage(spec: &ContainerSpec, secs: u64) -> UsageVector {
    let mut u = UsageVector::zero();
    let ns = secs.saturating_mul(1_000_000_000);
    u.set(UsageComponent::CpuUserNs, ns / 1000 * spec.cpu_millicores as u64);
    u.set(UsageComponent::MemByteSeconds, spec.memory_bytes.saturating_mul(secs));
    u.set(UsageComponent::WallNs, ns);
    u
}

/// What one container of `spec` costs per hour at full load under `rates`
/// (saturating at the largest amount).
pub fn hourly_cost(rates: &Rates, spec: &ContainerSpec) -> Amount {
    cost(rates, &full_load_usage(spec, 3600)).unwrap_or(Amount(u64::MAX))
}

/// Default rates for a provider without a calibration: its price for the
/// whole machine per second, half on cpu time at full use of every core and
/// half on memory held at full capacity; nothing on wall time, disk or
/// network.
pub fn default_rates(price_per_second: Amount, cap: &Capacity) -> Rates {
    let mut r = Rates::zero();
    let half_pico = price_per_second.0 as u128 * PICO_PER_BASE / 2;
    let cpu_ns_per_s = (cap.cpu_millicores as u128 * 1_000_000).max(1);
    let mem = (cap.memory_bytes as u128).max(1);
    r.pico_per_unit[UsageComponent::CpuUserNs as usize] = (half_pico / cpu_ns_per_s).min(u64::MAX as u128) as u64;
    r.pico_per_unit[UsageComponent::CpuSystemNs as usize] = r.pico_per_unit[UsageComponent::CpuUserNs as usize];
    r.pico_per_unit[UsageComponent::MemByteSeconds as usize] = (half_pico / mem).min(u64::MAX as u128) as u64;
    r
}

/// `rates` times `num / den`, each component rounded down.
pub fn scale(rates: &Rates, num: u64, den: u64) -> Rates {
    let mut r = *rates;
    for x in r.pico_per_unit.iter_mut() {
        *x = ((*x as u128 * num as u128) / den.max(1) as u128).min(u64::MAX as u128) as u64;
    }
    r
}

/// The publisher's answer to an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublisherMove {
    Accept,
    Counter(Rates),
    Reject(String),
}

/// The publisher's rule: accept at or under `ceiling` per hour at full
/// load; otherwise counter with the offer scaled to the ceiling, unless this
/// is the last round or the provider already refused to come down.
pub fn publisher_move(offer: &Rates, spec: &ContainerSpec, ceiling: Amount, round: u32, last_counter: Option<&Rates>) -> PublisherMove {
    let c = hourly_cost(offer, spec);
    if c <= ceiling {
        return PublisherMove::Accept;
    }
    if round + 1 >= crate::market::MAX_ROUNDS || last_counter.is_some_and(|l| l == offer) {
        return PublisherMove::Reject(format!("offer costs {c} per hour at full load, above the ceiling {ceiling}"));
    }
    PublisherMove::Counter(scale(offer, ceiling.0, c.0))
}

/// The provider's rule: take a counter whose full-load cost is at least the
/// reserve's; refuse one below, saying by how much.
pub fn provider_accepts(counter: &Rates, reserve: &Rates, spec: &ContainerSpec) -> Result<(), String> {
    let (c, r) = (hourly_cost(counter, spec), hourly_cost(reserve, spec));
    if c >= r {
        Ok(())
    } else {
        Err(format!("counter pays {c} per hour at full load, below this provider's reserve {r}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap() -> Capacity {
        Capacity { memory_bytes: 4 << 30, cpu_millicores: 2000, pids_max: 4096, disk_bytes: 8 << 30 }
    }

    #[test]
    fn default_rates_charge_the_machine_price_at_full_load() {
        // 1000 base units per second for the whole machine: a container with
        // all of it costs about 3.6M per hour (rounding down only).
        let r = default_rates(Amount(1000), &cap());
        let mut all = ContainerSpec::small("t");
        all.cpu_millicores = 2000;
        all.memory_bytes = 4 << 30;
        let h = hourly_cost(&r, &all).0;
        assert!(h <= 3_600_000 && h > 3_590_000, "{h}");
        // Half the machine costs half.
        all.cpu_millicores = 1000;
        all.memory_bytes = 2 << 30;
        let half = hourly_cost(&r, &all).0;
        assert!(half.abs_diff(h / 2) < 10_000, "{half} vs {h}");
    }

    #[test]
    fn rounds_converge_or_reject_with_figures() {
        let spec = ContainerSpec::small("t");
        let ask = default_rates(Amount(1000), &cap());
        let reserve = scale(&ask, 80, 100);
        let price = hourly_cost(&ask, &spec);
        // Under the ceiling: accepted at once.
        assert_eq!(publisher_move(&ask, &spec, price, 0, None), PublisherMove::Accept);
        // 90 % of the price: countered, the provider takes it, the publisher accepts.
        let ceiling = Amount(price.0 * 9 / 10);
        let PublisherMove::Counter(c) = publisher_move(&ask, &spec, ceiling, 0, None) else { panic!() };
        provider_accepts(&c, &reserve, &spec).unwrap();
        assert_eq!(publisher_move(&c, &spec, ceiling, 1, Some(&c)), PublisherMove::Accept);
        // 50 %: the provider refuses, naming both figures.
        let low = Amount(price.0 / 2);
        let PublisherMove::Counter(c) = publisher_move(&ask, &spec, low, 0, None) else { panic!() };
        let e = provider_accepts(&c, &reserve, &spec).unwrap_err();
        assert!(e.contains("reserve"), "{e}");
        // The last round never counters.
        assert!(matches!(publisher_move(&ask, &spec, low, crate::market::MAX_ROUNDS - 1, None), PublisherMove::Reject(_)));
    }
}
