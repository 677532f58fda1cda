//! Bearer tokens: JWTs with `sub`, `role` and a required `exp`. They are either HS256, signed
//! with the UTF-8 bytes of the shared secret (what `disputes token` mints, and any identity
//! service can with a JWT library), or RS256 / ES256 from the platform's identity provider,
//! checked with its public keys (a PEM file, or a JWKS file whose keys are picked by `kid`).
//!
//! Every key carries the one algorithm it verifies: a token is checked only by keys of the
//! algorithm its header names, so an HS256 token "signed" with a public key's bytes finds no
//! key to check it (the algorithm-confusion attack), and `alg: none` names no algorithm at all.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chrono::{Duration, Utc};
use dispute_domain::{Actor, Role};
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
#[derive(Clone)]
pub struct TokenKeys {
    /// Signs HS256 tokens; `None` when only public keys are configured.
    encoding: Option<EncodingKey>,
    verifiers: Vec<Verifier>,
}

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
        validation.leeway = 5;
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
        Self {
            encoding: Some(EncodingKey::from_secret(secret.as_bytes())),
            verifiers: vec![Verifier::new(
                Algorithm::HS256,
                None,
                DecodingKey::from_secret(secret.as_bytes()),
            )],
        }
    }

    /// No key yet: add public keys with [`Self::with_public_key_pem`] and [`Self::with_jwks`].
    pub fn public_only() -> Self {
        Self { encoding: None, verifiers: Vec::new() }
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
        // A header naming an unknown algorithm, "none" included, does not parse.
        let header = jsonwebtoken::decode_header(token).ok()?;
        let data = self
            .verifiers
            .iter()
            .filter(|v| v.checks(header.alg, header.kid.as_deref()))
            .find_map(|v| jsonwebtoken::decode::<Claims>(token, &v.key, &v.validation).ok())?;
        let Claims { sub, role, .. } = data.claims;
        (!sub.is_empty()).then(|| Actor::new(role, sub))
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
