//! Money: an integer count of base units. One XEN is [`Amount::BASE_PER_XEN`]
//! base units. There is no float anywhere on a path that moves money; all
//! arithmetic is checked and says so in its name.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An amount of XenCoin in base units (1 XEN = 10^8 base units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
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
    fn checked_arithmetic() {
        assert_eq!(Amount(u64::MAX).checked_add(Amount(1)), None);
        assert_eq!(Amount(1).checked_sub(Amount(2)), None);
        assert_eq!(Amount(1).saturating_sub(Amount(2)), Amount::ZERO);
        assert_eq!(Amount::xen(2).checked_sub(Amount::xen(1)), Some(Amount::xen(1)));
    }
}
