//! Admission control for new INVITEs (DOMAIN.md: "accept calls only from
//! configured trunks/addresses"): a CIDR allowlist (403), a cap on concurrent
//! calls and on new calls per second, and a shutdown switch (503 +
//! Retry-After, RFC 3261 §21.5.4 / §20.33).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// An IPv4 or IPv6 network in CIDR form; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("allow_from: {s:?} is not an IP address or CIDR"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("allow_from: bad prefix length in {s:?}"))?,
            None => max,
        };
        Ok(Cidr { net, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 peer seen on a dual-stack socket arrives v4-mapped.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Why a new INVITE is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Source not in the allowlist: 403.
    NotAllowed,
    /// Shutting down: 503, Retry-After given.
    ShuttingDown,
    /// Concurrent-call cap: 503.
    AtCapacity,
    /// New-call rate cap: 503.
    TooFast,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::NotAllowed => 403,
            _ => 503,
        }
    }

    /// Seconds for Retry-After (None for 403).
    pub fn retry_after(self) -> Option<u32> {
        match self {
            Refusal::NotAllowed => None,
            Refusal::ShuttingDown => Some(60),
            Refusal::AtCapacity => Some(5),
            Refusal::TooFast => Some(1),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Admission {
    allow: Vec<Cidr>,
    /// true when `allow_from` was non-empty: even if every entry failed to
    /// parse, the list stays restrictive (a typo must not open the door).
    restricted: bool,
    max_calls: usize,
    max_per_second: u32,
    accepting: bool,
    recent: VecDeque<Instant>,
}

impl Admission {
    pub fn new(allow_from: &[String], max_calls: usize, max_per_second: u32) -> Self {
        Admission {
            allow: allow_from
                .iter()
                .filter_map(|s| Cidr::parse(s).ok())
                .collect(),
            restricted: !allow_from.is_empty(),
            max_calls,
            max_per_second,
            accepting: true,
            recent: VecDeque::new(),
        }
    }

    pub fn set_accepting(&mut self, accepting: bool) {
        self.accepting = accepting;
    }

    pub fn accepting(&self) -> bool {
        self.accepting
    }

    /// Decides on a new INVITE from `ip` with `active` calls in progress; an
    /// admitted call counts against the per-second rate.
    pub fn admit(&mut self, now: Instant, ip: IpAddr, active: usize) -> Result<(), Refusal> {
        if self.restricted && !self.allow.iter().any(|c| c.contains(ip)) {
            return Err(Refusal::NotAllowed);
        }
        if !self.accepting {
            return Err(Refusal::ShuttingDown);
        }
        if active >= self.max_calls {
            return Err(Refusal::AtCapacity);
        }
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
        if self.max_per_second > 0 && self.recent.len() >= self.max_per_second as usize {
            return Err(Refusal::TooFast);
        }
        self.recent.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_matching() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
    }

    #[test]
    fn typo_keeps_list_restrictive() {
        let t0 = Instant::now();
        let mut a = Admission::new(&["10.0.0.0/8x".into()], 10, 0);
        assert_eq!(
            a.admit(t0, "10.0.0.1".parse().unwrap(), 0),
            Err(Refusal::NotAllowed)
        );
    }

    #[test]
    fn rate_window() {
        let t0 = Instant::now();
        let ip = "127.0.0.1".parse().unwrap();
        let mut a = Admission::new(&[], 100, 2);
        assert!(a.admit(t0, ip, 0).is_ok());
        assert!(a.admit(t0, ip, 0).is_ok());
        assert_eq!(a.admit(t0, ip, 0), Err(Refusal::TooFast));
        assert!(a.admit(t0 + Duration::from_secs(1), ip, 0).is_ok());
        assert_eq!(a.admit(t0, ip, 100), Err(Refusal::AtCapacity));
    }
}
