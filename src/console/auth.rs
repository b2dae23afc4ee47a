//! Console sign-in: argon2id password hashes, API token hashes, sessions
//! with CSRF tokens, and the sign-in throttle. Sessions and the throttle are
//! plain state machines that take `now`; the router holds them behind a
//! mutex.
//!
//! Password hash form (same shape as the ledger's PIN hashes):
//! `$argon2id$v=19$m=19456,t=2,p=1$<salt hex>$<hash hex>`, 16-byte salt,
//! 32-byte output. Tokens are random 32-byte values shown once as hex; the
//! configuration keeps only their SHA-256.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};

/// argon2id cost for console passwords (RFC 9106 second recommendation
/// scaled down: 19 MiB, 2 passes, as OWASP suggests).
pub const M_COST_KIB: u32 = 19_456;
pub const T_COST: u32 = 2;
pub const P_COST: u32 = 1;

/// Who a signed-in user is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Supervisor,
    Agent,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "supervisor" => Some(Role::Supervisor),
            "agent" => Some(Role::Agent),
            _ => None,
        }
    }
}

/// Constant-time equality (length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn argon(m: u32, t: u32, p: u32) -> Option<Argon2<'static>> {
    let params = Params::new(m, t, p, Some(32)).ok()?;
    Some(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password with a random salt.
pub fn hash_password(password: &str) -> String {
    let salt: [u8; 16] = rand::random();
    let mut out = [0u8; 32];
    // The parameters are constants known to be valid.
    if let Some(a) = argon(M_COST_KIB, T_COST, P_COST) {
        let _ = a.hash_password_into(password.as_bytes(), &salt, &mut out);
    }
    format!(
        "$argon2id$v=19$m={M_COST_KIB},t={T_COST},p={P_COST}${}${}",
        hex::encode(salt),
        hex::encode(out)
    )
}

/// Why a stored hash cannot be used.
pub fn check_hash_format(stored: &str) -> Result<(), String> {
    parse_hash(stored).map(|_| ())
}

struct Parsed {
    m: u32,
    t: u32,
    p: u32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

fn parse_hash(stored: &str) -> Result<Parsed, String> {
    let parts: Vec<&str> = stored.split('$').collect();
    if parts.len() != 6 || !parts[0].is_empty() || parts[1] != "argon2id" || parts[2] != "v=19" {
        return Err("not an `$argon2id$v=19$m=..,t=..,p=..$salt$hash` string".into());
    }
    let mut m = None;
    let mut t = None;
    let mut p = None;
    for kv in parts[3].split(',') {
        let (k, v) = kv.split_once('=').ok_or("bad parameter list")?;
        let v: u32 = v.parse().map_err(|_| "bad parameter value")?;
        match k {
            "m" => m = Some(v),
            "t" => t = Some(v),
            "p" => p = Some(v),
            _ => return Err(format!("unknown parameter `{k}`")),
        }
    }
    let (m, t, p) = (
        m.ok_or("missing m")?,
        t.ok_or("missing t")?,
        p.ok_or("missing p")?,
    );
    // Refuse absurd costs: a hash in the config must not be able to stall
    // sign-in for minutes or exhaust memory.
    if !(8..=262_144).contains(&m) || !(1..=16).contains(&t) || !(1..=8).contains(&p) {
        return Err("argon2 parameters out of range (m ≤ 256 MiB, t ≤ 16, p ≤ 8)".into());
    }
    let salt = hex::decode(parts[4]).map_err(|_| "salt is not hex")?;
    let hash = hex::decode(parts[5]).map_err(|_| "hash is not hex")?;
    if salt.len() < 8 || hash.len() != 32 {
        return Err("salt must be ≥ 8 bytes and the hash 32 bytes".into());
    }
    Ok(Parsed {
        m,
        t,
        p,
        salt,
        hash,
    })
}

/// Verifies `password` against a stored hash (false for a malformed hash).
pub fn verify_password(password: &str, stored: &str) -> bool {
    let Ok(h) = parse_hash(stored) else {
        return false;
    };
    let Some(a) = argon(h.m, h.t, h.p) else {
        return false;
    };
    let mut out = [0u8; 32];
    if a.hash_password_into(password.as_bytes(), &h.salt, &mut out)
        .is_err()
    {
        return false;
    }
    ct_eq(&out, &h.hash)
}

/// SHA-256 of a token, hex.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()).as_slice())
}

/// A new random token (hex of 32 random bytes).
pub fn new_token() -> String {
    let b: [u8; 32] = rand::random();
    hex::encode(b)
}

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub role: Role,
    /// The agent an agent user controls.
    pub agent: Option<String>,
    pub csrf: String,
    last_seen: Instant,
}

/// Sessions by id (random 32 bytes, hex), idle-expiring.
#[derive(Debug)]
pub struct Sessions {
    by_id: HashMap<String, Session>,
    idle: Duration,
    max: usize,
}

impl Sessions {
    pub fn new(idle: Duration) -> Sessions {
        Sessions {
            by_id: HashMap::new(),
            idle,
            max: 10_000,
        }
    }

    /// Starts a session; returns its id. The oldest sessions make room
    /// when the table is full.
    pub fn create(
        &mut self,
        now: Instant,
        user: &str,
        role: Role,
        agent: Option<String>,
    ) -> (String, Session) {
        self.expire(now);
        if self.by_id.len() >= self.max
            && let Some(oldest) = self
                .by_id
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone())
        {
            self.by_id.remove(&oldest);
        }
        let id = new_token();
        let s = Session {
            user: user.to_owned(),
            role,
            agent,
            csrf: new_token(),
            last_seen: now,
        };
        self.by_id.insert(id.clone(), s.clone());
        (id, s)
    }

    /// The live session with this id (touching it).
    pub fn get(&mut self, now: Instant, id: &str) -> Option<Session> {
        let idle = self.idle;
        let s = self.by_id.get_mut(id)?;
        if now.saturating_duration_since(s.last_seen) > idle {
            self.by_id.remove(id);
            return None;
        }
        s.last_seen = now;
        Some(s.clone())
    }

    pub fn remove(&mut self, id: &str) {
        self.by_id.remove(id);
    }

    fn expire(&mut self, now: Instant) {
        let idle = self.idle;
        self.by_id
            .retain(|_, s| now.saturating_duration_since(s.last_seen) <= idle);
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Sign-in throttle: after `limit` failures for one key (a user name, a
/// source address) within `window`, further attempts for that key are
/// refused until the window of the oldest failure has passed.
#[derive(Debug)]
pub struct Throttle {
    limit: usize,
    window: Duration,
    failures: HashMap<String, Vec<Instant>>,
}

impl Throttle {
    pub fn new(limit: usize, window: Duration) -> Throttle {
        Throttle {
            limit: limit.max(1),
            window,
            failures: HashMap::new(),
        }
    }

    fn recent(&mut self, now: Instant, key: &str) -> usize {
        let window = self.window;
        match self.failures.get_mut(key) {
            Some(v) => {
                v.retain(|t| now.saturating_duration_since(*t) < window);
                let n = v.len();
                if n == 0 {
                    self.failures.remove(key);
                }
                n
            }
            None => 0,
        }
    }

    /// Whether an attempt for every one of `keys` may go ahead now.
    pub fn allowed(&mut self, now: Instant, keys: &[&str]) -> bool {
        keys.iter().all(|k| self.recent(now, k) < self.limit)
    }

    pub fn failed(&mut self, now: Instant, keys: &[&str]) {
        if self.failures.len() > 100_000 {
            // Bounded memory under a spray of names: forget stale entries.
            let window = self.window;
            self.failures
                .retain(|_, v| v.iter().any(|t| now.saturating_duration_since(*t) < window));
        }
        for k in keys {
            self.failures.entry((*k).to_owned()).or_default().push(now);
        }
    }

    pub fn succeeded(&mut self, keys: &[&str]) {
        for k in keys {
            self.failures.remove(*k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_round_trip_and_refusals() {
        let h = hash_password("correct horse");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct hors", &h));
        assert!(!verify_password("x", "plain text"));
        assert!(
            check_hash_format(
                "$argon2id$v=19$m=99999999,t=1,p=1$00112233445566778899aabbccddeeff$00"
            )
            .is_err()
        );
        assert!(check_hash_format(&h).is_ok());
        // Two hashes of one password differ (random salt).
        assert_ne!(h, hash_password("correct horse"));
    }

    #[test]
    fn sessions_expire_when_idle() {
        let t0 = Instant::now();
        let mut s = Sessions::new(Duration::from_secs(60));
        let (id, sess) = s.create(t0, "sup", Role::Supervisor, None);
        assert_eq!(sess.csrf.len(), 64);
        assert!(s.get(t0 + Duration::from_secs(50), &id).is_some());
        // Touched at 50 s: still alive at 100 s.
        assert!(s.get(t0 + Duration::from_secs(100), &id).is_some());
        assert!(s.get(t0 + Duration::from_secs(200), &id).is_none());
        assert!(s.get(t0, "nope").is_none());
    }

    #[test]
    fn throttle_counts_per_key_within_the_window() {
        let t0 = Instant::now();
        let mut th = Throttle::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(th.allowed(t0, &["u:a", "ip:1"]));
            th.failed(t0, &["u:a", "ip:1"]);
        }
        assert!(!th.allowed(t0, &["u:a", "ip:2"]));
        assert!(!th.allowed(t0, &["u:b", "ip:1"]));
        assert!(th.allowed(t0, &["u:b", "ip:2"]));
        assert!(th.allowed(t0 + Duration::from_secs(61), &["u:a", "ip:1"]));
    }

    #[test]
    fn token_hash_is_sha256_hex() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(new_token().len(), 64);
    }
}
