//! Bearer tokens: HS256 JWTs with `sub`, `role` and a required `exp`, signed with the UTF-8
//! bytes of the shared secret, so any identity service can mint them with a JWT library.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chrono::{Duration, Utc};
use dispute_domain::{Actor, Role};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{ApiError, AppState};

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    exp: i64,
}

/// Signs and checks tokens with one secret.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenKeys {
    pub fn new(secret: &str) -> Self {
        // Pinned to HS256: a token naming another algorithm (or "none") is refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// A token for `actor` valid for `ttl`.
    pub fn issue(&self, actor: &Actor, ttl: Duration) -> String {
        let claims = Claims { sub: actor.id.clone(), role: actor.role, exp: (Utc::now() + ttl).timestamp() };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// The actor a token names, if its signature, algorithm and expiry hold.
    pub fn verify(&self, token: &str) -> Option<Actor> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        let Claims { sub, role, .. } = data.claims;
        (!sub.is_empty()).then(|| Actor::new(role, sub))
    }
}

/// The authenticated caller of a request.
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
        Ok(Caller(actor))
    }
}
