//! Bearer tokens: JWTs with `sub`, `role` and a required `exp`. They are either HS256, signed
//! with the UTF-8 bytes of the shared secret (what `disputes token` mints, and any identity
//! service can with a JWT library), or RS256 / ES256 from the platform's identity provider,
//! checked with its public keys (a PEM file, or a JWKS file whose keys are picked by `kid`).
//!
//! Every key carries the one algorithm it verifies: a token is checked only by keys of the
//! algorithm its header names, so an HS256 token "signed" with a public key's bytes finds no
//! key to check it (the algorithm-confusion attack), and `alg: none` names no algorithm at all.
//!
//! A client sends the same token with each of its requests until it expires, so the tokens
//! verified lately are remembered with the actor they name and their expiry: the same bytes
//! again are answered from memory until then, without decoding and checking them anew. Only a
//! token a key checked is remembered, and nothing removes a key, so a remembered token stays as
//! valid as when it was checked, until its expiry.

use std::sync::Mutex;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chrono::{Duration, Utc};
use dispute_domain::{Actor, Role};
use hashlink::LruCache;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{ApiError, AppState};

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    exp: i64,
}

/// Checks tokens with the shared secret and/or public keys; signs them with the secret.
pub struct TokenKeys {
    /// Signs HS256 tokens; `None` when only public keys are configured.
    encoding: Option<EncodingKey>,
    verifiers: Vec<Verifier>,
    /// The tokens verified lately (see the module's documentation).
    verified: Mutex<LruCache<String, Verified>>,
}

/// The same keys, remembering no token yet.
impl Clone for TokenKeys {
    fn clone(&self) -> Self {
        Self::with(self.encoding.clone(), self.verifiers.clone())
    }
}

/// How many verified tokens are remembered: a few hundred bytes each.
const REMEMBERED: usize = 1024;

/// A token a key checked: the actor it names, and the last second (Unix time) it is valid in.
#[derive(Debug, Clone)]
struct Verified {
    actor: Actor,
    valid_until: i64,
}

/// How long after its `exp` a token is still taken: clocks differ by a few seconds.
const LEEWAY_SECONDS: u64 = 5;

/// One key and the one algorithm it verifies.
#[derive(Clone)]
struct Verifier {
    /// The JWKS `kid`; `None` for the secret and a PEM key.
    kid: Option<String>,
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    fn new(algorithm: Algorithm, kid: Option<String>, key: DecodingKey) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = LEEWAY_SECONDS;
        Self { kid, key, validation }
    }

    fn algorithm(&self) -> Algorithm {
        self.validation.algorithms[0]
    }

    /// Whether this key may check a token whose header names `alg` and `kid`: the algorithm
    /// must be this key's, and a JWKS key answers only to its own `kid`.
    fn checks(&self, alg: Algorithm, kid: Option<&str>) -> bool {
        alg == self.algorithm()
            && match (&self.kid, kid) {
                (Some(own), Some(kid)) => own == kid,
                (Some(_), None) | (None, _) => true,
            }
    }
}

/// A public key file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not an RSA or P-256 public key in PEM (`-----BEGIN PUBLIC KEY-----`)")]
    Pem,
    #[error("not a JWKS document: {0}")]
    Jwks(String),
    #[error("key {kid}: {problem}")]
    Jwk { kid: String, problem: String },
    #[error("no RS256 or ES256 signing key in it")]
    NoKeys,
}

impl TokenKeys {
    /// HS256 with the shared secret: signs and checks.
    pub fn new(secret: &str) -> Self {
        let verifier = Verifier::new(Algorithm::HS256, None, DecodingKey::from_secret(secret.as_bytes()));
        Self::with(Some(EncodingKey::from_secret(secret.as_bytes())), vec![verifier])
    }

    fn with(encoding: Option<EncodingKey>, verifiers: Vec<Verifier>) -> Self {
        let verified = Mutex::new(LruCache::new(REMEMBERED));
        Self { encoding, verifiers, verified }
    }

    /// No key yet: add public keys with [`Self::with_public_key_pem`] and [`Self::with_jwks`].
    pub fn public_only() -> Self {
        Self::with(None, Vec::new())
    }

    /// Also checks RS256 (an RSA key) or ES256 (a P-256 key) tokens with a PEM public key
    /// (SPKI `BEGIN PUBLIC KEY`, or PKCS#1 `BEGIN RSA PUBLIC KEY`).
    pub fn with_public_key_pem(mut self, pem: &str) -> Result<Self, KeyError> {
        use p256::pkcs8::DecodePublicKey as _;
        use rsa::pkcs1::DecodeRsaPublicKey as _;
        use rsa::traits::PublicKeyParts as _;
        let rsa =
            rsa::RsaPublicKey::from_public_key_pem(pem).or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(pem));
        let verifier = if let Ok(key) = rsa {
            let key = DecodingKey::from_rsa_raw_components(&key.n().to_bytes_be(), &key.e().to_bytes_be());
            Verifier::new(Algorithm::RS256, None, key)
        } else if let Ok(key) = p256::PublicKey::from_public_key_pem(pem) {
            // jsonwebtoken's EC keys are the uncompressed SEC1 point.
            use p256::elliptic_curve::sec1::ToEncodedPoint as _;
            let point = key.to_encoded_point(false);
            Verifier::new(Algorithm::ES256, None, DecodingKey::from_ec_der(point.as_bytes()))
        } else {
            return Err(KeyError::Pem);
        };
        self.verifiers.push(verifier);
        Ok(self)
    }

    /// Also checks RS256 and ES256 tokens with the keys of a JWKS document, each picked by the
    /// token's `kid`. Keys for encryption or for other algorithms are left out.
    pub fn with_jwks(mut self, json: &str) -> Result<Self, KeyError> {
        let set: JwkSet = serde_json::from_str(json).map_err(|e| KeyError::Jwks(e.to_string()))?;
        let before = self.verifiers.len();
        for jwk in &set.keys {
            let kid = jwk.common.key_id.clone();
            let problem = |problem: String| KeyError::Jwk {
                kid: kid.clone().unwrap_or_else(|| "without kid".to_string()),
                problem,
            };
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
                (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
                (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
                    if ec.curve == EllipticCurve::P256 =>
                {
                    Algorithm::ES256
                }
                (_, alg) => {
                    tracing::warn!(kid = ?kid, ?alg, "JWKS key left out: not an RS256 or ES256 signing key");
                    continue;
                }
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| problem(e.to_string()))?;
            self.verifiers.push(Verifier::new(algorithm, kid.clone(), key));
        }
        if self.verifiers.len() == before {
            return Err(KeyError::NoKeys);
        }
        Ok(self)
    }

    /// Whether [`Self::issue`] can sign: only with the shared secret.
    pub fn can_issue(&self) -> bool {
        self.encoding.is_some()
    }

    /// An HS256 token for `actor` valid for `ttl`.
    ///
    /// # Panics
    ///
    /// Without the shared secret (see [`Self::can_issue`]).
    pub fn issue(&self, actor: &Actor, ttl: Duration) -> String {
        let encoding = self.encoding.as_ref().expect("tokens are signed with the shared secret");
        let claims = Claims { sub: actor.id.clone(), role: actor.role, exp: (Utc::now() + ttl).timestamp() };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, encoding)
            .expect("HS256 signing cannot fail")
    }

    /// The actor a token names, if a key of the algorithm (and `kid`) its header names checks
    /// its signature, and its expiry holds.
    pub fn verify(&self, token: &str) -> Option<Actor> {
        self.verify_at(token, Utc::now().timestamp())
    }

    /// The tokens verified lately, also after a panic while they were locked: each change
    /// of them is one call of the cache's.
    fn remembered(&self) -> std::sync::MutexGuard<'_, LruCache<String, Verified>> {
        self.verified.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// [`Self::verify`] at `now` (Unix seconds) for a remembered token; a token checked anew is
    /// checked at the system's time, as the JWT library reads it.
    fn verify_at(&self, token: &str, now: i64) -> Option<Actor> {
        {
            let mut verified = self.remembered();
            if let Some(remembered) = verified.get(token) {
                if now <= remembered.valid_until {
                    return Some(remembered.actor.clone());
                }
                // Expired: so it would be if checked anew.
                verified.remove(token);
                return None;
            }
        }
        // A header naming an unknown algorithm, "none" included, does not parse.
        let header = jsonwebtoken::decode_header(token).ok()?;
        let data = self
            .verifiers
            .iter()
            .filter(|v| v.checks(header.alg, header.kid.as_deref()))
            .find_map(|v| jsonwebtoken::decode::<Claims>(token, &v.key, &v.validation).ok())?;
        let Claims { sub, role, exp } = data.claims;
        if sub.is_empty() {
            return None;
        }
        let actor = Actor::new(role, sub);
        let valid_until = exp.saturating_add(LEEWAY_SECONDS as i64);
        self.remembered().insert(token.to_string(), Verified { actor: actor.clone(), valid_until });
        Some(actor)
    }
}

/// The authenticated caller of a request, within its rate limit (429 `rate_limited` otherwise).
pub struct Caller(pub Actor);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).ok_or(ApiError::Unauthenticated("no bearer token"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .ok_or(ApiError::Unauthenticated("the Authorization header is not a bearer token"))?;
        let actor = state.tokens.verify(token.trim()).ok_or(ApiError::InvalidToken)?;
        state.rate_limits.check(&actor)?;
        Ok(Caller(actor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a secret of the tests, long enough";

    #[test]
    fn a_remembered_token_is_taken_until_its_expiry_and_its_leeway_then_refused() {
        let keys = TokenKeys::new(SECRET);
        let merchant = Actor::new(Role::Merchant, "m-1");
        let token = keys.issue(&merchant, Duration::minutes(10));
        let now = Utc::now().timestamp();
        assert_eq!(keys.verify_at(&token, now), Some(merchant.clone()));
        assert_eq!(keys.remembered().len(), 1);

        let exp = keys.remembered().peek(&token).map(|v| v.valid_until - LEEWAY_SECONDS as i64);
        let exp = exp.expect("the token is remembered");
        assert!((now + 595..=now + 605).contains(&exp), "exp {exp}, now {now}");
        assert_eq!(keys.verify_at(&token, exp + LEEWAY_SECONDS as i64), Some(merchant));
        assert_eq!(keys.verify_at(&token, exp + LEEWAY_SECONDS as i64 + 1), None);
        assert_eq!(keys.remembered().len(), 0, "an expired token is forgotten");
    }

    #[test]
    fn a_token_no_key_checks_is_not_remembered_and_never_taken() {
        let keys = TokenKeys::new(SECRET);
        let other = TokenKeys::new("another secret, as long as the first");
        let forged = other.issue(&Actor::new(Role::Arbitrator, "a-1"), Duration::minutes(10));
        let now = Utc::now().timestamp();
        assert_eq!(keys.verify_at(&forged, now), None);
        assert_eq!(keys.verify_at(&forged, now), None);
        assert_eq!(keys.remembered().len(), 0);

        // A remembered token does not vouch for another that differs in its signature.
        let genuine = keys.issue(&Actor::new(Role::Buyer, "b-1"), Duration::minutes(10));
        assert!(keys.verify_at(&genuine, now).is_some());
        // A character inside the signature: its last one carries bits a decoder may ignore.
        let at = genuine.len() - 10;
        let swapped = if &genuine[at..=at] == "A" { "B" } else { "A" };
        let altered = format!("{}{swapped}{}", &genuine[..at], &genuine[at + 1..]);
        assert_eq!(keys.verify_at(&altered, now), None);
        assert_eq!(keys.remembered().len(), 1);
    }

    #[test]
    fn the_tokens_remembered_are_the_latest_few() {
        let keys = TokenKeys::new(SECRET);
        let now = Utc::now().timestamp();
        for i in 0..REMEMBERED + 10 {
            let token = keys.issue(&Actor::new(Role::Buyer, format!("b-{i}")), Duration::minutes(10));
            assert!(keys.verify_at(&token, now).is_some());
        }
        assert_eq!(keys.remembered().len(), REMEMBERED);
    }
}
