//! Bearer tokens: HS256 with the shared secret, or RS256 / ES256 with the identity provider's
//! public keys (PEM or JWKS), each key checking only its own algorithm, and an `exp` in the
//! future; the role decides which commands a caller may issue (403), and a party to another order learns
//! nothing about it (404, the same answer as for an unknown order).

use chrono::Utc;
use dispute_domain::{Actor, Role};
use disputes_tests::*;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha512};

/// base64url without padding (RFC 7515).
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// HMAC (RFC 2104) over a hash with the given block size.
fn hmac<D: Digest>(block_size: usize, key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut key = if key.len() > block_size { D::digest(key).to_vec() } else { key.to_vec() };
    key.resize(block_size, 0);
    let mut inner = D::new();
    inner.update(key.iter().map(|b| b ^ 0x36).collect::<Vec<u8>>());
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = D::new();
    outer.update(key.iter().map(|b| b ^ 0x5c).collect::<Vec<u8>>());
    outer.update(inner);
    outer.finalize().to_vec()
}

/// How a hand-made token is signed, whatever its header claims.
enum Sign<'a> {
    Nothing,
    Hs256(&'a str),
    Hs512(&'a str),
    Rs256(&'a rsa::RsaPrivateKey),
    Es256(&'a p256::ecdsa::SigningKey),
}

fn jwt(header: Value, claims: Value, sign: Sign<'_>) -> String {
    let input =
        format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
    let signature = match sign {
        Sign::Nothing => Vec::new(),
        Sign::Hs256(secret) => hmac::<Sha256>(64, secret.as_bytes(), input.as_bytes()),
        Sign::Hs512(secret) => hmac::<Sha512>(128, secret.as_bytes(), input.as_bytes()),
        Sign::Rs256(key) => key
            .sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(input.as_bytes()))
            .expect("RSA signs"),
        Sign::Es256(key) => {
            use p256::ecdsa::signature::Signer as _;
            let signature: p256::ecdsa::Signature = key.sign(input.as_bytes());
            signature.to_bytes().to_vec()
        }
    };
    format!("{input}.{}", b64url(&signature))
}

fn hs256() -> Value {
    json!({ "alg": "HS256", "typ": "JWT" })
}

fn claims(role: &str, sub: &str) -> Value {
    let now = Utc::now().timestamp();
    json!({ "sub": sub, "role": role, "iat": now, "exp": now + 3600 })
}

/// An order whose request of 60.00 waits for the merchant (sequence 2).
async fn awaiting_merchant(app: &TestApp, id: &str) {
    app.register(&order(id)).await.assert_ok();
    app.request_refund(id, "refund_only", "quality_issue", 6_000).await.assert_ok();
}

/// `merchant-accept` on `order` with this Authorization header (or none) must be refused with
/// 401 and write nothing.
async fn assert_unauthenticated(app: &TestApp, order: &str, authorization: Option<&str>, what: &str) {
    let before = app.store.load(order).await.expect("the stream loads");
    let headers: Vec<(&str, &str)> =
        authorization.map(|value| ("authorization", value)).into_iter().collect();
    let path = format!("/v1/disputes/{order}/merchant-accept");
    let answer = app.send(Method::POST, &path, None, Some(&json!({})), &headers).await;
    assert_eq!(answer.status, 401, "{what}: {}", answer.body);
    answer.assert_problem(401, "unauthenticated");
    assert_eq!(app.store.load(order).await.expect("the stream loads"), before, "{what} wrote nothing");
}

#[tokio::test]
async fn a_token_made_by_any_jwt_implementation_is_accepted() {
    let app = TestApp::postgres().await;
    let system = jwt(hs256(), claims("system", "order-service"), Sign::Hs256(SECRET));
    let registered = app.send(Method::PUT, "/v1/orders/o-1", Some(&system), Some(&order("o-1")), &[]).await;
    assert_eq!(registered.assert_ok().sequence(), 1);
    let merchant = jwt(hs256(), claims("merchant", MERCHANT), Sign::Hs256(SECRET));
    app.request_refund("o-1", "refund_only", "quality_issue", 6_000).await.assert_ok();
    let accepted = app
        .send(Method::POST, "/v1/disputes/o-1/merchant-accept", Some(&merchant), Some(&json!({})), &[])
        .await;
    assert_eq!((accepted.assert_ok().sequence(), accepted.status_text()), (3, "refund_pending"));
}

#[tokio::test]
async fn no_token_or_not_a_bearer_token_is_401() {
    let app = TestApp::postgres().await;
    awaiting_merchant(&app, "o-1").await;
    let valid = jwt(hs256(), claims("merchant", MERCHANT), Sign::Hs256(SECRET));
    let as_token_scheme = format!("Token {valid}");
    let cases = [
        (None, "no Authorization header"),
        (Some("Basic bWVyY2hhbnQtMTpzZWNyZXQ="), "basic auth"),
        (Some("Bearer "), "an empty bearer token"),
        (Some("Bearer not-a-token"), "a bearer token that is no JWT"),
        (Some("Bearer a.b.c"), "three parts of nothing"),
        (Some(as_token_scheme.as_str()), "a valid token under another scheme"),
    ];
    for (authorization, what) in cases {
        assert_unauthenticated(&app, "o-1", authorization, what).await;
    }
    assert_eq!(app.merchant_accept("o-1").await.assert_ok().sequence(), 3);
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_401() {
    let app = TestApp::postgres().await;
    awaiting_merchant(&app, "o-1").await;
    let other = dispute_api::TokenKeys::new("another-secret-of-at-least-32-bytes!!")
        .issue(&Actor::new(Role::Merchant, MERCHANT), chrono::Duration::hours(1));
    assert_unauthenticated(&app, "o-1", Some(&format!("Bearer {other}")), "another service's secret").await;
    let forged = jwt(hs256(), claims("merchant", MERCHANT), Sign::Hs256("integration-test-secret"));
    assert_unauthenticated(&app, "o-1", Some(&format!("Bearer {forged}")), "a prefix of the secret").await;
    let empty_key = jwt(hs256(), claims("merchant", MERCHANT), Sign::Hs256(""));
    assert_unauthenticated(&app, "o-1", Some(&format!("Bearer {empty_key}")), "an empty key").await;
    assert_eq!(app.merchant_accept("o-1").await.assert_ok().sequence(), 3);
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_401() {
    let app = TestApp::postgres().await;
    awaiting_merchant(&app, "o-1").await;
    let merchant = claims("merchant", MERCHANT);
    let cases = [
        (jwt(json!({ "alg": "none", "typ": "JWT" }), merchant.clone(), Sign::Nothing), "alg none"),
        (jwt(json!({ "alg": "None" }), merchant.clone(), Sign::Nothing), "alg None"),
        (jwt(json!({ "alg": "NONE" }), merchant.clone(), Sign::Nothing), "alg NONE"),
        (jwt(json!({ "alg": "none" }), merchant.clone(), Sign::Hs256(SECRET)), "alg none with a signature"),
        (jwt(json!({ "typ": "JWT" }), merchant.clone(), Sign::Hs256(SECRET)), "no alg at all"),
    ];
    for (token, what) in cases {
        assert_unauthenticated(&app, "o-1", Some(&format!("Bearer {token}")), what).await;
    }
    // The same token with its signature stripped.
    let valid = jwt(hs256(), merchant, Sign::Hs256(SECRET));
    let unsigned = &valid[..valid.rfind('.').expect("three parts") + 1];
    assert_unauthenticated(&app, "o-1", Some(&format!("Bearer {unsigned}")), "a stripped signature").await;
    assert_eq!(app.merchant_accept("o-1").await.assert_ok().sequence(), 3);
}

#[tokio::test]
async fn a_token_of_another_algorithm_is_401() {
    let app = TestApp::postgres().await;
    awaiting_merchant(&app, "o-1").await;
    let merchant = claims("merchant", MERCHANT);
    let cases = [
        (jwt(json!({ "alg": "HS512", "typ": "JWT" }), merchant.clone(), Sign::Hs512(SECRET)), "HS512"),
        (
            jwt(json!({ "alg": "HS256" }), merchant.clone(), Sign::Hs512(SECRET)),
            "an HS512 signature labelled HS256",
        ),
        (
            jwt(json!({ "alg": "RS256", "typ": "JWT" }), merchant.clone(), Sign::Hs256(SECRET)),
            "RS256 labelled",
        ),
        (
            jwt(json!({ "alg": "ES256", "typ": "JWT" }), merchant.clone(), Sign::Hs256(SECRET)),
            "ES256 labelled",
        ),
        (jwt(json!({ "alg": "hs256", "typ": "JWT" }), merchant, Sign::Hs256(SECRET)), "lower-case hs256"),
    ];
    for (token, what) in cases {
        assert_unauthenticated(&app, "o-1", Some(&format!("Bearer {token}")), what).await;
    }
    assert_eq!(app.merchant_accept("o-1").await.assert_ok().sequence(), 3);
}

#[tokio::test]
async fn an_expired_token_or_one_without_exp_is_401() {
    let app = TestApp::postgres().await;
    awaiting_merchant(&app, "o-1").await;
    let now = Utc::now().timestamp();
    let cases = [
        (json!({ "sub": MERCHANT, "role": "merchant", "exp": now - 60 }), "expired a minute ago"),
        (json!({ "sub": MERCHANT, "role": "merchant", "exp": now - 86_400 }), "expired yesterday"),
        (json!({ "sub": MERCHANT, "role": "merchant" }), "no exp"),
        (json!({ "sub": MERCHANT, "role": "merchant", "exp": null }), "a null exp"),
        (json!({ "sub": MERCHANT, "role": "merchant", "exp": "tomorrow" }), "an exp that is not a time"),
    ];
    for (claims, what) in cases {
        let token = jwt(hs256(), claims, Sign::Hs256(SECRET));
        assert_unauthenticated(&app, "o-1", Some(&format!("Bearer {token}")), what).await;
    }
    assert_eq!(app.merchant_accept("o-1").await.assert_ok().sequence(), 3);
}

#[tokio::test]
async fn a_token_without_a_subject_or_role_or_with_altered_claims_is_401() {
    let app = TestApp::postgres().await;
    awaiting_merchant(&app, "o-1").await;
    let exp = Utc::now().timestamp() + 3600;
    let cases = [
        (json!({ "role": "merchant", "exp": exp }), "no sub"),
        (json!({ "sub": "", "role": "merchant", "exp": exp }), "an empty sub"),
        (json!({ "sub": MERCHANT, "exp": exp }), "no role"),
        (json!({ "sub": MERCHANT, "role": "admin", "exp": exp }), "an unknown role"),
    ];
    for (claims, what) in cases {
        let token = jwt(hs256(), claims, Sign::Hs256(SECRET));
        assert_unauthenticated(&app, "o-1", Some(&format!("Bearer {token}")), what).await;
    }
    // A buyer's valid token whose payload is swapped for the merchant's keeps a signature
    // that no longer matches.
    let buyer = jwt(hs256(), claims("buyer", BUYER), Sign::Hs256(SECRET));
    let merchant = jwt(hs256(), claims("merchant", MERCHANT), Sign::Hs256(SECRET));
    let buyer_parts: Vec<&str> = buyer.split('.').collect();
    let merchant_parts: Vec<&str> = merchant.split('.').collect();
    let spliced = format!("{}.{}.{}", buyer_parts[0], merchant_parts[1], buyer_parts[2]);
    assert_unauthenticated(&app, "o-1", Some(&format!("Bearer {spliced}")), "a swapped payload").await;
    assert_eq!(app.merchant_accept("o-1").await.assert_ok().sequence(), 3);
}

#[tokio::test]
async fn every_command_refuses_the_roles_it_does_not_name_with_403() {
    let app = TestApp::postgres().await;
    awaiting_merchant(&app, "o-1").await;
    let all = [Role::Buyer, Role::Merchant, Role::Arbitrator, Role::System, Role::Auditor];
    let mut refused = 0;
    for route in dispute_api::ROUTES {
        let method = match format!("{:?}", route.method).as_str() {
            "Put" => Method::PUT,
            "Post" => Method::POST,
            other => panic!("a command route is PUT or POST, not {other}"),
        };
        let path = route.path.replace("{id}", "o-1");
        for role in all.into_iter().filter(|role| !route.roles.contains(role)) {
            // The parties of o-1, so that only the role is wrong.
            let sub = match role {
                Role::Buyer => BUYER,
                Role::Merchant => MERCHANT,
                _ => "staff-1",
            };
            let token = app.token(role, sub);
            let answer = app.send(method.clone(), &path, Some(&token), Some(&order("o-1")), &[]).await;
            assert_eq!(answer.status, 403, "{} as {} answered {}", route.path, role.as_str(), answer.body);
            answer.assert_problem(403, "forbidden");
            refused += 1;
        }
    }
    assert!(refused >= dispute_api::ROUTES.len(), "every route refuses some role");
    // The two named in the contract, spelled out.
    app.command("o-1", "request", Role::Merchant, MERCHANT, json!({})).await.assert_problem(403, "forbidden");
    for route in ["merchant-accept", "evidence", "withdraw", "assign", "refund-paid"] {
        app.command("o-1", route, Role::Auditor, "auditor-1", json!({}))
            .await
            .assert_problem(403, "forbidden");
    }
    assert_eq!(app.store.load("o-1").await.expect("the stream loads").1, 2, "nothing was written");
    assert_eq!(app.merchant_accept("o-1").await.assert_ok().sequence(), 3);
}

/// The answer to `command` on `order` as `role:sub`.
async fn answer(app: &TestApp, order: &str, command: &str, role: Role, sub: &str, body: &Value) -> Answer {
    app.command(order, command, role, sub, body.clone()).await
}

/// Commands a party may issue, with bodies the rules would accept.
fn party_commands(role: Role) -> Vec<(&'static str, Value)> {
    let evidence_body = json!({ "evidence": [evidence("photo")] });
    match role {
        Role::Buyer => vec![
            (
                "request",
                json!({ "kind": "refund_only", "reason": "quality_issue", "amount": cny(1_000), "description": "broken", "evidence": [] }),
            ),
            ("evidence", evidence_body),
            ("withdraw", json!({})),
            ("escalate", json!({ "note": "please look" })),
            ("accept-offer", json!({})),
            ("decline-offer", json!({})),
            ("appeal", json!({ "note": "unfair" })),
            ("ship-return", json!({ "carrier": "SF", "tracking_number": "SF1" })),
        ],
        Role::Merchant => vec![
            ("merchant-accept", json!({})),
            ("merchant-reject", json!({ "reason_code": "item_used", "note": "worn" })),
            ("merchant-offer", json!({ "amount": cny(1_000), "note": "some" })),
            ("evidence", evidence_body),
            ("confirm-return", json!({})),
            ("appeal", json!({ "note": "unfair" })),
        ],
        _ => unreachable!("only buyers and merchants are parties"),
    }
}

/// Someone else's order answers exactly like an order that does not exist.
async fn assert_no_leak(role: Role, stranger: &str) {
    assert!(stranger == "buyer-2" || stranger == "merchant-2", "the stranger owns o-2");
    let app = TestApp::postgres().await;
    awaiting_merchant(&app, "o-1").await;
    let mut theirs = order("o-2");
    theirs["buyer_id"] = json!("buyer-2");
    theirs["merchant_id"] = json!("merchant-2");
    app.register(&theirs).await.assert_ok();
    for (command, body) in party_commands(role) {
        let existing = answer(&app, "o-1", command, role, stranger, &body).await;
        let missing = answer(&app, "o-404", command, role, stranger, &body).await;
        existing.assert_problem(404, "not_found");
        missing.assert_problem(404, "not_found");
        assert_eq!(existing.body, missing.body, "{command}: someone else's order looks unknown");
        assert_eq!(existing.headers.get("content-type"), missing.headers.get("content-type"));
    }
    assert_eq!(app.store.load("o-1").await.expect("the stream loads").1, 2, "nothing was written");
    assert_eq!(app.store.load("o-404").await.expect("the stream loads").1, 0);
    // The stranger may still act on an order of its own.
    let body = json!({ "kind": "refund_only", "reason": "quality_issue", "amount": cny(1_000), "description": "broken" });
    let requested = app.command("o-2", "request", Role::Buyer, "buyer-2", body).await;
    assert_eq!(requested.assert_ok().sequence(), 2);
    if role == Role::Merchant {
        let accepted = app.command("o-2", "merchant-accept", Role::Merchant, stranger, json!({})).await;
        assert_eq!(accepted.assert_ok().sequence(), 3);
    }
}

#[tokio::test]
async fn another_buyer_gets_404_as_for_an_unknown_order() {
    assert_no_leak(Role::Buyer, "buyer-2").await;
}

#[tokio::test]
async fn another_merchant_gets_404_as_for_an_unknown_order() {
    assert_no_leak(Role::Merchant, "merchant-2").await;
}

// Test-only key pairs (tests/test-keys/README.md).
const RSA_PRIVATE: &str = include_str!("../test-keys/rsa-private.pem");
const RSA_PUBLIC: &str = include_str!("../test-keys/rsa-public.pem");
const EC_PRIVATE: &str = include_str!("../test-keys/ec-private.pem");
const EC_PUBLIC: &str = include_str!("../test-keys/ec-public.pem");

fn rsa_key() -> rsa::RsaPrivateKey {
    use rsa::pkcs8::DecodePrivateKey as _;
    rsa::RsaPrivateKey::from_pkcs8_pem(RSA_PRIVATE).expect("the test RSA key")
}

fn ec_key() -> p256::ecdsa::SigningKey {
    use p256::pkcs8::DecodePrivateKey as _;
    p256::ecdsa::SigningKey::from_pkcs8_pem(EC_PRIVATE).expect("the test P-256 key")
}

fn header(alg: &str, kid: Option<&str>) -> Value {
    match kid {
        Some(kid) => json!({ "alg": alg, "typ": "JWT", "kid": kid }),
        None => json!({ "alg": alg, "typ": "JWT" }),
    }
}

/// A JWKS document with the test RSA key as `rsa_kid` and the test P-256 key as `ec_kid`, as an
/// identity provider publishes it.
fn jwks(rsa_kid: &str, ec_kid: &str) -> String {
    use rsa::traits::PublicKeyParts as _;
    let rsa = rsa_key().to_public_key();
    let ec = ec_key().verifying_key().to_encoded_point(false);
    json!({ "keys": [
        {
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": rsa_kid,
            "n": b64url(&rsa.n().to_bytes_be()), "e": b64url(&rsa.e().to_bytes_be()),
        },
        {
            "kty": "EC", "use": "sig", "crv": "P-256", "kid": ec_kid,
            "x": b64url(ec.x().expect("an uncompressed point")),
            "y": b64url(ec.y().expect("an uncompressed point")),
        },
    ]})
    .to_string()
}

fn with_public_keys() -> dispute_api::TokenKeys {
    dispute_api::TokenKeys::new(SECRET)
        .with_public_key_pem(RSA_PUBLIC)
        .and_then(|keys| keys.with_public_key_pem(EC_PUBLIC))
        .expect("the test public keys load")
}

#[tokio::test]
async fn rs256_and_es256_tokens_are_accepted_with_the_identity_providers_public_keys() {
    let app = TestApp::postgres_with_tokens(with_public_keys()).await;
    let system = jwt(header("RS256", None), claims("system", "order-service"), Sign::Rs256(&rsa_key()));
    let registered = app.send(Method::PUT, "/v1/orders/o-1", Some(&system), Some(&order("o-1")), &[]).await;
    assert_eq!(registered.assert_ok().sequence(), 1);
    // HS256 tokens with the secret still work beside them.
    app.request_refund("o-1", "refund_only", "quality_issue", 6_000).await.assert_ok();
    let merchant = jwt(header("ES256", None), claims("merchant", MERCHANT), Sign::Es256(&ec_key()));
    let accepted = app
        .send(Method::POST, "/v1/disputes/o-1/merchant-accept", Some(&merchant), Some(&json!({})), &[])
        .await;
    assert_eq!((accepted.assert_ok().sequence(), accepted.status_text()), (3, "refund_pending"));
}

#[tokio::test]
async fn a_jwks_key_is_picked_by_the_tokens_kid_and_an_unknown_kid_is_401() {
    let keys =
        dispute_api::TokenKeys::new(SECRET).with_jwks(&jwks("rsa-2026", "ec-2026")).expect("the JWKS loads");
    let app = TestApp::postgres_with_tokens(keys).await;
    let system = jwt(header("RS256", Some("rsa-2026")), claims("system", "orders"), Sign::Rs256(&rsa_key()));
    let registered = app.send(Method::PUT, "/v1/orders/o-1", Some(&system), Some(&order("o-1")), &[]).await;
    assert_eq!(registered.assert_ok().sequence(), 1);
    app.request_refund("o-1", "refund_only", "quality_issue", 6_000).await.assert_ok();
    let merchant = claims("merchant", MERCHANT);
    let cases = [
        (jwt(header("ES256", Some("ec-2025")), merchant.clone(), Sign::Es256(&ec_key())), "an unknown kid"),
        (
            jwt(header("RS256", Some("rsa-2025")), merchant.clone(), Sign::Rs256(&rsa_key())),
            "another unknown kid",
        ),
        (
            jwt(header("RS256", Some("ec-2026")), merchant.clone(), Sign::Rs256(&rsa_key())),
            "the kid of a key of another algorithm",
        ),
    ];
    for (token, what) in cases {
        assert_unauthenticated(&app, "o-1", Some(&format!("Bearer {token}")), what).await;
    }
    let by_kid = jwt(header("ES256", Some("ec-2026")), merchant, Sign::Es256(&ec_key()));
    let accepted = app
        .send(Method::POST, "/v1/disputes/o-1/merchant-accept", Some(&by_kid), Some(&json!({})), &[])
        .await;
    assert_eq!(accepted.assert_ok().sequence(), 3);
}

#[tokio::test]
async fn an_hs256_token_keyed_with_a_public_key_or_alg_none_is_401() {
    let app = TestApp::postgres_with_tokens(with_public_keys()).await;
    awaiting_merchant(&app, "o-1").await;
    let merchant = claims("merchant", MERCHANT);
    let cases = [
        (
            jwt(hs256(), merchant.clone(), Sign::Hs256(RSA_PUBLIC)),
            "HS256 keyed with the RSA public key's PEM",
        ),
        (
            jwt(hs256(), merchant.clone(), Sign::Hs256(EC_PUBLIC)),
            "HS256 keyed with the P-256 public key's PEM",
        ),
        (jwt(json!({ "alg": "none", "typ": "JWT" }), merchant.clone(), Sign::Nothing), "alg none"),
        (
            jwt(json!({ "alg": "none", "typ": "JWT" }), merchant.clone(), Sign::Rs256(&rsa_key())),
            "alg none with an RS256 signature",
        ),
    ];
    for (token, what) in cases {
        assert_unauthenticated(&app, "o-1", Some(&format!("Bearer {token}")), what).await;
    }
    assert_eq!(app.merchant_accept("o-1").await.assert_ok().sequence(), 3);

    // With public keys alone (no secret), HS256 finds no key at all.
    let public_only = dispute_api::TokenKeys::public_only()
        .with_public_key_pem(RSA_PUBLIC)
        .and_then(|keys| keys.with_jwks(&jwks("rsa-2026", "ec-2026")))
        .expect("the test public keys load");
    assert!(!public_only.can_issue(), "no secret, no minting");
    let valid = jwt(header("RS256", None), merchant.clone(), Sign::Rs256(&rsa_key()));
    assert!(public_only.verify(&valid).is_some(), "the control: an RS256 token is accepted");
    for pem in [RSA_PUBLIC, EC_PUBLIC] {
        for kid in [None, Some("rsa-2026"), Some("ec-2026")] {
            let confused = jwt(header("HS256", kid), merchant.clone(), Sign::Hs256(pem));
            assert!(public_only.verify(&confused).is_none(), "HS256 keyed with a public key, kid {kid:?}");
        }
    }
    let none = jwt(json!({ "alg": "none" }), merchant, Sign::Nothing);
    assert!(public_only.verify(&none).is_none(), "alg none");
}
