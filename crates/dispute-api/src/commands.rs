//! The command routes, derived from the domain's command table: the router and the OpenAPI
//! document are both built from [`ROUTES`].
//!
//! Every route runs the same pipeline: authenticate, parse the body (unknown fields refused),
//! honour `Idempotency-Key` and `If-Match`, execute, answer with the state after the commit.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use std::ops::Deref;
use std::sync::LazyLock;

use dispute_domain::{
    Action, ActionKind, COMMANDS, CloseReason, CommandSpec, DisputeCommand, DisputeError, Method, Money,
    Role, Scope, Status,
};
use dispute_store::{Claim, CommandMetadata, Executed, KeyedRequest, Outcome, StoredResponse};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::error::PROBLEM_JSON;
use crate::extract::Path;
use crate::{ApiError, AppState};

const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// One command route: a caller-facing row of the domain's command table ([`COMMANDS`]), plus
/// what is HTTP about it (the path, the body's schema and its parser).
pub struct CommandRoute {
    /// The command of the domain's table.
    pub kind: ActionKind,
    pub method: Method,
    /// The axum path, with `{id}` for the order id.
    pub path: &'static str,
    /// The command's name in the dispute's words.
    pub name: &'static str,
    /// Who may issue it; others get 403 before the body is read. (The domain checks again,
    /// together with the party checks.)
    pub roles: &'static [Role],
    /// The OpenAPI schema of the body; `None` when the command takes none.
    pub body_schema: Option<&'static str>,
    /// Whether a body must be sent; the commands whose fields are all optional take none.
    pub body_required: bool,
    parse: Parse,
}

type Parse = fn(&[u8]) -> Result<Action, ApiError>;

/// Parses a JSON body into a command payload, refusing unknown fields.
fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::Malformed(format!("invalid body: {e}")))
}

/// For commands whose body is optional: nothing, or an object of optional fields.
fn optional_body<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) { Ok(T::default()) } else { body(bytes) }
}

/// The body of each command sent over HTTP: its OpenAPI schema, whether it must be sent, and
/// its parser. `None` for the service's internal commands, which have no route.
fn http_body(kind: ActionKind) -> Option<(Option<&'static str>, bool, Parse)> {
    use ActionKind::*;
    let (schema, required, parse): (&str, bool, Parse) = match kind {
        RegisterOrder => ("OrderFacts", true, |b| Ok(Action::RegisterOrder(body(b)?))),
        MarkDelivered => ("MarkDelivered", true, |b| Ok(Action::MarkDelivered(body(b)?))),
        RequestRefund => ("RequestRefund", true, |b| Ok(Action::RequestRefund(body(b)?))),
        MerchantAccept => ("MerchantAccept", false, |b| Ok(Action::MerchantAccept(optional_body(b)?))),
        MerchantReject => ("MerchantReject", true, |b| Ok(Action::MerchantReject(body(b)?))),
        MerchantOffer => ("MerchantOffer", true, |b| Ok(Action::MerchantOffer(body(b)?))),
        AcceptOffer => {
            let parse: Parse = |b| {
                let _: EmptyBody = optional_body(b)?;
                Ok(Action::AcceptOffer)
            };
            return Some((None, false, parse));
        }
        DeclineOffer => ("DeclineOffer", false, |b| Ok(Action::DeclineOffer(optional_body(b)?))),
        SubmitEvidence => ("SubmitEvidence", true, |b| Ok(Action::SubmitEvidence(body(b)?))),
        Escalate => ("Escalate", true, |b| Ok(Action::Escalate(body(b)?))),
        Assign => ("Assign", true, |b| Ok(Action::Assign(body(b)?))),
        Judge => ("Judge", true, |b| Ok(Action::Judge(body(b)?))),
        Appeal => ("Appeal", true, |b| Ok(Action::Appeal(body(b)?))),
        ShipReturn => ("ShipReturn", true, |b| Ok(Action::ShipReturn(body(b)?))),
        ConfirmReturn => ("ConfirmReturn", false, |b| Ok(Action::ConfirmReturn(optional_body(b)?))),
        RecordRefundPaid => ("RecordRefundPaid", true, |b| Ok(Action::RecordRefundPaid(body(b)?))),
        Withdraw => ("Withdraw", false, |b| Ok(Action::Withdraw(optional_body(b)?))),
        ExpireDeadline => return None,
        PostMessage => ("PostMessage", true, |b| Ok(Action::PostMessage(body(b)?))),
        RequestEvidence => ("RequestEvidence", true, |b| Ok(Action::RequestEvidence(body(b)?))),
        MarkShipped => ("MarkShipped", true, |b| Ok(Action::MarkShipped(body(b)?))),
    };
    Some((Some(schema), required, parse))
}

/// The route of a command of the table: order commands under `/v1/orders/{id}`, dispute
/// commands under `/v1/disputes/{id}`; internal ones have none.
fn route_of(spec: &'static CommandSpec) -> Option<CommandRoute> {
    let base = match spec.scope {
        Scope::Order => "/v1/orders/{id}",
        Scope::Dispute => "/v1/disputes/{id}",
        Scope::Internal => return None,
    };
    let (body_schema, body_required, parse) = http_body(spec.kind)?;
    let path = if spec.segment.is_empty() { base.to_string() } else { format!("{base}/{}", spec.segment) };
    Some(CommandRoute {
        kind: spec.kind,
        method: spec.method,
        // Built once for the life of the process.
        path: Box::leak(path.into_boxed_str()),
        name: spec.name,
        roles: spec.roles,
        body_schema,
        body_required,
        parse,
    })
}

static BUILT: LazyLock<Vec<CommandRoute>> = LazyLock::new(|| COMMANDS.iter().filter_map(route_of).collect());

/// The command routes, in the order of the domain's table: iterate it, or use it as a slice.
/// They are built on first use.
#[derive(Debug, Clone, Copy)]
pub struct Routes;

pub static ROUTES: Routes = Routes;

impl Deref for Routes {
    type Target = [CommandRoute];

    fn deref(&self) -> &[CommandRoute] {
        &BUILT
    }
}

impl IntoIterator for Routes {
    type Item = &'static CommandRoute;
    type IntoIter = std::slice::Iter<'static, CommandRoute>;

    fn into_iter(self) -> Self::IntoIter {
        BUILT.iter()
    }
}

#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EmptyBody {}

/// The answer to every accepted command.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CommandAnswer {
    pub dispute_id: String,
    /// The sequence of the stream's last event; send it as `If-Match` or `X-Min-Sequence`.
    pub sequence: u64,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_reason: Option<CloseReason>,
    pub round: u32,
    pub refunded_total: Money,
}

impl From<Outcome> for CommandAnswer {
    fn from(o: Outcome) -> Self {
        Self {
            dispute_id: o.dispute_id,
            sequence: o.sequence,
            status: o.status,
            close_reason: o.close_reason,
            round: o.round,
            refunded_total: o.refunded_total,
        }
    }
}

/// The shared handler behind every command route.
pub(crate) async fn handle(
    route: &'static CommandRoute,
    state: AppState,
    caller: Caller,
    order_id: String,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if !route.roles.contains(&caller.0.role) {
        return Err(ApiError::Refused(DisputeError::Forbidden));
    }
    let body = body?;
    let mut action = (route.parse)(&body)?;
    if let Action::RegisterOrder(facts) = &action
        && facts.order_id != order_id
    {
        return Err(ApiError::Malformed("order_id in the body differs from the path".to_string()));
    }
    if let Action::RegisterOrder(facts) = &mut action {
        facts.order_id = order_id.clone();
    }
    let expected_sequence = if_match(&headers)?;
    let idempotency_key = idempotency_key(&headers)?;
    let metadata = CommandMetadata {
        correlation_id: correlation_id(&headers),
        idempotency_key: idempotency_key.clone(),
    };
    let command = DisputeCommand::new(caller.0.clone(), action);
    let Some(key) = idempotency_key else {
        let outcome = state.store.execute(&order_id, command, expected_sequence, &metadata).await?;
        return Ok(answer(outcome));
    };

    // Keys are scoped to the caller; the fingerprint ties a key to one request.
    let subject = format!("{}:{}", caller.0.role.as_str(), caller.0.id);
    let fingerprint = fingerprint(route, &order_id, &headers, &body);
    let request =
        KeyedRequest { subject: &subject, key: &key, fingerprint: &fingerprint, answer: &stored_answer };
    // First as one commit, the events with their answer under the key. Nothing is written if
    // the key is in use or the command writes no events now: then through a claim.
    let store = &state.store;
    if let Some(outcome) =
        store.execute_answered(&order_id, &command, expected_sequence, &metadata, &request).await?
    {
        return Ok(answer(outcome));
    }
    let held = match store.claim_idempotency(&subject, &key, &fingerprint, state.idempotency).await? {
        Claim::Replay(stored) => return Ok(replay(stored)),
        Claim::Mismatch => return Err(ApiError::IdempotencyKeyReused),
        Claim::InFlight { retry_after } => return Err(ApiError::IdempotencyKeyInFlight { retry_after }),
        Claim::Held(held) => held,
    };
    let result = store
        .execute_claimed(&order_id, &command, expected_sequence, &metadata, &request, &held)
        .await
        .map_err(ApiError::from);
    // The store has answered the claim of a command that took effect. A rule's answer is
    // final for this request and is kept. A lost race wrote nothing and releases the key, so
    // that a retry executes afresh. After a store failure the command may or may not have
    // committed: the claim is left for the next retry to resolve from the log. A claim taken
    // over is the other request's to answer. If the record cannot be written, the answer
    // still goes out: the claim stays unfinished and a retry resolves it from the log.
    let recorded = match &result {
        Ok(_) | Err(ApiError::IdempotencyKeyInFlight { .. }) => Ok(()),
        Err(err @ ApiError::Refused(_)) => {
            let body = serde_json::to_string(&err.problem()).expect("problems serialize");
            let stored = StoredResponse { status: err.status_code().as_u16(), body };
            store.complete_idempotency(&subject, &key, &held, &stored).await
        }
        Err(ApiError::ConcurrentModification) => store.release_idempotency(&subject, &key, &held).await,
        Err(_) => store.abandon_idempotency(&subject, &key, &held).await,
    };
    if let Err(error) = recorded {
        tracing::warn!(%error, key, "the idempotency record was not updated; a retry resolves it from the log");
    }
    match result? {
        Executed::Now(outcome) => Ok(answer(outcome)),
        Executed::Before(outcome) => {
            let mut response = answer(outcome);
            response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(response)
        }
    }
}

/// The answer a key's record keeps for a command that took effect.
fn stored_answer(outcome: &Outcome) -> StoredResponse {
    let body = serde_json::to_string(&CommandAnswer::from(outcome.clone())).expect("answers serialize");
    StoredResponse { status: 200, body }
}

fn answer(outcome: Outcome) -> Response {
    let sequence = outcome.sequence;
    let mut response = Json(CommandAnswer::from(outcome)).into_response();
    response.headers_mut().insert(header::ETAG, etag(sequence));
    response
}

fn etag(sequence: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{sequence}\"")).expect("digits are a valid header")
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let content_type = if status.is_success() { "application/json" } else { PROBLEM_JSON };
    let sequence = serde_json::from_str::<CommandAnswer>(&stored.body).ok().map(|a| a.sequence);
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    if let Some(sequence) = sequence {
        headers.insert(header::ETAG, etag(sequence));
    }
    response
}

/// `If-Match: <sequence>`, bare or as an entity tag (`"5"`, `W/"5"`).
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let text = value.to_str().unwrap_or_default().trim();
    let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    text.parse()
        .map(Some)
        .map_err(|_| ApiError::Malformed("If-Match must be the sequence the command expects".to_string()))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    match value.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_LEN => Ok(Some(key.to_string())),
        _ => Err(ApiError::Malformed(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
        ))),
    }
}

/// The request's correlation id, which the edge has set or checked ([`crate::edge::correlate`]).
fn correlation_id(headers: &HeaderMap) -> String {
    headers
        .get(&crate::edge::CORRELATION_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .expect("the edge gives every request a correlation id")
}

/// What makes two requests "the same" for an idempotency key: route, order, `If-Match` and the
/// body's parameters. The body is compared as parsed JSON, not as bytes (as Stripe compares
/// parameters): other whitespace, another key order or other string escapes are the same
/// request. An empty body counts as `{}`: for the commands whose body is optional the two
/// carry the same parameters (none) and execute the same command. `body` has parsed already.
fn fingerprint(route: &CommandRoute, order_id: &str, headers: &HeaderMap, body: &[u8]) -> String {
    let mut canonical = Vec::with_capacity(body.len());
    if body.iter().all(u8::is_ascii_whitespace) {
        canonical.extend_from_slice(b"{}");
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(parameters) => write_canonical(&parameters, &mut canonical),
            // Not reached: the body parsed as the command's payload before.
            Err(_) => canonical.extend_from_slice(body),
        }
    }
    let mut hasher = Sha256::new();
    for part in [
        route.path.as_bytes(),
        order_id.as_bytes(),
        headers.get(header::IF_MATCH).map_or(&[][..], |v| v.as_bytes()),
    ] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.update(&canonical);
    dispute_store::chain::hex(&hasher.finalize())
}

/// `value` as compact JSON with every object's keys sorted, whatever order `serde_json::Map`
/// keeps (its `preserve_order` feature may be on somewhere in the build).
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by_key(|(key, _)| *key);
            out.push(b'{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key).expect("a string serializes");
                out.push(b':');
                write_canonical(value, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("a scalar serializes"),
    }
}

/// The handler of `route`, on its one method.
pub(crate) fn method_router(route: &'static CommandRoute) -> MethodRouter<AppState> {
    let method = match route.method {
        Method::Put => MethodFilter::PUT,
        Method::Post => MethodFilter::POST,
    };
    on(method, move |state, caller, path, headers, body| endpoint(route, state, caller, path, headers, body))
}

/// Axum handler shape: extracts the path id, hands over to [`handle`] and counts the outcome.
async fn endpoint(
    route: &'static CommandRoute,
    State(state): State<AppState>,
    caller: Caller,
    Path(order_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let result = handle(route, state, caller, order_id, headers, body).await;
    crate::metrics::record_command(route.name, &result);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command that takes a body has an example in the document, and the example is a
    /// body its route accepts.
    #[test]
    fn each_body_has_an_example_its_route_parses() {
        for route in ROUTES {
            let example = crate::openapi::command_example(route.kind);
            match (route.body_schema, example) {
                (Some(_), Some(example)) => {
                    let bytes = serde_json::to_vec(&example).expect("serializes");
                    if let Err(e) = (route.parse)(&bytes) {
                        panic!("the example of {} does not parse: {e}\n{example}", route.name);
                    }
                }
                (Some(schema), None) => panic!("{} ({schema}) has no example", route.name),
                (None, example) => assert!(example.is_none(), "{} takes no body", route.name),
            }
        }
    }

    /// The contract's command table (API.md). The paths are also part of each idempotency
    /// fingerprint, so they must not drift.
    #[test]
    fn the_routes_are_the_contracts() {
        use Method::{Post, Put};
        use Role::*;
        let want: &[(Method, &str, &[Role], Option<&str>)] = &[
            (Put, "/v1/orders/{id}", &[System], Some("OrderFacts")),
            (Post, "/v1/orders/{id}/delivered", &[System], Some("MarkDelivered")),
            (Post, "/v1/disputes/{id}/request", &[Buyer], Some("RequestRefund")),
            (Post, "/v1/disputes/{id}/merchant-accept", &[Merchant], Some("MerchantAccept")),
            (Post, "/v1/disputes/{id}/merchant-reject", &[Merchant], Some("MerchantReject")),
            (Post, "/v1/disputes/{id}/merchant-offer", &[Merchant], Some("MerchantOffer")),
            (Post, "/v1/disputes/{id}/accept-offer", &[Buyer], None),
            (Post, "/v1/disputes/{id}/decline-offer", &[Buyer], Some("DeclineOffer")),
            (Post, "/v1/disputes/{id}/evidence", &[Buyer, Merchant], Some("SubmitEvidence")),
            (Post, "/v1/disputes/{id}/escalate", &[Buyer], Some("Escalate")),
            (Post, "/v1/disputes/{id}/assign", &[Arbitrator], Some("Assign")),
            (Post, "/v1/disputes/{id}/judge", &[Arbitrator], Some("Judge")),
            (Post, "/v1/disputes/{id}/appeal", &[Buyer, Merchant], Some("Appeal")),
            (Post, "/v1/disputes/{id}/ship-return", &[Buyer], Some("ShipReturn")),
            (Post, "/v1/disputes/{id}/confirm-return", &[Merchant], Some("ConfirmReturn")),
            (Post, "/v1/disputes/{id}/refund-paid", &[System], Some("RecordRefundPaid")),
            (Post, "/v1/disputes/{id}/withdraw", &[Buyer], Some("Withdraw")),
            (Post, "/v1/disputes/{id}/messages", &[Buyer, Merchant, Arbitrator], Some("PostMessage")),
            (Post, "/v1/disputes/{id}/evidence-requests", &[Arbitrator], Some("RequestEvidence")),
            (Post, "/v1/orders/{id}/shipped", &[System], Some("MarkShipped")),
        ];
        let have: Vec<_> = ROUTES.iter().map(|r| (r.method, r.path, r.roles, r.body_schema)).collect();
        assert_eq!(have, want);
    }

    #[test]
    fn the_fingerprint_compares_parameters_not_bytes() {
        let route = &ROUTES[0];
        let headers = HeaderMap::new();
        let print = |body: &str| fingerprint(route, "o-1", &headers, body.as_bytes());
        let compact = r#"{"a":1,"b":{"c":[1,2,{"d":"\u00e9"}],"e":null}}"#;
        let same = "{ \"b\" : { \"e\": null, \"c\": [1, 2, {\"d\": \"\\u00e9\"}] },\n  \"a\": 1 }";
        let escaped = r#"{"b":{"c":[1,2,{"d":"é"}],"e":null},"a":1}"#;
        assert_eq!(print(compact), print(same));
        assert_eq!(print(compact), print(escaped));
        assert_eq!(print(""), print(" {} "), "an empty body is `{{}}`");
        for other in [
            r#"{"a":2,"b":{"c":[1,2,{"d":"é"}],"e":null}}"#,
            r#"{"a":1,"b":{"c":[2,1,{"d":"é"}],"e":null}}"#,
            r#"{"a":1,"b":{"c":[1,2,{"d":"é"}]}}"#,
            r#"{"a":"1","b":{"c":[1,2,{"d":"é"}],"e":null}}"#,
        ] {
            assert_ne!(print(compact), print(other), "{other}");
        }
        let mut if_match = HeaderMap::new();
        if_match.insert(header::IF_MATCH, HeaderValue::from_static("2"));
        assert_ne!(print(compact), fingerprint(route, "o-1", &if_match, compact.as_bytes()));
        assert_ne!(print(compact), fingerprint(route, "o-2", &headers, compact.as_bytes()));
        assert_ne!(print(compact), fingerprint(&ROUTES[1], "o-1", &headers, compact.as_bytes()));
    }
}
