//! Admission control for new INVITEs: a CIDR allowlist (403), global caps on
//! concurrent calls and new calls per second, a shutdown switch (503 +
//! Retry-After, RFC 3261 §21.5.4 / §20.33), and per-source limits an
//! attacker at one address cannot use to take every call slot:
//!
//! - **concurrent calls** per source IP (`per_source_max_calls`);
//! - **new calls per second** per source IP, a token bucket
//!   (`per_source_calls_per_second`, bursts up to `per_source_burst`);
//! - **unanswered INVITEs** per source IP (`per_source_max_unacked`): calls
//!   admitted but not yet confirmed by an ACK. This is the "pike" limit: a
//!   flood of INVITEs that are never ACKed holds at most this many slots
//!   (and RTP ports) per source, however fast it sends.
//!
//! Sources in `trusted_sources` (trunks, SBCs: one address, many callers)
//! bypass the per-source limits but still count toward the global ones.
//!
//! Admission runs before anything is reserved: the call (and so its RTP
//! port, allocated by the call task) exists only once [`Admission::admit`]
//! said yes. The endpoint tells admission when a call is ACKed
//! ([`Admission::acked`]) and when it ends ([`Admission::release`]).
//!
//! Refusals are counted in `ivr_admission_refused_total{reason}` (no address
//! in the labels: one series per reason, whatever the flood) and logged as
//! summaries, one line per source and interval with counts per reason
//! ([`RefusalLog`]), never one line per refused packet.
//!
//! Sans-IO: every entry point takes `now`.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;

/// An IPv4 or IPv6 network in CIDR form; a bare address is a /32 or /128.
/// A thin wrapper over [`ipnet::IpNet`] that also matches IPv4 peers seen
/// v4-mapped on a dual-stack socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(IpNet);

impl Cidr {
    /// Parses `10.0.0.0/8`, `2001:db8::/32` or a bare address. The error
    /// names the text but not the setting (callers prefix it).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        if s.contains('/') {
            s.parse::<IpNet>()
                .map(Cidr)
                .map_err(|_| format!("{s:?} is not an IP address or CIDR"))
        } else {
            s.parse::<IpAddr>()
                .map(|a| Cidr(IpNet::from(a)))
                .map_err(|_| format!("{s:?} is not an IP address or CIDR"))
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 peer seen on a dual-stack socket arrives v4-mapped.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.contains(&ip)
    }
}

/// Parses a list of CIDRs; the error names `setting` and the bad entry.
pub fn parse_cidrs(setting: &str, list: &[String]) -> Result<Vec<Cidr>, String> {
    list.iter()
        .map(|s| Cidr::parse(s).map_err(|e| format!("{setting}: {e}")))
        .collect()
}

/// Why a new INVITE is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Source not in the allowlist: 403.
    NotAllowed,
    /// Shutting down: 503, Retry-After given.
    ShuttingDown,
    /// Global concurrent-call cap: 503.
    AtCapacity,
    /// Global new-call rate cap: 503.
    TooFast,
    /// This source already has `per_source_max_calls` calls: 503.
    SourceCalls,
    /// This source's token bucket is empty: 503.
    SourceRate,
    /// This source has `per_source_max_unacked` INVITEs not yet ACKed: 503.
    SourceUnacked,
}

impl Refusal {
    /// Every refusal, in the order of the summary line's counts.
    pub const ALL: [Refusal; 7] = [
        Refusal::NotAllowed,
        Refusal::ShuttingDown,
        Refusal::AtCapacity,
        Refusal::TooFast,
        Refusal::SourceCalls,
        Refusal::SourceRate,
        Refusal::SourceUnacked,
    ];

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
            Refusal::AtCapacity | Refusal::SourceCalls | Refusal::SourceUnacked => Some(5),
            Refusal::TooFast | Refusal::SourceRate => Some(1),
        }
    }

    /// The `reason` label of `ivr_admission_refused_total` and the key in
    /// the summary log line.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::NotAllowed => "not_allowed",
            Refusal::ShuttingDown => "shutting_down",
            Refusal::AtCapacity => "at_capacity",
            Refusal::TooFast => "rate",
            Refusal::SourceCalls => "source_calls",
            Refusal::SourceRate => "source_rate",
            Refusal::SourceUnacked => "source_unacked",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Per-source limits (0 = that limit is off). `Default` is all off (the
/// sans-IO endpoint's open admission); the service's configuration has
/// its own defaults (`[sip]` in `config.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct PerSourceLimits {
    /// Concurrent calls from one address.
    pub max_calls: usize,
    /// New calls per second from one address (token bucket refill rate).
    pub calls_per_second: u32,
    /// Bucket size: new calls one address may place at once (0 = same as
    /// `calls_per_second`).
    pub burst: u32,
    /// Admitted INVITEs not yet ACKed from one address.
    pub max_unacked: usize,
    /// CIDRs exempt from the per-source limits (trunks, SBCs).
    pub trusted_sources: Vec<String>,
    /// How often refusals are summarised in the log.
    pub log_interval: Duration,
}

impl Default for PerSourceLimits {
    fn default() -> Self {
        PerSourceLimits {
            max_calls: 0,
            calls_per_second: 0,
            burst: 0,
            max_unacked: 0,
            trusted_sources: Vec::new(),
            log_interval: Duration::from_secs(10),
        }
    }
}

/// What admission knows about one source address.
#[derive(Debug, Clone)]
struct Source {
    calls: usize,
    unacked: usize,
    tokens: f64,
    refilled: Instant,
}

/// An admitted call: where it came from and whether it was ACKed.
#[derive(Debug, Clone, Copy)]
struct Admitted {
    ip: IpAddr,
    acked: bool,
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
    limits: PerSourceLimits,
    trusted: Vec<Cidr>,
    sources: HashMap<IpAddr, Source>,
    calls: HashMap<u64, Admitted>,
    last_sweep: Option<Instant>,
    log: RefusalLog,
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
            limits: PerSourceLimits::default(),
            trusted: Vec::new(),
            sources: HashMap::new(),
            calls: HashMap::new(),
            last_sweep: None,
            log: RefusalLog::new(Duration::from_secs(10)),
        }
    }

    /// Adds per-source limits (entries of `trusted_sources` that do not
    /// parse are skipped: validate the configuration first).
    pub fn with_per_source(mut self, limits: PerSourceLimits) -> Self {
        self.trusted = limits
            .trusted_sources
            .iter()
            .filter_map(|s| Cidr::parse(s).ok())
            .collect();
        self.log = RefusalLog::new(limits.log_interval);
        self.limits = limits;
        self
    }

    pub fn set_accepting(&mut self, accepting: bool) {
        self.accepting = accepting;
    }

    pub fn accepting(&self) -> bool {
        self.accepting
    }

    fn burst(&self) -> f64 {
        let b = if self.limits.burst == 0 {
            self.limits.calls_per_second
        } else {
            self.limits.burst
        };
        f64::from(b.max(1))
    }

    fn refill(limits: &PerSourceLimits, burst: f64, s: &mut Source, now: Instant) {
        let dt = now.saturating_duration_since(s.refilled).as_secs_f64();
        s.tokens = (s.tokens + dt * f64::from(limits.calls_per_second)).min(burst);
        s.refilled = now;
    }

    /// Decides on a new INVITE from `ip` with `active` calls in progress.
    /// An admitted call is remembered under `call` (the endpoint's handle
    /// number) until [`Admission::release`]; it counts as unanswered until
    /// [`Admission::acked`]. Refusals are counted and summarised.
    pub fn admit(
        &mut self,
        now: Instant,
        ip: IpAddr,
        active: usize,
        call: u64,
    ) -> Result<(), Refusal> {
        let r = self.decide(now, ip, active);
        match r {
            Ok(()) => {
                self.calls.insert(call, Admitted { ip, acked: false });
            }
            Err(refusal) => {
                metrics::counter!("ivr_admission_refused_total", "reason" => refusal.label())
                    .increment(1);
                self.log.note(now, ip, refusal);
            }
        }
        self.sweep(now);
        r
    }

    fn decide(&mut self, now: Instant, ip: IpAddr, active: usize) -> Result<(), Refusal> {
        if self.restricted && !self.allow.iter().any(|c| c.contains(ip)) {
            return Err(Refusal::NotAllowed);
        }
        if !self.accepting {
            return Err(Refusal::ShuttingDown);
        }
        // Per source first: a flooding source is refused for its own
        // reason and spends none of the global rate.
        let per_source = !self.trusted.iter().any(|c| c.contains(ip));
        let burst = self.burst();
        if per_source && let Some(s) = self.sources.get_mut(&ip) {
            if self.limits.max_unacked > 0 && s.unacked >= self.limits.max_unacked {
                return Err(Refusal::SourceUnacked);
            }
            if self.limits.max_calls > 0 && s.calls >= self.limits.max_calls {
                return Err(Refusal::SourceCalls);
            }
            if self.limits.calls_per_second > 0 {
                Self::refill(&self.limits, burst, s, now);
                if s.tokens < 1.0 {
                    return Err(Refusal::SourceRate);
                }
            }
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
        // Admitted: the source pays (trusted ones are tracked too, so that
        // `acked`/`release` stay uniform, but never limited).
        let s = self.sources.entry(ip).or_insert(Source {
            calls: 0,
            unacked: 0,
            tokens: burst,
            refilled: now,
        });
        s.calls += 1;
        s.unacked += 1;
        if per_source && self.limits.calls_per_second > 0 {
            s.tokens -= 1.0;
        }
        Ok(())
    }

    /// The call's INVITE was ACKed: it no longer counts as unanswered.
    pub fn acked(&mut self, call: u64) {
        if let Some(c) = self.calls.get_mut(&call)
            && !c.acked
        {
            c.acked = true;
            if let Some(s) = self.sources.get_mut(&c.ip) {
                s.unacked = s.unacked.saturating_sub(1);
            }
        }
    }

    /// The call ended (any reason). Unknown handles (outbound calls, calls
    /// refused) are ignored.
    pub fn release(&mut self, call: u64) {
        if let Some(c) = self.calls.remove(&call)
            && let Some(s) = self.sources.get_mut(&c.ip)
        {
            s.calls = s.calls.saturating_sub(1);
            if !c.acked {
                s.unacked = s.unacked.saturating_sub(1);
            }
        }
    }

    /// Calls admitted and not yet released (for tests and diagnostics).
    pub fn admitted(&self) -> usize {
        self.calls.len()
    }

    /// Calls from `ip` admitted and not released, and of those not ACKed.
    pub fn source_usage(&self, ip: IpAddr) -> (usize, usize) {
        self.sources
            .get(&ip)
            .map_or((0, 0), |s| (s.calls, s.unacked))
    }

    /// Drops idle sources (no call, bucket full again) at most once a
    /// second, so the table holds only sources with calls or recently
    /// admitted ones.
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_sweep = Some(now);
        let burst = self.burst();
        let limits = &self.limits;
        self.sources.retain(|_, s| {
            if s.calls > 0 {
                return true;
            }
            Self::refill(limits, burst, s, now);
            limits.calls_per_second > 0 && s.tokens < burst
        });
    }

    /// Writes the refusal summary when its interval is over.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.log.flush_due(now);
        self.sweep(now);
    }

    /// When [`Admission::handle_timeout`] has a summary to write.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.log.due()
    }
}

/// Sources listed by name in one summary; the rest are added up in one
/// line (a flood from many spoofed addresses stays a few lines).
const SUMMARY_SOURCES: usize = 20;
/// Distinct sources counted per interval; beyond, they count as "other".
const TRACKED_SOURCES: usize = 4096;

/// Refusals added up per source and reason, written as one `WARN` line per
/// source at the end of each interval (at most [`SUMMARY_SOURCES`] + 1
/// lines per interval, whatever the packet rate).
#[derive(Debug, Clone)]
pub struct RefusalLog {
    interval: Duration,
    /// Start of the interval with refusals not yet written.
    open_since: Option<Instant>,
    by_source: HashMap<IpAddr, [u64; Refusal::ALL.len()]>,
    other: [u64; Refusal::ALL.len()],
    other_sources: u64,
}

impl RefusalLog {
    pub fn new(interval: Duration) -> RefusalLog {
        RefusalLog {
            interval: interval.max(Duration::from_millis(100)),
            open_since: None,
            by_source: HashMap::new(),
            other: [0; Refusal::ALL.len()],
            other_sources: 0,
        }
    }

    /// Counts one refusal (writes the summary first if its interval is
    /// over).
    pub fn note(&mut self, now: Instant, ip: IpAddr, r: Refusal) {
        self.flush_due(now);
        self.open_since.get_or_insert(now);
        let tracked = self.by_source.len();
        match self.by_source.get_mut(&ip) {
            Some(c) => c[r.index()] += 1,
            None if tracked < TRACKED_SOURCES => {
                let mut c = [0; Refusal::ALL.len()];
                c[r.index()] = 1;
                self.by_source.insert(ip, c);
            }
            None => {
                self.other[r.index()] += 1;
                self.other_sources += 1;
            }
        }
    }

    /// When the open interval ends.
    pub fn due(&self) -> Option<Instant> {
        self.open_since.map(|t| t + self.interval)
    }

    /// Writes and resets the summary if its interval is over.
    pub fn flush_due(&mut self, now: Instant) {
        if self.due().is_some_and(|d| now >= d) {
            self.flush();
        }
    }

    /// Writes and resets the summary now.
    pub fn flush(&mut self) {
        if self.open_since.take().is_none() {
            return;
        }
        let secs = self.interval.as_secs_f64();
        let mut rows: Vec<(IpAddr, [u64; Refusal::ALL.len()])> = self.by_source.drain().collect();
        rows.sort_by_key(|(ip, c)| (std::cmp::Reverse(c.iter().sum::<u64>()), *ip));
        for (i, (ip, counts)) in rows.into_iter().enumerate() {
            if i < SUMMARY_SOURCES {
                tracing::warn!(
                    source = %ip,
                    refused = counts.iter().sum::<u64>(),
                    reasons = %describe(&counts),
                    interval_secs = secs,
                    "INVITEs refused by admission control"
                );
            } else {
                for (o, c) in self.other.iter_mut().zip(counts) {
                    *o += c;
                }
                self.other_sources += 1;
            }
        }
        let total: u64 = self.other.iter().sum();
        if total > 0 {
            tracing::warn!(
                sources = self.other_sources,
                refused = total,
                reasons = %describe(&self.other),
                interval_secs = secs,
                "INVITEs refused by admission control from other sources"
            );
        }
        self.other = [0; Refusal::ALL.len()];
        self.other_sources = 0;
    }
}

/// `source_unacked=4410 source_rate=12`: the non-zero counts.
fn describe(counts: &[u64; Refusal::ALL.len()]) -> String {
    Refusal::ALL
        .iter()
        .zip(counts)
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{}={n}", r.label()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_matching() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains(ip("10.1.2.3")));
        assert!(!c.contains(ip("10.2.0.1")));
        assert!(c.contains(ip("::ffff:10.1.0.9")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("::1").unwrap().contains(ip("::1")));
        assert!(
            Cidr::parse("2001:db8::/32")
                .unwrap()
                .contains(ip("2001:db8:1::5"))
        );
        assert!(
            !Cidr::parse("2001:db8::/32")
                .unwrap()
                .contains(ip("10.0.0.1"))
        );
        // Host bits set: the network is what counts.
        assert!(
            Cidr::parse("10.1.2.3/16")
                .unwrap()
                .contains(ip("10.1.200.1"))
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
        assert!(Cidr::parse("10.0.0.0/").is_err());
        let e = parse_cidrs("sip.trusted_sources", &["10.0.0.0/8".into(), "x".into()]);
        assert!(e.unwrap_err().contains("sip.trusted_sources"));
    }

    #[test]
    fn typo_keeps_list_restrictive() {
        let t0 = Instant::now();
        let mut a = Admission::new(&["10.0.0.0/8x".into()], 10, 0);
        assert_eq!(a.admit(t0, ip("10.0.0.1"), 0, 1), Err(Refusal::NotAllowed));
    }

    #[test]
    fn rate_window() {
        let t0 = Instant::now();
        let src = ip("127.0.0.1");
        let mut a = Admission::new(&[], 100, 2);
        assert!(a.admit(t0, src, 0, 1).is_ok());
        assert!(a.admit(t0, src, 0, 2).is_ok());
        assert_eq!(a.admit(t0, src, 0, 3), Err(Refusal::TooFast));
        assert!(a.admit(t0 + Duration::from_secs(1), src, 0, 4).is_ok());
        assert_eq!(a.admit(t0, src, 100, 5), Err(Refusal::AtCapacity));
    }

    fn limited() -> Admission {
        Admission::new(&[], 1000, 0).with_per_source(PerSourceLimits {
            max_calls: 4,
            calls_per_second: 2,
            burst: 3,
            max_unacked: 2,
            trusted_sources: vec!["192.0.2.0/24".into()],
            log_interval: Duration::from_secs(10),
        })
    }

    #[test]
    fn unacked_invites_are_capped_per_source_and_free_on_ack() {
        let t0 = Instant::now();
        let mut a = limited();
        let flood = ip("127.0.0.2");
        assert!(a.admit(t0, flood, 0, 1).is_ok());
        assert!(a.admit(t0, flood, 1, 2).is_ok());
        assert_eq!(a.admit(t0, flood, 2, 3), Err(Refusal::SourceUnacked));
        // Another source is not affected.
        assert!(a.admit(t0, ip("127.0.0.3"), 2, 4).is_ok());
        assert_eq!(a.source_usage(flood), (2, 2));
        a.acked(1);
        a.acked(1); // twice: counted once
        assert_eq!(a.source_usage(flood), (2, 1));
        assert!(a.admit(t0, flood, 3, 5).is_ok());
        // Release frees both counts, once.
        a.release(2);
        a.release(2);
        a.release(999); // unknown: ignored
        assert_eq!(a.source_usage(flood), (2, 1));
    }

    #[test]
    fn token_bucket_and_concurrent_cap_per_source() {
        let t0 = Instant::now();
        let mut a = limited();
        let s = ip("198.51.100.7");
        let mut n = 0;
        let mut admit = |a: &mut Admission, t: Instant| {
            n += 1;
            let r = a.admit(t, s, 0, n);
            if r.is_ok() {
                a.acked(n);
            }
            r
        };
        // Burst of 3, then empty.
        for _ in 0..3 {
            assert!(admit(&mut a, t0).is_ok());
        }
        assert_eq!(admit(&mut a, t0), Err(Refusal::SourceRate));
        // Half a second refills one token (2/s).
        assert!(admit(&mut a, t0 + Duration::from_millis(500)).is_ok());
        // Four calls in progress: the concurrent cap now, whatever the bucket.
        assert_eq!(
            admit(&mut a, t0 + Duration::from_secs(10)),
            Err(Refusal::SourceCalls)
        );
        a.release(1);
        assert!(admit(&mut a, t0 + Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn trusted_sources_bypass_per_source_but_not_global_limits() {
        let t0 = Instant::now();
        let mut a = limited();
        let trunk = ip("192.0.2.10");
        for n in 0..50 {
            assert!(a.admit(t0, trunk, n as usize, n).is_ok(), "call {n}");
        }
        assert_eq!(a.source_usage(trunk), (50, 50));
        assert_eq!(a.admit(t0, trunk, 1000, 99), Err(Refusal::AtCapacity));
        let mut g = Admission::new(&[], 1000, 3).with_per_source(limited().limits);
        for n in 0..3 {
            assert!(g.admit(t0, trunk, 0, n).is_ok());
        }
        assert_eq!(g.admit(t0, trunk, 0, 9), Err(Refusal::TooFast));
    }

    #[test]
    fn a_refused_source_spends_no_global_rate() {
        let t0 = Instant::now();
        let mut a = Admission::new(&[], 1000, 5).with_per_source(PerSourceLimits {
            max_unacked: 1,
            ..PerSourceLimits::default()
        });
        assert!(a.admit(t0, ip("127.0.0.2"), 0, 1).is_ok());
        for n in 2..1000 {
            assert_eq!(
                a.admit(t0, ip("127.0.0.2"), 1, n),
                Err(Refusal::SourceUnacked)
            );
        }
        for n in 0..4 {
            assert!(a.admit(t0, ip("127.0.0.3"), 1, 2000 + n).is_ok());
            a.acked(2000 + n);
        }
        assert_eq!(a.admit(t0, ip("127.0.0.4"), 1, 3000), Err(Refusal::TooFast));
    }

    #[test]
    fn idle_sources_are_forgotten() {
        let t0 = Instant::now();
        let mut a = limited();
        for i in 0..100u64 {
            let s = IpAddr::from([10, 0, (i / 250) as u8, (i % 250) as u8]);
            assert!(a.admit(t0, s, 0, i).is_ok());
            a.acked(i);
            a.release(i);
        }
        a.handle_timeout(t0 + Duration::from_secs(5));
        assert!(a.sources.is_empty(), "{}", a.sources.len());
        assert_eq!(a.admitted(), 0);
    }

    #[test]
    fn refusal_log_is_a_bounded_summary() {
        let t0 = Instant::now();
        let mut log = RefusalLog::new(Duration::from_secs(10));
        assert_eq!(log.due(), None);
        for i in 0..10_000u32 {
            log.note(t0, ip("127.0.0.2"), Refusal::SourceUnacked);
            log.note(t0, IpAddr::from(i.to_be_bytes()), Refusal::SourceRate);
        }
        assert_eq!(log.due(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(log.by_source.len(), TRACKED_SOURCES);
        assert_eq!(
            log.by_source[&ip("127.0.0.2")][Refusal::SourceUnacked.index()],
            10_000
        );
        log.flush_due(t0 + Duration::from_secs(9));
        assert!(log.due().is_some());
        log.flush_due(t0 + Duration::from_secs(10));
        assert_eq!(log.due(), None);
        assert!(log.by_source.is_empty());
        let mut c = [0; Refusal::ALL.len()];
        c[Refusal::SourceRate.index()] = 12;
        c[Refusal::SourceUnacked.index()] = 4410;
        assert_eq!(describe(&c), "source_rate=12 source_unacked=4410");
    }
}
