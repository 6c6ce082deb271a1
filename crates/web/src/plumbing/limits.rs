//! Per-client-address sign-in budget, and the configurable limits of sign-in.
//!
//! Account lockout stops guessing one account's password; it does nothing against one address
//! trying many accounts (credential stuffing), and every lockout it causes is a denial of service
//! for the real user. So every sign-in endpoint also spends from a budget per client address
//! (default 10 attempts per 15 minutes, a GCRA from `governor`: the budget refills evenly, one
//! attempt per window/attempts). Every attempt counts, successful ones too: the limiter runs
//! before the password is looked at, so it costs no database work and no argon2 under attack.
//!
//! The client address is `ClientContext::ip` (X-Forwarded-For believed only from trusted
//! proxies). IPv6 clients are keyed by their /64: one subscriber usually holds a whole /64, and
//! keying single addresses would give them 2^64 budgets. The budget is per server process; N
//! nodes behind a balancer allow up to N times the budget (documented in ARCHITECTURE.md).
//!
//! Failed credentials on every other route (bad or expired API keys, access tokens, refresh
//! tokens) spend a second per-address budget, [`FailureLimiter`], before they are looked up.
//!
//! A sign-in route opts in by its guard, `Guard::SignIn` (`crate::plumbing::guard`), which runs
//! [`sign_in`] before the handler. A refusal is logged and counted in `/metrics`, not audited: a
//! flood of refusals must not become a flood of ledger rows.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use identity::signin::sessions::LoginPolicy;

use crate::{ApiError, AppState, ClientContext};

/// Sign-in attempts per client address per window, e.g. `10/15m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimit {
    attempts: NonZeroU32,
    window: Duration,
}

impl LoginLimit {
    /// # Errors
    /// Attempts outside 1-100000, a window outside 1 s-24 h.
    pub fn new(attempts: u32, window: Duration) -> Result<Self, String> {
        let attempts = NonZeroU32::new(attempts)
            .filter(|a| a.get() <= 100_000)
            .ok_or_else(|| format!("{attempts} attempts: expected 1-100000"))?;
        if window < Duration::from_secs(1) || window > Duration::from_secs(86_400) {
            return Err("window: expected 1s to 24h".into());
        }
        Ok(Self { attempts, window })
    }

    #[must_use]
    pub fn attempts(&self) -> u32 {
        self.attempts.get()
    }

    #[must_use]
    pub fn window(&self) -> Duration {
        self.window
    }

    fn quota(self) -> Quota {
        // window / attempts >= 10 µs (1 s / 100000), never zero.
        let period = self.window / self.attempts.get();
        Quota::with_period(period).unwrap_or_else(|| Quota::per_second(self.attempts)).allow_burst(self.attempts)
    }
}

impl Default for LoginLimit {
    fn default() -> Self {
        Self { attempts: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN), window: Duration::from_secs(15 * 60) }
    }
}

impl FromStr for LoginLimit {
    type Err = String;

    /// `<attempts>/<window>`, the window a number with unit `s`, `m` or `h` (`10/15m`, `100/1h`).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not a limit like 10/15m (attempts/window; window units s, m, h)");
        let (n, w) = s.trim().split_once('/').ok_or_else(bad)?;
        let attempts: u32 = n.trim().parse().map_err(|_| bad())?;
        let w = w.trim();
        let unit_at = w.len().checked_sub(1).filter(|&i| w.is_char_boundary(i)).ok_or_else(bad)?;
        let (num, unit) = w.split_at(unit_at);
        let num: u64 = num.parse().map_err(|_| bad())?;
        let secs = match unit {
            "s" => Some(num),
            "m" => num.checked_mul(60),
            "h" => num.checked_mul(3600),
            _ => None,
        }
        .ok_or_else(bad)?;
        Self::new(attempts, Duration::from_secs(secs)).map_err(|e| format!("'{s}': {e}"))
    }
}

impl fmt::Display for LoginLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.window.as_secs();
        if s.is_multiple_of(3600) {
            write!(f, "{}/{}h", self.attempts, s / 3600)
        } else if s.is_multiple_of(60) {
            write!(f, "{}/{}m", self.attempts, s / 60)
        } else {
            write!(f, "{}/{}s", self.attempts, s)
        }
    }
}

/// Everything configurable about sign-in: the per-address budgets (this module) and the
/// lockout and suspicious-login thresholds the `Authenticator` enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub login: LoginLimit,
    /// Failed credentials (API keys, access and refresh tokens) per client address.
    pub credential_failures: LoginLimit,
    pub policy: LoginPolicy,
}

/// The default budget of failed credentials per address: 20 a minute (bursts of 20, then one
/// every 3 s) — far above a client whose access token just expired, far below a flood.
pub const CREDENTIAL_FAILURES: (u32, Duration) = (20, Duration::from_secs(60));

impl Default for Limits {
    fn default() -> Self {
        let (n, window) = CREDENTIAL_FAILURES;
        Self {
            login: LoginLimit::default(),
            credential_failures: LoginLimit::new(n, window).unwrap_or_default(),
            policy: LoginPolicy::default(),
        }
    }
}

static RATE_LIMITED: AtomicU64 = AtomicU64::new(0);

/// Sign-in attempts refused by the per-address budget in this process (for `/metrics`).
#[must_use]
pub fn rate_limited_total() -> u64 {
    RATE_LIMITED.load(Ordering::Relaxed)
}

/// The per-address sign-in budget of one server process.
#[derive(Clone)]
pub struct SignInLimiter {
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    limit: LoginLimit,
}

impl fmt::Debug for SignInLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignInLimiter").field("limit", &self.limit.to_string()).finish_non_exhaustive()
    }
}

impl Default for SignInLimiter {
    fn default() -> Self {
        Self::new(LoginLimit::default())
    }
}

/// IPv4 as is (IPv4-mapped IPv6 included); IPv6 by its /64.
fn budget_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::from(o)
        }
        v4 => v4,
    }
}

impl SignInLimiter {
    #[must_use]
    pub fn new(limit: LoginLimit) -> Self {
        Self { limiter: Arc::new(DefaultKeyedRateLimiter::keyed(limit.quota())), limit }
    }

    #[must_use]
    pub fn limit(&self) -> LoginLimit {
        self.limit
    }

    /// Spends one attempt of `ip`'s budget; `Err(seconds)` until the next attempt is allowed.
    ///
    /// # Errors
    /// The budget is spent: seconds to wait (at least 1).
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        // Forget addresses whose budget is full again, so the map holds only recent callers.
        if self.limiter.len() > 10_000 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.check_key(&budget_key(ip)).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
        })
    }
}

static CREDENTIAL_RATE_LIMITED: AtomicU64 = AtomicU64::new(0);

/// Requests refused by the failed-credential budget in this process (for `/metrics`).
#[must_use]
pub fn credential_rate_limited_total() -> u64 {
    CREDENTIAL_RATE_LIMITED.load(Ordering::Relaxed)
}

/// The per-address budget of failed credentials (bad or expired API keys, access tokens,
/// refresh tokens) of one server process. Unlike sign-in, only failures spend it; but the
/// spending happens *before* the credential is looked up — [`FailureLimiter::reserve`] takes one
/// attempt, [`FailureLimiter::refund`] gives it back when the credential was good — so an address
/// past its budget is answered 429 `rate_limited` before any database work, and concurrent
/// requests cannot all slip through before the first failure is counted. A GCRA like the
/// sign-in budget (same keying: IPv4 address, IPv6 /64), kept here so that it can refund.
#[derive(Clone)]
pub struct FailureLimiter {
    /// Per address: the theoretical arrival time of the next attempt (GCRA).
    tat: Arc<std::sync::Mutex<std::collections::HashMap<IpAddr, std::time::Instant>>>,
    limit: LoginLimit,
}

impl fmt::Debug for FailureLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailureLimiter").field("limit", &self.limit.to_string()).finish_non_exhaustive()
    }
}

impl Default for FailureLimiter {
    fn default() -> Self {
        Self::new(Limits::default().credential_failures)
    }
}

impl FailureLimiter {
    #[must_use]
    pub fn new(limit: LoginLimit) -> Self {
        Self { tat: Arc::default(), limit }
    }

    fn period(&self) -> Duration {
        self.limit.window / self.limit.attempts.get()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<IpAddr, std::time::Instant>> {
        self.tat.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes one attempt of `ip`'s budget before its credential is checked.
    ///
    /// # Errors
    /// The budget is spent: seconds to wait (at least 1).
    pub fn reserve(&self, ip: IpAddr) -> Result<(), u64> {
        let now = std::time::Instant::now();
        let mut map = self.map();
        if map.len() > 10_000 {
            map.retain(|_, tat| *tat > now);
        }
        let key = budget_key(ip);
        let tat = map.get(&key).copied().filter(|t| *t > now).unwrap_or(now);
        let next = tat + self.period();
        if next.duration_since(now) > self.limit.window {
            let wait = next.duration_since(now) - self.limit.window;
            return Err((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1));
        }
        map.insert(key, next);
        Ok(())
    }

    /// The credential was good: the attempt [`Self::reserve`] took is given back.
    pub fn refund(&self, ip: IpAddr) {
        let now = std::time::Instant::now();
        let mut map = self.map();
        let key = budget_key(ip);
        if let Some(tat) = map.get(&key).copied() {
            match tat.checked_sub(self.period()).filter(|t| *t > now) {
                Some(t) => map.insert(key, t),
                None => map.remove(&key),
            };
        }
    }
}

/// 429 `rate_limited` for an address past its failed-credential budget.
pub(crate) fn credential_rate_limited(ip: IpAddr, retry_after: u64) -> ApiError {
    CREDENTIAL_RATE_LIMITED.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(%ip, retry_after, "failed-credential rate limit reached");
    ApiError {
        retry_after: Some(retry_after),
        ..ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many failed credentials from this address; try again later",
        )
    }
}

/// Middleware for sign-in routes: spends one attempt of the caller's budget or answers 429
/// `rate_limited` with `Retry-After`.
pub async fn sign_in(State(state): State<AppState>, ctx: ClientContext, req: Request, next: Next) -> Response {
    match state.sign_in_limiter.check(ctx.ip) {
        Ok(()) => next.run(req).await,
        Err(retry_after) => {
            RATE_LIMITED.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(ip = %ctx.ip, path = %req.uri().path(), retry_after, "sign-in rate limit reached");
            ApiError {
                retry_after: Some(retry_after),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many sign-in attempts from this address; try again later",
                )
            }
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn limits_parse_with_clear_errors() {
        assert_eq!("10/15m".parse::<LoginLimit>(), Ok(LoginLimit::default()));
        let l: LoginLimit = " 100/1h ".parse().expect("parses");
        assert_eq!((l.attempts(), l.window()), (100, Duration::from_secs(3600)));
        assert_eq!(l.to_string(), "100/1h");
        assert_eq!("3/90s".parse::<LoginLimit>().map(|l| l.to_string()), Ok("3/90s".into()));
        for bad in ["", "10", "10/", "/15m", "0/15m", "10/0s", "10/25h", "10/15", "10/15x", "-1/15m", "10/15mm", "10/é"]
        {
            let e = bad.parse::<LoginLimit>().expect_err(bad);
            assert!(e.contains(bad.trim()) || e.contains("attempts") || e.contains("window"), "{bad}: {e}");
        }
    }

    #[test]
    fn failed_credentials_spend_the_budget_and_good_ones_give_it_back() {
        let l = FailureLimiter::new("3/1h".parse().expect("limit"));
        for _ in 0..10 {
            assert_eq!(l.reserve(ip("192.0.2.1")), Ok(()));
            l.refund(ip("192.0.2.1"));
        }
        for _ in 0..3 {
            assert_eq!(l.reserve(ip("192.0.2.1")), Ok(()));
        }
        let wait = l.reserve(ip("192.0.2.1")).expect_err("spent");
        assert!((1..=1200).contains(&wait), "{wait}");
        assert!(l.reserve(ip("::ffff:192.0.2.1")).is_err(), "IPv4-mapped is the same client");
        assert_eq!(l.reserve(ip("192.0.2.2")), Ok(()), "another address has its own budget");
    }

    #[test]
    fn budget_is_per_address_and_ipv6_per_slash_64() {
        let l = SignInLimiter::new("3/1h".parse().expect("limit"));
        for _ in 0..3 {
            assert_eq!(l.check(ip("192.0.2.1")), Ok(()));
        }
        let wait = l.check(ip("192.0.2.1")).expect_err("spent");
        assert!((1..=1200).contains(&wait), "{wait}");
        assert_eq!(l.check(ip("::ffff:192.0.2.1")).map_err(|_| ()), Err(()), "IPv4-mapped is the same client");
        assert_eq!(l.check(ip("192.0.2.2")), Ok(()), "another address has its own budget");
        for i in 0..3 {
            assert_eq!(l.check(ip(&format!("2001:db8:1:2::{i}"))), Ok(()));
        }
        assert!(l.check(ip("2001:db8:1:2:ffff::9")).is_err(), "same /64, same budget");
        assert_eq!(l.check(ip("2001:db8:1:3::1")), Ok(()), "another /64");
    }
}
