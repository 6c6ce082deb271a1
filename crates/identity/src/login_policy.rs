//! Account-level sign-in thresholds, configurable per deployment. The constructors are the only
//! place the numbers are checked, so an `Authenticator` can never run with a threshold of zero
//! (which would lock every account on its first mistake, or flag every failure as an attack).

use std::fmt;
use std::str::FromStr;

use crate::sessions::LOCK_AFTER;

/// Failed logins before an account is locked (1-100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockAfter(u8);

/// Distinct client addresses failing against one account within an hour that make it
/// "suspicious" (2-1000): one address is a user who forgot their password, many are a spray.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuspiciousIps(u16);

/// The default number of distinct failing addresses that raise the signal.
pub const SUSPICIOUS_IPS: u16 = 5;

impl LockAfter {
    /// # Errors
    /// Outside 1-100.
    pub fn new(n: u32) -> Result<Self, String> {
        u8::try_from(n)
            .ok()
            .filter(|n| (1..=100).contains(n))
            .map(Self)
            .ok_or_else(|| format!("{n} is not a lockout threshold (1-100 failed attempts)"))
    }

    #[must_use]
    pub fn get(self) -> i32 {
        i32::from(self.0)
    }
}

impl SuspiciousIps {
    /// # Errors
    /// Outside 2-1000.
    pub fn new(n: u32) -> Result<Self, String> {
        u16::try_from(n)
            .ok()
            .filter(|n| (2..=1000).contains(n))
            .map(Self)
            .ok_or_else(|| format!("{n} is not a distinct-address threshold (2-1000)"))
    }

    #[must_use]
    pub fn get(self) -> i64 {
        i64::from(self.0)
    }
}

impl Default for LockAfter {
    fn default() -> Self {
        Self(u8::try_from(LOCK_AFTER).unwrap_or(5))
    }
}

impl Default for SuspiciousIps {
    fn default() -> Self {
        Self(SUSPICIOUS_IPS)
    }
}

fn number(s: &str) -> Result<u32, String> {
    s.trim().parse::<u32>().map_err(|_| format!("'{}' is not a whole number", s.trim()))
}

impl FromStr for LockAfter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::new(number(s)?)
    }
}

impl FromStr for SuspiciousIps {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::new(number(s)?)
    }
}

impl fmt::Display for LockAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for SuspiciousIps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What `Authenticator::login` enforces per account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginPolicy {
    pub lock_after: LockAfter,
    pub suspicious_ips: SuspiciousIps,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_strictly() {
        assert_eq!(LockAfter::default().get(), LOCK_AFTER);
        assert_eq!("7".parse::<LockAfter>().map(LockAfter::get), Ok(7));
        for bad in ["0", "101", "-1", "five", "", "5.5", "99999999999"] {
            assert!(bad.parse::<LockAfter>().is_err(), "{bad}");
        }
        assert_eq!(SuspiciousIps::default().get(), 5);
        for bad in ["0", "1", "1001", "x"] {
            assert!(bad.parse::<SuspiciousIps>().is_err(), "{bad}");
        }
        assert!("1".parse::<SuspiciousIps>().err().is_some_and(|e| e.contains("2-1000")));
    }
}
