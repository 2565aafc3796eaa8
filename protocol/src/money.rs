//! Money: an integer count of base units. One XEN is [`Amount::BASE_PER_XEN`]
//! base units. There is no float anywhere on a path that moves money; all
//! arithmetic is checked and says so in its name.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An amount of XenCoin in base units (1 XEN = 10^8 base units).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Amount(pub u64);

impl Amount {
    /// Base units in one XEN.
    pub const BASE_PER_XEN: u64 = 100_000_000;
    /// Zero.
    pub const ZERO: Amount = Amount(0);

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// `self - other`, or `None` if it would go below zero.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    /// `self - other`, floored at zero.
    pub fn saturating_sub(self, other: Amount) -> Amount {
        Amount(self.0.saturating_sub(other.0))
    }

    /// Parses a decimal XEN figure with at most eight places, e.g. `1.5` or
    /// `0.00000001`; exact, no floats.
    pub fn parse_xen(s: &str) -> Result<Amount, String> {
        let bad = || format!("{s:?} is not a XEN amount (digits, optionally . and up to 8 places)");
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        if whole.is_empty() && frac.is_empty()
            || frac.len() > 8
            || !whole
                .bytes()
                .chain(frac.bytes())
                .all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let w: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let f: u64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<8}").parse().map_err(|_| bad())?
        };
        w.checked_mul(Self::BASE_PER_XEN)
            .and_then(|x| x.checked_add(f))
            .map(Amount)
            .ok_or_else(bad)
    }

    /// Whole XEN, as a convenience for defaults and tests.
    pub const fn xen(n: u64) -> Amount {
        Amount(n * Self::BASE_PER_XEN)
    }
}

impl fmt::Display for Amount {
    /// Renders as a decimal XEN figure with all eight places, e.g. `1.50000000 XEN`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:08} XEN",
            self.0 / Self::BASE_PER_XEN,
            self.0 % Self::BASE_PER_XEN
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_exact() {
        assert_eq!(Amount(150_000_000).to_string(), "1.50000000 XEN");
        assert_eq!(Amount(1).to_string(), "0.00000001 XEN");
    }

    #[test]
    fn parse_xen_is_exact() {
        assert_eq!(Amount::parse_xen("1.5"), Ok(Amount(150_000_000)));
        assert_eq!(Amount::parse_xen("0.00000001"), Ok(Amount(1)));
        assert_eq!(Amount::parse_xen("7"), Ok(Amount::xen(7)));
        assert!(Amount::parse_xen("0.000000001").is_err());
        assert!(Amount::parse_xen("1e3").is_err());
        assert!(Amount::parse_xen("-1").is_err());
        assert!(Amount::parse_xen("").is_err());
        assert!(Amount::parse_xen("999999999999999").is_err());
    }

    #[test]
    fn checked_arithmetic() {
        assert_eq!(Amount(u64::MAX).checked_add(Amount(1)), None);
        assert_eq!(Amount(1).checked_sub(Amount(2)), None);
        assert_eq!(Amount(1).saturating_sub(Amount(2)), Amount::ZERO);
        assert_eq!(
            Amount::xen(2).checked_sub(Amount::xen(1)),
            Some(Amount::xen(1))
        );
    }
}
