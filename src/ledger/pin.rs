//! PIN hashing: argon2id (RFC 9106) with a server-side pepper.
//!
//! A 6-digit PIN has only 10⁶ values (docs/domain.md#pin-and-lockout), so the
//! hash alone cannot protect it against someone holding a copy of the
//! database. The pepper, passed as argon2's secret input `K` (RFC 9106 §3.1),
//! lives in configuration (`IVR12333_LEDGER__PIN_PEPPER`), never in the database: without
//! it a stolen table cannot be brute-forced at all. argon2id's cost is the
//! second line of defence if the pepper leaks too.
//!
//! Parameters: m = 8 MiB, t = 1, p = 1. The call flow's budget is p99 ≤ 20 ms
//! from the PIN's `#` to the result audio, including this verification; these
//! parameters cost ≈ 2–3 ms per verification on this machine (see
//! `docs/ledger.md` for the measurement and `benches/ledger.rs`). Stored hashes
//! carry their parameters, so raising them later keeps old hashes verifiable.
//!
//! Stored form: `$argon2id$v=19$m=8192,t=1,p=1$<salt hex>$<hash hex>`.

use argon2::{Algorithm, Argon2, Params, Version};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Memory cost in KiB.
pub const M_COST_KIB: u32 = 8192;
/// Iterations.
pub const T_COST: u32 = 1;
/// Lanes.
pub const P_COST: u32 = 1;
const OUT_LEN: usize = 32;
const SALT_LEN: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256(key, parts...) as raw bytes.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail; fall back to an
    // empty-key MAC rather than panicking if the crate ever says otherwise.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new_from_slice(&[]).expect("empty key"));
    for p in parts {
        mac.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(mac.finalize().into_bytes().as_slice());
    out
}

/// Constant-time equality of two byte strings (length is not secret).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Hashes and verifies PINs with one pepper. Cheap to clone.
#[derive(Clone)]
pub struct PinHasher {
    /// argon2 secret, derived from the pepper (never the pepper itself, so
    /// the ID-hash key and the argon2 key are independent).
    secret: [u8; 32],
    /// Key for deterministic import salts.
    salt_key: [u8; 32],
}

impl PinHasher {
    pub fn new(pepper: &[u8]) -> PinHasher {
        PinHasher {
            secret: hmac(pepper, &[b"ivr12333 argon2 secret v1"]),
            salt_key: hmac(pepper, &[b"ivr12333 import salt v1"]),
        }
    }

    fn params(m: u32, t: u32, p: u32) -> Option<Params> {
        Params::new(m, t, p, Some(OUT_LEN)).ok()
    }

    fn raw(&self, pin: &[u8], salt: &[u8], m: u32, t: u32, p: u32) -> Option<[u8; OUT_LEN]> {
        let params = Self::params(m, t, p)?;
        let a = Argon2::new_with_secret(&self.secret, Algorithm::Argon2id, Version::V0x13, params)
            .ok()?;
        let mut out = [0u8; OUT_LEN];
        a.hash_password_into(pin, salt, &mut out).ok()?;
        Some(out)
    }

    /// Hashes with a given salt using the current parameters.
    pub fn hash_with_salt(&self, pin: &str, salt: &[u8; SALT_LEN]) -> String {
        let out = self
            .raw(pin.as_bytes(), salt, M_COST_KIB, T_COST, P_COST)
            .unwrap_or([0u8; OUT_LEN]);
        format!(
            "$argon2id$v=19$m={M_COST_KIB},t={T_COST},p={P_COST}${}${}",
            hex::encode(salt),
            hex::encode(out)
        )
    }

    /// Hashes with a fresh random salt (`ledger set-pin`).
    pub fn hash_random(&self, pin: &str) -> String {
        let salt: [u8; SALT_LEN] = rand::random();
        self.hash_with_salt(pin, &salt)
    }

    /// Hashes with a salt derived from (pepper, ID, PIN), so that importing
    /// the same file twice yields byte-identical rows (idempotent import).
    /// Unique per ID and unpredictable without the pepper, so it protects as
    /// well as a random salt; it only reveals "same PIN re-imported".
    pub fn hash_for_import(&self, id: &str, pin: &str) -> String {
        let full = hmac(&self.salt_key, &[id.as_bytes(), b"\0", pin.as_bytes()]);
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&full[..SALT_LEN]);
        self.hash_with_salt(pin, &salt)
    }

    /// Verifies a PIN against a stored hash. A malformed stored hash never
    /// verifies (and never panics).
    pub fn verify(&self, pin: &str, stored: &str) -> bool {
        let Some((m, t, p, salt, want)) = parse_stored(stored) else {
            return false;
        };
        match self.raw(pin.as_bytes(), &salt, m, t, p) {
            Some(got) => ct_eq(&got, &want),
            None => false,
        }
    }
}

type Parsed = (u32, u32, u32, Vec<u8>, Vec<u8>);

fn parse_stored(s: &str) -> Option<Parsed> {
    let mut it = s.split('$');
    if !it.next()?.is_empty() || it.next()? != "argon2id" || it.next()? != "v=19" {
        return None;
    }
    let params = it.next()?;
    let salt = hex::decode(it.next()?).ok()?;
    let hash = hex::decode(it.next()?).ok()?;
    if it.next().is_some() || hash.len() != OUT_LEN {
        return None;
    }
    let (mut m, mut t, mut p) = (None, None, None);
    for kv in params.split(',') {
        let (k, v) = kv.split_once('=')?;
        let v: u32 = v.parse().ok()?;
        match k {
            "m" => m = Some(v),
            "t" => t = Some(v),
            "p" => p = Some(v),
            _ => return None,
        }
    }
    // Refuse absurd parameters from a tampered row (memory exhaustion).
    let (m, t, p) = (m?, t?, p?);
    if m > 1 << 20 || t > 64 || p > 16 {
        return None;
    }
    Some((m, t, p, salt, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_and_pepper_matters() {
        let h = PinHasher::new(b"pepper-one-0123456789");
        let stored = h.hash_random("123456");
        assert!(!stored.contains("123456$"));
        assert!(h.verify("123456", &stored));
        assert!(!h.verify("123457", &stored));
        let other = PinHasher::new(b"pepper-two-0123456789");
        assert!(!other.verify("123456", &stored));
    }

    #[test]
    fn import_hash_is_deterministic_per_id() {
        let h = PinHasher::new(b"pepper-one-0123456789");
        let a = h.hash_for_import("11010519491231002X", "123456");
        assert_eq!(a, h.hash_for_import("11010519491231002X", "123456"));
        assert_ne!(a, h.hash_for_import("310104198507151239", "123456"));
        assert!(h.verify("123456", &a));
    }

    #[test]
    fn malformed_stored_hash_never_verifies() {
        let h = PinHasher::new(b"pepper");
        // Absurd parameters with an otherwise well-formed salt and hash,
        // so only the parameter guard can reject it.
        let absurd = format!(
            "$argon2id$v=19$m=99999999,t=1,p=1${}${}",
            "00".repeat(16),
            "00".repeat(32)
        );
        for s in [
            "",
            "$argon2id$v=19$m=4096,t=1,p=1$zz$00",
            absurd.as_str(),
            "$argon2i$v=19$m=4096,t=1,p=1$0011$0011",
            "plain",
        ] {
            assert!(!h.verify("123456", s));
        }
    }
}
