//! SIP digest authentication for agents: RFC 7616 §3.9.1 and RFC 2617
//! §3.5 vectors, a full challenge/response round trip, stale nonces,
//! replayed nonce counts, and unknown users indistinguishable from wrong
//! passwords.

use ivr12333::queue::digest::{Algorithm, DigestAuth, DigestError, digest_response, stored_ha1};

const RFC7616_NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
const RFC7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

#[test]
fn rfc7616_md5_vector() {
    let r = digest_response(
        Algorithm::Md5,
        "Mufasa",
        "http-auth@example.org",
        "Circle of Life",
        "GET",
        "/dir/index.html",
        RFC7616_NONCE,
        "00000001",
        RFC7616_CNONCE,
    );
    assert_eq!(r, "8ca523f5e9506fed4657c9700eebdbec");
}

#[test]
fn rfc7616_sha256_vector() {
    let r = digest_response(
        Algorithm::Sha256,
        "Mufasa",
        "http-auth@example.org",
        "Circle of Life",
        "GET",
        "/dir/index.html",
        RFC7616_NONCE,
        "00000001",
        RFC7616_CNONCE,
    );
    assert_eq!(
        r,
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
}

#[test]
fn rfc2617_md5_vector() {
    let r = digest_response(
        Algorithm::Md5,
        "Mufasa",
        "testrealm@host.com",
        "Circle Of Life",
        "GET",
        "/dir/index.html",
        "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        "00000001",
        "0a4f113b",
    );
    assert_eq!(r, "6629fae49393a05397450978507c4ef1");
}

const REALM: &str = "ivr12333";
const T0: u64 = 1_800_000_000;

fn param<'a>(challenge: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=");
    let start = challenge.find(&key)? + key.len();
    let rest = &challenge[start..];
    if let Some(q) = rest.strip_prefix('"') {
        q.split('"').next()
    } else {
        rest.split(',').next().map(str::trim)
    }
}

fn authorization(
    alg: Algorithm,
    user: &str,
    password: &str,
    nonce: &str,
    nc: &str,
    uri: &str,
) -> String {
    let cnonce = "0a4f113b";
    let resp = digest_response(
        alg, user, REALM, password, "REGISTER", uri, nonce, nc, cnonce,
    );
    format!(
        "Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{resp}\", algorithm={}, cnonce=\"{cnonce}\", nc={nc}, qop=auth",
        alg.name()
    )
}

fn lookup(user: &str) -> Option<String> {
    match user {
        "agent1001" => Some("pw-1001".into()),
        "agent1002" => Some(stored_ha1(Algorithm::Md5, "agent1002", REALM, "pw-1002")),
        _ => None,
    }
}

fn auth() -> DigestAuth {
    DigestAuth::new(b"0123456789abcdef0123456789abcdef", 300)
}

#[test]
fn round_trip_md5_and_sha256() {
    let mut a = auth();
    let ch = a.challenge(T0, REALM);
    assert!(ch.starts_with("Digest realm=\"ivr12333\", nonce=\""));
    assert_eq!(param(&ch, "algorithm"), Some("MD5"));
    assert_eq!(param(&ch, "qop"), Some("auth"));
    let nonce = param(&ch, "nonce").unwrap().to_owned();
    let h = authorization(
        Algorithm::Md5,
        "agent1001",
        "pw-1001",
        &nonce,
        "00000001",
        "sip:127.0.0.1",
    );
    assert_eq!(
        a.verify("REGISTER", &h, lookup, T0 + 1),
        Ok("agent1001".into())
    );

    let chs = a.challenges(T0, REALM, false);
    assert_eq!(chs.len(), 2);
    assert_eq!(param(&chs[0], "algorithm"), Some("SHA-256"));
    assert_eq!(param(&chs[1], "algorithm"), Some("MD5"));
    let nonce = param(&chs[0], "nonce").unwrap().to_owned();
    let h = authorization(
        Algorithm::Sha256,
        "agent1001",
        "pw-1001",
        &nonce,
        "00000001",
        "sip:127.0.0.1",
    );
    assert_eq!(
        a.verify("REGISTER", &h, lookup, T0 + 1),
        Ok("agent1001".into())
    );
    // The method is part of the digest.
    let h = authorization(
        Algorithm::Sha256,
        "agent1001",
        "pw-1001",
        &nonce,
        "00000002",
        "sip:127.0.0.1",
    );
    assert_eq!(
        a.verify("INVITE", &h, lookup, T0 + 1),
        Err(DigestError::Unauthorized)
    );
}

#[test]
fn stored_ha1_works_for_its_own_algorithm_only() {
    let mut a = auth();
    let chs = a.challenges(T0, REALM, false);
    let nonce = param(&chs[0], "nonce").unwrap().to_owned();
    let h = authorization(
        Algorithm::Md5,
        "agent1002",
        "pw-1002",
        &nonce,
        "00000001",
        "sip:x",
    );
    assert_eq!(a.verify("REGISTER", &h, lookup, T0), Ok("agent1002".into()));
    let h = authorization(
        Algorithm::Sha256,
        "agent1002",
        "pw-1002",
        &nonce,
        "00000002",
        "sip:x",
    );
    assert_eq!(
        a.verify("REGISTER", &h, lookup, T0),
        Err(DigestError::Unauthorized)
    );
}

#[test]
fn stale_nonce_is_reported_only_with_right_credentials() {
    let mut a = auth();
    let ch = a.challenge(T0, REALM);
    let nonce = param(&ch, "nonce").unwrap().to_owned();
    let good = authorization(
        Algorithm::Md5,
        "agent1001",
        "pw-1001",
        &nonce,
        "00000001",
        "sip:x",
    );
    assert_eq!(
        a.verify("REGISTER", &good, lookup, T0 + 301),
        Err(DigestError::Stale)
    );
    let bad = authorization(
        Algorithm::Md5,
        "agent1001",
        "wrong",
        &nonce,
        "00000001",
        "sip:x",
    );
    assert_eq!(
        a.verify("REGISTER", &bad, lookup, T0 + 301),
        Err(DigestError::Unauthorized)
    );
    let again = a.challenges(T0 + 301, REALM, true);
    assert!(again[0].ends_with(", stale=true"));
}

#[test]
fn replayed_nonce_count_is_rejected() {
    let mut a = auth();
    let ch = a.challenge(T0, REALM);
    let nonce = param(&ch, "nonce").unwrap().to_owned();
    let h1 = authorization(
        Algorithm::Md5,
        "agent1001",
        "pw-1001",
        &nonce,
        "00000001",
        "sip:x",
    );
    assert!(a.verify("REGISTER", &h1, lookup, T0).is_ok());
    assert_eq!(
        a.verify("REGISTER", &h1, lookup, T0 + 2),
        Err(DigestError::Replay)
    );
    let h2 = authorization(
        Algorithm::Md5,
        "agent1001",
        "pw-1001",
        &nonce,
        "00000002",
        "sip:x",
    );
    assert!(a.verify("REGISTER", &h2, lookup, T0 + 3).is_ok());
    assert_eq!(
        a.verify("REGISTER", &h1, lookup, T0 + 4),
        Err(DigestError::Replay)
    );
}

#[test]
fn forged_or_foreign_nonces_fail() {
    let mut a = auth();
    // The RFC's own nonce was not issued by us.
    let h = authorization(
        Algorithm::Md5,
        "agent1001",
        "pw-1001",
        RFC7616_NONCE,
        "00000001",
        "sip:x",
    );
    assert_eq!(
        a.verify("REGISTER", &h, lookup, T0),
        Err(DigestError::Unauthorized)
    );
    // A nonce from another server secret.
    let other = DigestAuth::new(b"another secret", 300);
    let ch = other.challenge(T0, REALM);
    let nonce = param(&ch, "nonce").unwrap().to_owned();
    let h = authorization(
        Algorithm::Md5,
        "agent1001",
        "pw-1001",
        &nonce,
        "00000001",
        "sip:x",
    );
    assert_eq!(
        a.verify("REGISTER", &h, lookup, T0),
        Err(DigestError::Unauthorized)
    );
    // A nonce from the future.
    let ch = a.challenge(T0 + 1000, REALM);
    let nonce = param(&ch, "nonce").unwrap().to_owned();
    let h = authorization(
        Algorithm::Md5,
        "agent1001",
        "pw-1001",
        &nonce,
        "00000001",
        "sip:x",
    );
    assert_eq!(
        a.verify("REGISTER", &h, lookup, T0),
        Err(DigestError::Unauthorized)
    );
}

#[test]
fn request_uri_must_match_when_checked() {
    let mut a = auth();
    let ch = a.challenge(T0, REALM);
    let nonce = param(&ch, "nonce").unwrap().to_owned();
    let h = authorization(
        Algorithm::Md5,
        "agent1001",
        "pw-1001",
        &nonce,
        "00000001",
        "sip:ivr",
    );
    assert_eq!(
        a.verify_for_uri("REGISTER", "sip:other", &h, lookup, T0),
        Err(DigestError::Unauthorized)
    );
    assert_eq!(
        a.verify_for_uri("REGISTER", "sip:ivr", &h, lookup, T0),
        Ok("agent1001".into())
    );
}

#[test]
fn unknown_user_is_indistinguishable_from_a_wrong_password() {
    let mut a = auth();
    let ch = a.challenge(T0, REALM);
    let nonce = param(&ch, "nonce").unwrap().to_owned();
    let unknown = authorization(
        Algorithm::Md5,
        "agent9999",
        "pw-1001",
        &nonce,
        "00000001",
        "sip:x",
    );
    let wrong = authorization(
        Algorithm::Md5,
        "agent1001",
        "nope",
        &nonce,
        "00000001",
        "sip:x",
    );
    let e1 = a.verify("REGISTER", &unknown, lookup, T0).unwrap_err();
    let e2 = a.verify("REGISTER", &wrong, lookup, T0).unwrap_err();
    assert_eq!(e1, e2);
    assert_eq!(e1.to_string(), e2.to_string());
    assert!(!e1.to_string().contains("agent"));
    // Even the unknown user's right-looking stale request is not "stale".
    assert_eq!(
        a.verify("REGISTER", &unknown, lookup, T0 + 1000),
        Err(DigestError::Unauthorized)
    );
    // The next challenge does not depend on who asked: same fields, only
    // the nonce differs.
    let c1 = a.challenge(T0, REALM);
    let c2 = a.challenge(T0, REALM);
    for f in ["realm", "algorithm", "qop"] {
        assert_eq!(param(&c1, f), param(&c2, f));
    }
    assert_eq!(param(&c1, "stale"), None);
    assert_ne!(param(&c1, "nonce"), param(&c2, "nonce"));
    assert_eq!(
        param(&c1, "nonce").unwrap().len(),
        param(&c2, "nonce").unwrap().len()
    );
}

#[test]
fn malformed_credentials_and_algorithms() {
    let mut a = auth().with_algorithms(&[Algorithm::Sha256]);
    let ch = a.challenge(T0, REALM);
    assert_eq!(param(&ch, "algorithm"), Some("SHA-256"));
    let nonce = param(&ch, "nonce").unwrap().to_owned();
    let md5 = authorization(
        Algorithm::Md5,
        "agent1001",
        "pw-1001",
        &nonce,
        "00000001",
        "sip:x",
    );
    assert_eq!(
        a.verify("REGISTER", &md5, lookup, T0),
        Err(DigestError::UnsupportedAlgorithm)
    );
    let no_qop = md5.replace(", qop=auth", "");
    assert_eq!(
        a.verify("REGISTER", &no_qop, lookup, T0),
        Err(DigestError::Malformed)
    );
    let bad_nc = authorization(
        Algorithm::Sha256,
        "agent1001",
        "pw-1001",
        &nonce,
        "1",
        "sip:x",
    );
    assert_eq!(
        a.verify("REGISTER", &bad_nc, lookup, T0),
        Err(DigestError::Malformed)
    );
    assert_eq!(
        a.verify("REGISTER", "Digest garbage", lookup, T0),
        Err(DigestError::Malformed)
    );
    assert_eq!(
        a.verify("REGISTER", "", lookup, T0),
        Err(DigestError::Malformed)
    );
    let md5sess = md5.replace("algorithm=MD5", "algorithm=MD5-sess");
    assert_eq!(
        a.verify("REGISTER", &md5sess, lookup, T0),
        Err(DigestError::UnsupportedAlgorithm)
    );
}

#[test]
fn debug_hides_the_secret() {
    let a = DigestAuth::new(b"super-secret-key", 300);
    let d = format!("{a:?}");
    assert!(!d.contains("super-secret-key"));
    assert!(!d.contains("115, 117, 112")); // bytes of "sup"
}

mod hostile {
    use super::*;
    use proptest::prelude::{ProptestConfig, any, prop_assert, proptest};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        /// Arbitrary bytes, and mutations of a valid header, never panic
        /// and never authenticate.
        #[test]
        fn garbage_never_panics_or_passes(s in ".{0,300}", cut in 0usize..400, junk in any::<String>()) {
            let mut a = auth();
            prop_assert!(a.verify("REGISTER", &s, lookup, T0).is_err());
            let ch = a.challenge(T0, REALM);
            let nonce = param(&ch, "nonce").unwrap().to_owned();
            let good = authorization(Algorithm::Md5, "agent1001", "pw-1001", &nonce, "00000001", "sip:x");
            let mut cut = cut.min(good.len());
            while !good.is_char_boundary(cut) { cut -= 1; }
            let mangled = format!("{}{}{}", &good[..cut], junk, &good[cut..]);
            if mangled != good {
                // Inserting text can at most keep it valid (e.g. spaces);
                // it must never panic.
                let _ = a.verify("REGISTER", &mangled, lookup, T0);
            }
            let truncated = &good[..cut];
            if truncated.len() < good.len() {
                prop_assert!(a.verify("REGISTER", truncated, lookup, T0).is_err());
            }
        }
    }
}
