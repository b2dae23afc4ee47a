//! SIP digest authentication for agents that REGISTER (RFC 3261 §22.4,
//! RFC 7616 HTTP Digest with MD5 and SHA-256, RFC 8760 SHA-256 in SIP).
//!
//! - **Stateless nonces** (RFC 7616 §3.3 suggests "time-stamp H(time-stamp
//!   ":" ETag ":" secret)"): `hex(timestamp) hex(counter) hex(HMAC-SHA256(
//!   secret, timestamp:counter:realm))[..32]`. The server keeps nothing per
//!   challenge; a nonce older than `nonce_lifetime` is *stale* and earns a
//!   fresh challenge with `stale=true` (only when the credentials were
//!   otherwise right, as §3.3 requires).
//! - **`qop=auth` is required**, so every response carries a nonce count;
//!   an `nc` not greater than the last accepted one for that nonce is a
//!   replay (§3.4.1 / §5.3). Only successful authentications are
//!   remembered, so a flood of bad requests cannot grow that table, and it
//!   is bounded anyway.
//! - **Constant-time comparison** of the response.
//! - **Unknown users are indistinguishable from wrong passwords**: same
//!   error, same challenge, and the full digest computation is done with a
//!   dummy secret so that the work (and time) is the same (RFC 7616 §5.2's
//!   concern about user enumeration; docs/domain.md#pin-and-lockout: the line never
//!   reveals what exists).
//!
//! The secret returned by the lookup is either the plain password or a
//! stored HA1 written `ha1-md5:<32 hex>` / `ha1-sha256:<64 hex>` (RFC 7616
//! §3.4.2: servers may store H(username:realm:password) instead). An HA1
//! is only usable with its own algorithm and realm.
//!
//! - **Guessing resistance** ([`GuessLimits`], [`DigestAuth::verify_from`]):
//!   wrong answers are counted per agent and per source address. Too many
//!   for one agent within the window lock that agent (the lock doubles for
//!   each further lock without a good login in between); too many from one
//!   address block that address, and a blocked address adds nothing to any
//!   agent's count, so one address can lock at most
//!   `source_max_failures / max_failures` agents per window instead of all
//!   of them. The address an agent last logged in from stays usable while
//!   that agent is locked (its own phone is not locked out by someone
//!   else's guessing). While locked or blocked even the right password is
//!   refused, with exactly the 401 of a wrong one and after the same work,
//!   so the answer reveals neither the lock nor the password.
//!
//! Nothing here logs or prints passwords or digests; user names are
//! logged only when they are configured agents (an attacker's made-up
//! names never reach the log).

use core::net::IpAddr;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{KeyInit, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

/// A digest algorithm (RFC 7616 §3.4.1 / §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// The token used in `algorithm=`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    fn parse(s: &str) -> Option<Algorithm> {
        if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// Lower-case hex of H(data).
    fn hash_hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data)),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data)),
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 => 64,
        }
    }
}

/// Why a request was not authenticated. Messages carry no user name,
/// password or digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// No or unparsable `Authorization`, missing fields, no `qop=auth`:
    /// reply 401 with a fresh challenge (or 400).
    #[error("malformed digest credentials")]
    Malformed,
    /// An algorithm this server does not offer.
    #[error("unsupported digest algorithm")]
    UnsupportedAlgorithm,
    /// Wrong password, unknown user, foreign nonce or realm: 401 with a
    /// fresh challenge. Deliberately one variant for all of them.
    #[error("authentication failed")]
    Unauthorized,
    /// Right credentials, expired nonce: 401 with `stale=true`.
    #[error("stale nonce")]
    Stale,
    /// Nonce count not increasing: 401 with a fresh challenge.
    #[error("replayed nonce count")]
    Replay,
}

/// Digest authenticator; one per service, shared by every REGISTER.
pub struct DigestAuth {
    secret: Vec<u8>,
    nonce_lifetime: u64,
    algorithms: Vec<Algorithm>,
    counter: AtomicU64,
    /// nonce → (timestamp, highest accepted nc)
    seen: HashMap<String, (u64, u32)>,
    max_tracked: usize,
    /// Nonces issued at or before this time were dropped from `seen` while
    /// still live; they count as stale so their holders are re-challenged
    /// (otherwise a captured response could be replayed).
    evicted_upto: u64,
    guard: GuessGuard,
}

impl std::fmt::Debug for DigestAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestAuth")
            .field("secret", &"<redacted>")
            .field("nonce_lifetime", &self.nonce_lifetime)
            .field("algorithms", &self.algorithms)
            .field("tracked_nonces", &self.seen.len())
            .finish()
    }
}

/// Longest `Authorization` value accepted (real ones are ~300 bytes).
const MAX_HEADER: usize = 4096;
const MAX_PARAMS: usize = 32;

impl DigestAuth {
    /// `secret` keys the nonce MAC (keep it out of the database and config
    /// dumps; 32 random bytes is plenty). Nonces are stale after
    /// `nonce_lifetime_secs`. Challenges offer SHA-256 then MD5 (RFC 8760
    /// §2.4: most preferred first); [`DigestAuth::challenge`] returns the
    /// MD5 one, which every SIP phone understands.
    pub fn new(secret: &[u8], nonce_lifetime_secs: u64) -> DigestAuth {
        DigestAuth {
            secret: secret.to_vec(),
            nonce_lifetime: nonce_lifetime_secs.max(1),
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            counter: AtomicU64::new(rand::random()),
            seen: HashMap::new(),
            max_tracked: 100_000,
            evicted_upto: 0,
            guard: GuessGuard::new(GuessLimits::default()),
        }
    }

    /// Sets the guessing limits used by [`DigestAuth::verify_from`].
    pub fn with_guessing_limits(mut self, limits: GuessLimits) -> DigestAuth {
        self.guard = GuessGuard::new(limits);
        self
    }

    /// [`DigestAuth::verify_for_uri`] for a request from `source`, with
    /// guessing resistance (see the module docs): a wrong answer is counted
    /// against the agent and the source; while either is locked the result
    /// is [`DigestError::Unauthorized`], whatever the credentials.
    #[allow(clippy::too_many_arguments)]
    pub fn verify_from(
        &mut self,
        method: &str,
        request_uri: &str,
        authorization: &str,
        lookup: impl Fn(&str) -> Option<String>,
        now_unix: u64,
        source: IpAddr,
    ) -> Result<String, DigestError> {
        let mut user = None;
        let result = self.verify_core(
            method,
            Some(request_uri),
            authorization,
            |u| {
                let found = lookup(u);
                if found.is_some() {
                    user = Some(u.to_owned());
                }
                found
            },
            now_unix,
        );
        self.guard.judge(now_unix, user.as_deref(), source, result)
    }

    /// Writes the failure summary when its interval is over (call it now
    /// and then; a summary is also written on the next attempt).
    pub fn handle_timeout(&mut self, now_unix: u64) {
        self.guard.flush_due(now_unix);
    }

    /// Whether logins for `agent` are locked at `now_unix` (admin view).
    pub fn agent_locked(&self, agent: &str, now_unix: u64) -> bool {
        self.guard
            .agents
            .get(agent)
            .is_some_and(|a| a.locked_until > now_unix)
    }

    /// Restricts or reorders the offered algorithms (first = preferred).
    /// An empty list keeps the default.
    pub fn with_algorithms(mut self, algorithms: &[Algorithm]) -> DigestAuth {
        if !algorithms.is_empty() {
            self.algorithms = algorithms.to_vec();
        }
        self
    }

    fn mac(&self, ts: u64, counter: u64, realm: &str) -> String {
        // Cannot fail: HMAC accepts keys of any length.
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(format!("{ts}:{counter}:{realm}").as_bytes());
        let tag = m.finalize().into_bytes();
        hex::encode(&tag[..16])
    }

    fn make_nonce(&self, now_unix: u64, realm: &str) -> String {
        let counter = self.counter.fetch_add(1, Ordering::Relaxed);
        format!(
            "{now_unix:016x}{counter:016x}{}",
            self.mac(now_unix, counter, realm)
        )
    }

    /// Checks a nonce's MAC; returns its timestamp.
    fn check_nonce(&self, nonce: &str, realm: &str) -> Option<u64> {
        if nonce.len() != 64 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let ts = u64::from_str_radix(nonce.get(..16)?, 16).ok()?;
        let counter = u64::from_str_radix(nonce.get(16..32)?, 16).ok()?;
        let expected = self.mac(ts, counter, realm);
        ct_eq(
            expected.as_bytes(),
            nonce.get(32..)?.to_ascii_lowercase().as_bytes(),
        )
        .then_some(ts)
    }

    /// The `WWW-Authenticate` (or `Proxy-Authenticate`) value for a 401,
    /// with the MD5 algorithm if offered, else the preferred one.
    pub fn challenge(&self, now_unix: u64, realm: &str) -> String {
        let alg = if self.algorithms.contains(&Algorithm::Md5) {
            Algorithm::Md5
        } else {
            self.algorithms[0]
        };
        let nonce = self.make_nonce(now_unix, realm);
        challenge_value(realm, &nonce, alg, false)
    }

    /// One value per offered algorithm, preferred first (RFC 8760 §2.4:
    /// send each as its own `WWW-Authenticate` header). `stale` after
    /// [`DigestError::Stale`].
    pub fn challenges(&self, now_unix: u64, realm: &str, stale: bool) -> Vec<String> {
        let nonce = self.make_nonce(now_unix, realm);
        self.algorithms
            .iter()
            .map(|&alg| challenge_value(realm, &nonce, alg, stale))
            .collect()
    }

    /// Verifies an `Authorization` value for a request with `method`
    /// (e.g. `REGISTER`). `lookup` returns the user's password or stored
    /// HA1. Returns the authenticated user name. The caller should also
    /// check that the credentials' `uri` is the Request-URI; see
    /// [`DigestAuth::verify_for_uri`].
    pub fn verify(
        &mut self,
        method: &str,
        authorization: &str,
        lookup: impl Fn(&str) -> Option<String>,
        now_unix: u64,
    ) -> Result<String, DigestError> {
        self.verify_inner(method, None, authorization, lookup, now_unix)
    }

    /// [`DigestAuth::verify`], also requiring `uri="..."` to equal
    /// `request_uri` (RFC 7616 §3.4.6: the digest-uri must match the request
    /// target, or a captured response could be aimed elsewhere).
    pub fn verify_for_uri(
        &mut self,
        method: &str,
        request_uri: &str,
        authorization: &str,
        lookup: impl Fn(&str) -> Option<String>,
        now_unix: u64,
    ) -> Result<String, DigestError> {
        self.verify_inner(method, Some(request_uri), authorization, lookup, now_unix)
    }

    fn verify_inner(
        &mut self,
        method: &str,
        request_uri: Option<&str>,
        authorization: &str,
        lookup: impl Fn(&str) -> Option<String>,
        now_unix: u64,
    ) -> Result<String, DigestError> {
        self.verify_core(method, request_uri, authorization, lookup, now_unix)
    }

    fn verify_core(
        &mut self,
        method: &str,
        request_uri: Option<&str>,
        authorization: &str,
        mut lookup: impl FnMut(&str) -> Option<String>,
        now_unix: u64,
    ) -> Result<String, DigestError> {
        let p = Credentials::parse(authorization)?;
        if !p.qop.eq_ignore_ascii_case("auth") {
            return Err(DigestError::Malformed);
        }
        let alg = match &p.algorithm {
            None => Algorithm::Md5,
            Some(a) => Algorithm::parse(a).ok_or(DigestError::UnsupportedAlgorithm)?,
        };
        if !self.algorithms.contains(&alg) {
            return Err(DigestError::UnsupportedAlgorithm);
        }
        if request_uri.is_some_and(|u| u != p.uri) {
            // Counted as a failure for the named agent too (a guesser must
            // not get free tries by varying the uri).
            let _ = lookup(&p.username);
            return Err(DigestError::Unauthorized);
        }
        let nc = parse_nc(&p.nc)?;
        // A nonce we did not issue (or for another realm) is a plain
        // failure; it says nothing about the user.
        let Some(ts) = self
            .check_nonce(&p.nonce, &p.realm)
            .filter(|ts| *ts <= now_unix.saturating_add(60))
        else {
            let _ = lookup(&p.username);
            return Err(DigestError::Unauthorized);
        };
        let stale = now_unix.saturating_sub(ts) > self.nonce_lifetime || ts <= self.evicted_upto;

        // Same work whether the user exists or not: compute the full
        // digest with a dummy secret for an unknown user.
        let stored = lookup(&p.username);
        let known = stored.is_some();
        let dummy = self.mac(0, 0, "unknown-user");
        let (ha1, usable) = ha1_for(
            alg,
            &p.username,
            &p.realm,
            stored.as_deref().unwrap_or(&dummy),
        );
        let expected = response_from_ha1(
            alg, &ha1, &p.nonce, &p.nc, &p.cnonce, &p.qop, method, &p.uri,
        );
        let given = p.response.to_ascii_lowercase();
        let matches = ct_eq(expected.as_bytes(), given.as_bytes());
        if !(matches & known & usable) {
            return Err(DigestError::Unauthorized);
        }
        if stale {
            return Err(DigestError::Stale);
        }
        match self.seen.get(&p.nonce) {
            Some(&(_, last)) if nc <= last => return Err(DigestError::Replay),
            _ => {}
        }
        self.remember(p.nonce.clone(), ts, nc, now_unix);
        Ok(p.username)
    }

    fn remember(&mut self, nonce: String, ts: u64, nc: u32, now_unix: u64) {
        if self.seen.len() >= self.max_tracked {
            let lifetime = self.nonce_lifetime;
            self.seen
                .retain(|_, (t, _)| now_unix.saturating_sub(*t) <= lifetime);
            if self.seen.len() >= self.max_tracked {
                // Still full of live nonces: drop the older half. Their
                // holders are re-challenged (`evicted_upto` makes them stale).
                let mut ts_list: Vec<u64> = self.seen.values().map(|(t, _)| *t).collect();
                ts_list.sort_unstable();
                let cut = ts_list[ts_list.len() / 2];
                self.seen.retain(|_, (t, _)| *t > cut);
                self.evicted_upto = self.evicted_upto.max(cut);
            }
        }
        self.seen.insert(nonce, (ts, nc));
    }
}

fn challenge_value(realm: &str, nonce: &str, alg: Algorithm, stale: bool) -> String {
    let mut s = format!(
        "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"",
        quote_escape(realm),
        alg.name()
    );
    if stale {
        s.push_str(", stale=true");
    }
    s
}

fn quote_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        if !c.is_control() {
            out.push(c);
        }
    }
    out
}

fn parse_nc(nc: &str) -> Result<u32, DigestError> {
    if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DigestError::Malformed);
    }
    u32::from_str_radix(nc, 16).map_err(|_| DigestError::Malformed)
}

/// HA1 for `alg`; `false` if the stored secret is an HA1 for another
/// algorithm or malformed (then a dummy HA1 of the right shape is returned,
/// so the caller still does the same work).
fn ha1_for(alg: Algorithm, user: &str, realm: &str, secret: &str) -> (String, bool) {
    let stored = [
        ("ha1-md5:", Algorithm::Md5),
        ("ha1-sha256:", Algorithm::Sha256),
    ]
    .into_iter()
    .find_map(|(prefix, a)| secret.strip_prefix(prefix).map(|h| (a, h)));
    match stored {
        Some((a, h))
            if a == alg && h.len() == alg.hex_len() && h.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            (h.to_ascii_lowercase(), true)
        }
        Some(_) => (alg.hash_hex(format!("{user}:{realm}:").as_bytes()), false),
        None => (
            alg.hash_hex(format!("{user}:{realm}:{secret}").as_bytes()),
            true,
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn response_from_ha1(
    alg: Algorithm,
    ha1: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    qop: &str,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = alg.hash_hex(format!("{method}:{uri}").as_bytes());
    alg.hash_hex(format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}").as_bytes())
}

/// The `response=` value a client computes with `qop=auth` (RFC 7616
/// §3.4.1): H(H(user:realm:password):nonce:nc:cnonce:qop:H(method:uri)).
/// Public for tests and for the runtime's own client side, if any.
#[allow(clippy::too_many_arguments)]
pub fn digest_response(
    alg: Algorithm,
    username: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
) -> String {
    let ha1 = alg.hash_hex(format!("{username}:{realm}:{password}").as_bytes());
    response_from_ha1(alg, &ha1, nonce, nc, cnonce, "auth", method, uri)
}

/// The stored form of an HA1 for `lookup` results: `ha1-md5:<hex>` or
/// `ha1-sha256:<hex>`.
pub fn stored_ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    let prefix = match alg {
        Algorithm::Md5 => "ha1-md5:",
        Algorithm::Sha256 => "ha1-sha256:",
    };
    let mut s = String::from(prefix);
    let _ = write!(
        s,
        "{}",
        alg.hash_hex(format!("{username}:{realm}:{password}").as_bytes())
    );
    s
}

/// Constant-time equality: the time depends on the lengths only.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// The fields of a `Digest` credentials value.
#[derive(Debug, Default)]
struct Credentials {
    username: String,
    realm: String,
    nonce: String,
    uri: String,
    response: String,
    algorithm: Option<String>,
    cnonce: String,
    nc: String,
    qop: String,
}

impl Credentials {
    /// Parses `Digest k=v, k="v", ...` (RFC 7616 §3.4, RFC 7235 §2.1
    /// auth-param syntax; quoted strings with backslash escapes).
    fn parse(value: &str) -> Result<Credentials, DigestError> {
        if value.len() > MAX_HEADER {
            return Err(DigestError::Malformed);
        }
        let v = value.trim_start();
        let scheme_end = v
            .find(|c: char| c.is_ascii_whitespace())
            .ok_or(DigestError::Malformed)?;
        let (scheme, mut rest) = v.split_at(scheme_end);
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(DigestError::Malformed);
        }
        let mut params: HashMap<String, String> = HashMap::new();
        loop {
            rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == ',');
            if rest.is_empty() {
                break;
            }
            if params.len() >= MAX_PARAMS {
                return Err(DigestError::Malformed);
            }
            let eq = rest.find('=').ok_or(DigestError::Malformed)?;
            let name = rest[..eq].trim().to_ascii_lowercase();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(DigestError::Malformed);
            }
            rest = rest[eq + 1..].trim_start();
            let value;
            if let Some(q) = rest.strip_prefix('"') {
                let mut out = String::new();
                let mut chars = q.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => match chars.next() {
                            Some((_, e)) => out.push(e),
                            None => return Err(DigestError::Malformed),
                        },
                        '"' => {
                            end = Some(i + 1);
                            break;
                        }
                        _ => out.push(c),
                    }
                }
                let end = end.ok_or(DigestError::Malformed)?;
                value = out;
                rest = &q[end..];
            } else {
                let end = rest
                    .find(|c: char| c == ',' || c.is_ascii_whitespace())
                    .unwrap_or(rest.len());
                value = rest[..end].to_owned();
                rest = &rest[end..];
            }
            // After a value only whitespace then a comma (or the end).
            let after = rest.trim_start();
            if !(after.is_empty() || after.starts_with(',')) {
                return Err(DigestError::Malformed);
            }
            rest = after;
            if params.insert(name, value).is_some() {
                return Err(DigestError::Malformed);
            }
        }
        let mut take = |k: &str| params.remove(k).filter(|s| !s.is_empty());
        let c = Credentials {
            username: take("username").ok_or(DigestError::Malformed)?,
            realm: take("realm").ok_or(DigestError::Malformed)?,
            nonce: take("nonce").ok_or(DigestError::Malformed)?,
            uri: take("uri").ok_or(DigestError::Malformed)?,
            response: take("response").ok_or(DigestError::Malformed)?,
            algorithm: take("algorithm"),
            cnonce: take("cnonce").ok_or(DigestError::Malformed)?,
            nc: take("nc").ok_or(DigestError::Malformed)?,
            qop: take("qop").ok_or(DigestError::Malformed)?,
        };
        if take("userhash").is_some_and(|u| u.eq_ignore_ascii_case("true")) {
            // RFC 7616 §3.4.4 user hashing is not offered by our challenges.
            return Err(DigestError::Malformed);
        }
        Ok(c)
    }
}

/// Guessing limits for agent logins (`[agent_auth]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuessLimits {
    /// Wrong answers for one agent within `window_secs` that lock it.
    pub max_failures: u32,
    /// Wrong answers from one source within `window_secs` that block it.
    pub source_max_failures: u32,
    pub window_secs: u64,
    /// The first lock (and block); each further lock of the same agent
    /// without a good login in between doubles, up to `max_lock_secs`.
    pub lock_secs: u64,
    pub max_lock_secs: u64,
    /// Failures are summarised in the log once per this many seconds.
    pub log_interval_secs: u64,
}

impl Default for GuessLimits {
    fn default() -> Self {
        GuessLimits {
            max_failures: 5,
            source_max_failures: 20,
            window_secs: 300,
            lock_secs: 900,
            max_lock_secs: 86_400,
            log_interval_secs: 60,
        }
    }
}

/// Sources tracked at once; beyond, new sources are not counted (the
/// per-agent lock still applies to them).
const MAX_SOURCES: usize = 65_536;

#[derive(Debug, Default)]
struct AgentFailures {
    /// Times of wrong answers within the window (at most `max_failures`).
    recent: VecDeque<u64>,
    locked_until: u64,
    /// Locks since the last good login (the next lock is 2^strikes longer).
    strikes: u32,
    /// Where the agent last logged in successfully: exempt from its lock.
    good_source: Option<IpAddr>,
}

#[derive(Debug, Default)]
struct SourceFailures {
    recent: VecDeque<u64>,
    blocked_until: u64,
}

/// Counts for the periodic summary line, per agent.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    wrong: u64,
    refused_locked: u64,
}

/// Per-agent and per-source failure counting; sans-IO (`now_unix` in).
#[derive(Debug)]
struct GuessGuard {
    limits: GuessLimits,
    agents: HashMap<String, AgentFailures>,
    sources: HashMap<IpAddr, SourceFailures>,
    last_prune: u64,
    /// Summary since `summary_since`: configured agent (or "" for names
    /// that are not agents) → counts.
    summary: HashMap<String, Tally>,
    summary_sources: HashSet<IpAddr>,
    summary_since: Option<u64>,
}

fn push_window(recent: &mut VecDeque<u64>, now: u64, window: u64, cap: usize) -> usize {
    while recent
        .front()
        .is_some_and(|t| now.saturating_sub(*t) >= window)
    {
        recent.pop_front();
    }
    recent.push_back(now);
    while recent.len() > cap.max(1) {
        recent.pop_front();
    }
    recent.len()
}

impl GuessGuard {
    fn new(limits: GuessLimits) -> GuessGuard {
        GuessGuard {
            limits,
            agents: HashMap::new(),
            sources: HashMap::new(),
            last_prune: 0,
            summary: HashMap::new(),
            summary_sources: HashSet::new(),
            summary_since: None,
        }
    }

    /// Applies the limits to a verification `result` for `user` (Some only
    /// for a configured agent) from `source`.
    fn judge(
        &mut self,
        now: u64,
        user: Option<&str>,
        source: IpAddr,
        result: Result<String, DigestError>,
    ) -> Result<String, DigestError> {
        self.flush_due(now);
        let source_blocked = self
            .sources
            .get(&source)
            .is_some_and(|s| s.blocked_until > now);
        let agent_locked = user
            .and_then(|u| self.agents.get(u))
            .is_some_and(|a| a.locked_until > now && a.good_source != Some(source));
        let wrong = matches!(result, Err(DigestError::Unauthorized));
        if source_blocked || agent_locked {
            if result.is_ok() || wrong {
                self.tally(now, user, source, false);
                metrics::counter!("ivr_agent_auth_failures_total", "reason" => "locked")
                    .increment(1);
                // A blocked source adds nothing to any agent's count; one
                // that keeps guessing at a locked agent gets blocked itself.
                if wrong && !source_blocked {
                    self.source_failure(now, source);
                }
            }
            return match result {
                Ok(_) => Err(DigestError::Unauthorized),
                other => other,
            };
        }
        match &result {
            Ok(agent) => {
                let a = self.agents.entry(agent.clone()).or_default();
                a.recent.clear();
                a.strikes = 0;
                a.good_source = Some(source);
            }
            Err(DigestError::Unauthorized) => {
                self.tally(now, user, source, true);
                metrics::counter!("ivr_agent_auth_failures_total", "reason" => "wrong")
                    .increment(1);
                self.source_failure(now, source);
                if let Some(u) = user {
                    self.agent_failure(now, u);
                }
            }
            // Malformed, stale, replayed: not a guess at the password.
            Err(_) => {}
        }
        result
    }

    fn agent_failure(&mut self, now: u64, agent: &str) {
        let l = &self.limits;
        let a = self.agents.entry(agent.to_owned()).or_default();
        let n = push_window(&mut a.recent, now, l.window_secs, l.max_failures as usize);
        if n >= l.max_failures as usize {
            let secs = l
                .lock_secs
                .saturating_mul(1u64 << a.strikes.min(20))
                .min(l.max_lock_secs.max(l.lock_secs));
            a.locked_until = now.saturating_add(secs);
            a.strikes = a.strikes.saturating_add(1);
            a.recent.clear();
            tracing::warn!(
                agent,
                failures = n,
                lock_secs = secs,
                "agent login locked after repeated wrong digest answers"
            );
        }
    }

    fn source_failure(&mut self, now: u64, source: IpAddr) {
        if !self.sources.contains_key(&source) && self.sources.len() >= MAX_SOURCES {
            self.prune(now);
            if self.sources.len() >= MAX_SOURCES {
                return;
            }
        }
        let l = &self.limits;
        let s = self.sources.entry(source).or_default();
        let n = push_window(
            &mut s.recent,
            now,
            l.window_secs,
            l.source_max_failures as usize,
        );
        if n >= l.source_max_failures as usize {
            s.blocked_until = now.saturating_add(l.lock_secs);
            s.recent.clear();
            tracing::warn!(
                %source,
                failures = n,
                block_secs = l.lock_secs,
                "source blocked from agent login after repeated wrong digest answers"
            );
        }
    }

    /// Forgets sources with nothing in the window and no block (at most
    /// once a second).
    fn prune(&mut self, now: u64) {
        if now == self.last_prune {
            return;
        }
        self.last_prune = now;
        let window = self.limits.window_secs;
        self.sources.retain(|_, s| {
            s.blocked_until > now
                || s.recent
                    .back()
                    .is_some_and(|t| now.saturating_sub(*t) < window)
        });
    }

    fn tally(&mut self, now: u64, user: Option<&str>, source: IpAddr, wrong: bool) {
        self.summary_since.get_or_insert(now);
        let t = self
            .summary
            .entry(user.unwrap_or_default().to_owned())
            .or_default();
        if wrong {
            t.wrong += 1;
        } else {
            t.refused_locked += 1;
        }
        if self.summary_sources.len() < 1024 {
            self.summary_sources.insert(source);
        }
    }

    fn flush_due(&mut self, now: u64) {
        let Some(since) = self.summary_since else {
            return;
        };
        if now.saturating_sub(since) < self.limits.log_interval_secs.max(1) {
            return;
        }
        self.summary_since = None;
        let sources = self.summary_sources.len();
        self.summary_sources.clear();
        let mut rows: Vec<(String, Tally)> = self.summary.drain().collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        for (agent, t) in rows {
            let agent = if agent.is_empty() {
                "(not an agent)"
            } else {
                agent.as_str()
            };
            tracing::warn!(
                agent,
                wrong = t.wrong,
                refused_while_locked = t.refused_locked,
                sources,
                interval_secs = now.saturating_sub(since),
                "agent digest login failures"
            );
        }
        self.prune(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_escapes_and_rejects_garbage() {
        let c = Credentials::parse(
            r#"Digest username="a\"b", realm="r", nonce=n, uri="sip:x", response="00", cnonce="c", nc=00000001, qop=auth"#,
        )
        .unwrap();
        assert_eq!(c.username, "a\"b");
        assert_eq!(c.nonce, "n");
        for bad in [
            "",
            "Basic dXNlcjpwYXNz",
            "Digest",
            "Digest username=\"unterminated",
            "Digest username=a username=b",
            "Digest username=a, username=b",
            "Digest =x",
            r#"Digest username="a", realm="r", nonce="n", uri="u", response="x", cnonce="c", nc=1"#,
        ] {
            assert!(Credentials::parse(bad).is_err(), "{bad}");
        }
        assert!(Credentials::parse(&"Digest a=b,".repeat(1000)).is_err());
    }

    const T0: u64 = 1_800_000_000;
    const URI: &str = "sip:ivr";

    fn guarded(limits: GuessLimits) -> DigestAuth {
        DigestAuth::new(b"guard-test-secret", 300).with_guessing_limits(limits)
    }

    fn lookup(u: &str) -> Option<String> {
        (u == "agent1" || u == "agent2").then(|| format!("pw-{u}"))
    }

    /// A fresh nonce answered for `user` with `password` at `now`.
    fn attempt(
        a: &mut DigestAuth,
        user: &str,
        password: &str,
        now: u64,
        src: &str,
    ) -> Result<String, DigestError> {
        let ch = a.challenge(now, "ivr12333");
        let nonce = ch
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let r = digest_response(
            Algorithm::Md5,
            user,
            "ivr12333",
            password,
            "REGISTER",
            URI,
            nonce,
            "00000001",
            "c",
        );
        let h = format!(
            "Digest username=\"{user}\", realm=\"ivr12333\", nonce=\"{nonce}\", uri=\"{URI}\", \
             response=\"{r}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c\""
        );
        a.verify_from("REGISTER", URI, &h, lookup, now, src.parse().unwrap())
    }

    fn limits() -> GuessLimits {
        GuessLimits {
            max_failures: 5,
            source_max_failures: 20,
            window_secs: 300,
            lock_secs: 60,
            max_lock_secs: 200,
            log_interval_secs: 60,
        }
    }

    #[test]
    fn five_wrong_answers_lock_the_agent_even_for_the_right_password() {
        let mut a = guarded(limits());
        for i in 0..4 {
            assert_eq!(
                attempt(&mut a, "agent1", "x", T0 + i, "10.0.0.1"),
                Err(DigestError::Unauthorized)
            );
        }
        assert!(!a.agent_locked("agent1", T0 + 4));
        assert_eq!(
            attempt(&mut a, "agent1", "x", T0 + 4, "10.0.0.2"),
            Err(DigestError::Unauthorized)
        );
        assert!(a.agent_locked("agent1", T0 + 4));
        // Right password, other source: the same error as a wrong one.
        assert_eq!(
            attempt(&mut a, "agent1", "pw-agent1", T0 + 5, "10.0.0.3"),
            Err(DigestError::Unauthorized)
        );
        // Other agents are not affected.
        assert_eq!(
            attempt(&mut a, "agent2", "pw-agent2", T0 + 5, "10.0.0.3"),
            Ok("agent2".into())
        );
        // After the lock: in again; a good login resets the count.
        assert_eq!(
            attempt(&mut a, "agent1", "pw-agent1", T0 + 65, "10.0.0.3"),
            Ok("agent1".into())
        );
        for i in 0..4 {
            let _ = attempt(&mut a, "agent1", "x", T0 + 66 + i, "10.0.0.9");
        }
        assert!(!a.agent_locked("agent1", T0 + 70));
    }

    #[test]
    fn locks_double_up_to_the_cap() {
        let mut a = guarded(GuessLimits {
            source_max_failures: 1000,
            ..limits()
        });
        let mut t = T0;
        for expected in [60, 120, 200, 200] {
            for _ in 0..5 {
                let _ = attempt(&mut a, "agent1", "x", t, "10.0.0.1");
            }
            assert!(a.agent_locked("agent1", t + expected - 1), "{expected}");
            assert!(!a.agent_locked("agent1", t + expected), "{expected}");
            t += expected;
        }
    }

    #[test]
    fn a_blocked_source_cannot_lock_more_agents() {
        let mut a = guarded(GuessLimits {
            max_failures: 5,
            source_max_failures: 7,
            ..limits()
        });
        // 5 wrong for agent1 (locked), 2 for agent2, then the source is blocked.
        for i in 0..5 {
            let _ = attempt(&mut a, "agent1", "x", T0 + i, "10.0.0.66");
        }
        for i in 0..100 {
            let _ = attempt(&mut a, "agent2", "x", T0 + 5 + i / 10, "10.0.0.66");
        }
        assert!(a.agent_locked("agent1", T0 + 20));
        assert!(!a.agent_locked("agent2", T0 + 20));
        assert_eq!(
            attempt(&mut a, "agent2", "pw-agent2", T0 + 20, "10.0.0.7"),
            Ok("agent2".into())
        );
        // The blocked source gets nothing, not even with the right password.
        assert_eq!(
            attempt(&mut a, "agent2", "pw-agent2", T0 + 21, "10.0.0.66"),
            Err(DigestError::Unauthorized)
        );
        // Names that are not agents never lock anything and are not kept.
        for i in 0..50 {
            let _ = attempt(&mut a, &format!("nobody{i}"), "x", T0 + 30, "10.0.1.1");
        }
        assert_eq!(a.guard.agents.len(), 2);
    }

    #[test]
    fn the_agents_own_phone_is_exempt_from_its_lock() {
        let mut a = guarded(limits());
        assert_eq!(
            attempt(&mut a, "agent1", "pw-agent1", T0, "10.0.0.5"),
            Ok("agent1".into())
        );
        for i in 0..5 {
            let _ = attempt(&mut a, "agent1", "x", T0 + 1 + i, "10.0.0.66");
        }
        assert!(a.agent_locked("agent1", T0 + 10));
        assert_eq!(
            attempt(&mut a, "agent1", "pw-agent1", T0 + 10, "10.0.0.5"),
            Ok("agent1".into())
        );
        assert_eq!(
            attempt(&mut a, "agent1", "pw-agent1", T0 + 10, "10.0.0.6"),
            Err(DigestError::Unauthorized)
        );
    }

    #[test]
    fn constant_time_eq() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
