//! The OpenAPI document, made from the code that serves it. The fixed routes carry their own
//! `#[utoipa::path]` and are registered through utoipa-axum's router, so a route cannot exist
//! without its documentation; the command routes come from the domain's command table, which
//! builds their handlers and their operations together ([`commands`]). What the edge does to
//! every request (correlation id, time limit, auth, rate limit) is documented once, by
//! [`Edge`], as the edge layers do it once.

use dispute_domain::command::*;
use dispute_domain::*;
use serde_json::json;
use utoipa::Modify;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, ContentBuilder, OpenApi, Paths, RefOr, Required, Schema};
use utoipa_axum::router::UtoipaMethodRouter;

use crate::AppState;
use crate::commands::{CommandAnswer, CommandRoute, ROUTES};
use crate::error::{PROBLEM_JSON, Problem};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "disputes",
        description = "Refund-dispute arbitration. Commands become events in an append-only \
                       log; views are projected from it and may lag (send `X-Min-Sequence` to \
                       wait for your own write); auditors replay the log as of any instant.\n\n\
                       Every answer that is not a success is `application/problem+json` with a \
                       stable `code`. Money is integer minor units with an ISO 4217 currency.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    components(schemas(
        Problem,
        CommandAnswer,
        OrderFacts,
        MarkDelivered,
        RequestRefund,
        MerchantAccept,
        MerchantReject,
        MerchantOffer,
        DeclineOffer,
        SubmitEvidence,
        Escalate,
        Assign,
        Judge,
        Appeal,
        ShipReturn,
        ConfirmReturn,
        RecordRefundPaid,
        Withdraw,
        PostMessage,
        RequestEvidence,
        MarkShipped,
    )),
    tags(
        (name = "commands", description = "Change a dispute: each accepted command appends events."),
        (name = "views", description = "Read the projected views (eventually consistent)."),
        (name = "audit", description = "Replay the log and check its hash chain (auditors only)."),
        (name = "operations", description = "Health, readiness, metrics and this document."),
    )
)]
pub(crate) struct ApiDoc;

/// The whole document, as served at `/openapi.json`.
pub fn document() -> OpenApi {
    crate::api().into_openapi()
}

/// The operation and handler of each command route, for utoipa-axum's router.
pub(crate) fn commands() -> impl Iterator<Item = UtoipaMethodRouter<AppState>> {
    ROUTES.into_iter().map(|route| {
        let method = match route.method {
            Method::Put => HttpMethod::Put,
            Method::Post => HttpMethod::Post,
        };
        let mut paths = Paths::new();
        paths.add_path_operation(route.path, vec![method], command_operation(route));
        (Vec::new(), paths, crate::commands::method_router(route))
    })
}

fn command_operation(route: &CommandRoute) -> Operation {
    let roles = route.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ");
    let mut operation = OperationBuilder::new()
        .operation_id(Some(route.name))
        .tag("commands")
        .summary(Some(route.name.replace('_', " ")))
        .description(Some(format!("Role: {roles}. Answers the state after the events it appended.")))
        .security(bearer())
        .parameter(order_id())
        .parameter(
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "Retrying with the same key and the same request replays the first answer \
                     (with `Idempotent-Replayed: true`) and appends nothing; the same key with \
                     another request is refused. Keys are kept per caller for 48 hours.",
                ))
                .schema(Some(string(Some(1), Some(255), Some("^[\\x21-\\x7e]+$")))),
        )
        .parameter(
            ParameterBuilder::new()
                .name("If-Match")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "Runs the command only if the dispute's last sequence is this one (the \
                     `ETag` of an answer, or its `sequence`); otherwise 409.",
                ))
                .schema(Some(string(None, Some(24), Some(r#"^(W/)?"[0-9]{1,19}"$|^[0-9]{1,19}$"#))))
                .example(Some(json!("\"3\""))),
        )
        .response(
            "200",
            ResponseBuilder::new()
                .description("The events are committed; the dispute's state after them.")
                .content("application/json", Content::new(Some(schema_ref("CommandAnswer"))))
                .header(
                    "ETag",
                    HeaderBuilder::new()
                        .schema(Some(string(None, None, None)))
                        .description(Some("The sequence after the command, quoted: send it as `If-Match`."))
                        .build(),
                )
                .header(
                    "Idempotent-Replayed",
                    HeaderBuilder::new()
                        .schema(Some(string(None, None, Some("^true$"))))
                        .description(Some("Present on the replay of an earlier answer to the same key."))
                        .build(),
                )
                .build(),
        )
        .response("400", problem("The request cannot be read.", &["malformed_request"]))
        .response("404", problem("No such order, or not the caller's.", &["not_found"]))
        .response(
            "409",
            retry_after(problem(
                "The command does not fit the dispute's state, or another request changed it \
                 first (reload and retry), or the idempotency key is held by a request still \
                 running (`Retry-After` says when to retry) or was used with another request.",
                &["invalid_transition", "concurrent_modification", "idempotency_key_reused"],
            )),
        )
        .response("422", problem("A rule refuses the command.", &rule_codes()));
    if let Some(schema) = route.body_schema {
        let content = ContentBuilder::new().schema(Some(schema_ref(schema)));
        let content = match command_example(route.kind) {
            Some(example) => content.example(Some(example)),
            None => content,
        };
        operation = operation.request_body(Some(
            RequestBodyBuilder::new()
                .content("application/json", content.build())
                .required(Some(if route.body_required { Required::True } else { Required::False }))
                .build(),
        ));
    }
    operation.build()
}

/// The `{id}` of the command routes (the views declare it as [`crate::views::OrderId`]).
fn order_id() -> ParameterBuilder {
    ParameterBuilder::new()
        .name("id")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some("The order id; an order has one dispute stream, named by it."))
        .schema(Some(string(Some(1), Some(128), Some("^[A-Za-z0-9_:-]+$"))))
        .example(Some(json!("o-1001")))
}

fn string(min: Option<usize>, max: Option<usize>, pattern: Option<&str>) -> Schema {
    ObjectBuilder::new().schema_type(Type::String).min_length(min).max_length(max).pattern(pattern).into()
}

fn schema_ref(name: &str) -> RefOr<Schema> {
    RefOr::Ref(utoipa::openapi::Ref::from_schema_name(name))
}

/// A problem answer that may carry the given codes.
fn problem(description: &str, codes: &[&str]) -> Response {
    let codes = codes.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ");
    ResponseBuilder::new()
        .description(format!("{description} Codes: {codes}."))
        .content(PROBLEM_JSON, Content::new(Some(schema_ref("Problem"))))
        .build()
}

fn retry_after(response: Response) -> Response {
    let mut response = response;
    response.headers.insert(
        "Retry-After".to_string(),
        RefOr::T(
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1))))
                .description(Some("Seconds to wait before retrying."))
                .build(),
        ),
    );
    response
}

/// The codes of the rules' refusals (422).
fn rule_codes() -> Vec<&'static str> {
    DisputeError::codes(RefusalKind::RuleViolation)
}

/// A request body as a client would send it, for the commands that take one (a test holds
/// each to its route's parser).
pub(crate) fn command_example(kind: ActionKind) -> Option<serde_json::Value> {
    use ActionKind::*;
    let cny = |amount| json!({ "amount_minor": amount, "currency": "CNY" });
    let photo = json!([{
        "kind": "photo", "uri": "https://evidence.example/o-1001/1.jpg",
        "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    }]);
    Some(match kind {
        RegisterOrder => json!({
            "order_id": "o-1001", "buyer_id": "b-1", "merchant_id": "m-1", "category": "apparel",
            "paid_amount": cny(12_900), "payment_channel": "alipay",
            "paid_at": "2026-11-02T08:00:00Z",
        }),
        MarkDelivered => json!({ "delivered_at": "2026-11-04T15:30:00Z" }),
        MarkShipped => json!({ "shipped_at": "2026-11-03T09:00:00Z" }),
        RequestRefund => json!({
            "kind": "refund_only", "reason": "quality_issue", "amount": cny(12_900),
            "description": "The seam split on the first wash.", "evidence": photo,
        }),
        MerchantReject => json!({
            "reason_code": "insufficient_evidence", "note": "The photo shows wear.", "evidence": [],
        }),
        MerchantOffer => json!({
            "kind": "partial_refund_with_return", "amount": cny(6_000),
            "note": "Send it back and get half; it can be resold as a second.",
            "return_address": "Returns desk, 8 Wensan Road, Hangzhou",
        }),
        MerchantAccept => json!({
            "note": "Sorry about the seam.", "return_address": "Returns desk, 8 Wensan Road, Hangzhou",
        }),
        ConfirmReturn => {
            json!({ "inspection_failed": "wrong_item", "note": "A blue shirt came back, not the red one sold." })
        }
        SubmitEvidence => json!({ "evidence": photo }),
        DeclineOffer => json!({ "note": "Half is not enough for a shirt that fell apart." }),
        Withdraw => json!({ "note": "The courier found the parcel; it arrived after all." }),
        Escalate => json!({ "note": "The merchant ignores the defect." }),
        Assign => json!({ "arbitrator_id": "a-7" }),
        Judge => json!({
            "outcome": "refund_partial", "amount": cny(6_000), "return_required": false,
            "rationale": "The defect is real but minor.",
        }),
        Appeal => json!({ "note": "New evidence of the defect." }),
        ShipReturn => json!({ "carrier": "SF Express", "tracking_number": "SF1234567890" }),
        RecordRefundPaid => json!({
            "amount": cny(6_000), "channel": "alipay", "payment_ref": "ALI-20261106-0001",
            "paid_at": "2026-11-06T10:00:00Z",
        }),
        PostMessage => json!({ "text": "The parcel tracking shows it was returned.", "evidence": photo }),
        RequestEvidence => json!({ "party": "merchant", "what": "The courier's proof of delivery." }),
        _ => return None,
    })
}

/// What the edge adds to every operation, documented where the edge's layers are known: the
/// correlation id on every request and answer, the time limit, the internal failure, and for
/// the authenticated routes the bearer token, its 401, the role's 403, the rate limit's 429
/// and the store's 503.
pub(crate) struct Edge;

impl Modify for Edge {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT with `sub` (the caller's id), `role` (system, buyer, merchant, \
                         arbitrator or auditor) and `exp`: HS256 with the service's secret, or \
                         RS256 / ES256 from the configured public keys.",
                    ))
                    .build(),
            ),
        );
        for item in doc.paths.paths.values_mut() {
            for operation in [&mut item.get, &mut item.put, &mut item.post].into_iter().flatten() {
                edge(operation);
            }
        }
    }
}

fn edge(operation: &mut Operation) {
    let correlation = ParameterBuilder::new()
        .name("X-Correlation-Id")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Names the request in logs, in the events it appends and on their CloudEvents. \
             1 to 128 visible characters; otherwise (or when absent) the service makes one.",
        ))
        .schema(Some(string(None, None, None)))
        .build();
    operation.parameters.get_or_insert_with(Vec::new).push(RefOr::T(correlation));

    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let responses = &mut operation.responses.responses;
    let mut add = |status: &str, response: Response| {
        responses.entry(status.to_string()).or_insert(RefOr::T(response));
    };
    if secured {
        add(
            "401",
            ResponseBuilder::new()
                .description("No bearer token, or one that is invalid or expired. Codes: `unauthenticated`.")
                .content(PROBLEM_JSON, Content::new(Some(schema_ref("Problem"))))
                .header(
                    "WWW-Authenticate",
                    HeaderBuilder::new()
                        .schema(Some(string(None, None, Some("^Bearer"))))
                        .description(Some("`Bearer`, with `error=\"invalid_token\"` for a refused token."))
                        .build(),
                )
                .build(),
        );
        add("403", problem("The caller's role may not do this.", &["forbidden"]));
        add("429", retry_after(problem("Too many requests from this caller.", &["rate_limited"])));
        add(
            "503",
            retry_after(problem(
                "The event store did not answer (a lost connection, a restart). Repeat the request \
                 after the wait: a command repeated with its `Idempotency-Key` takes effect once.",
                &["not_ready"],
            )),
        );
    }
    if operation.request_body.is_some() {
        add("413", problem("The body is larger than 64 KiB.", &["payload_too_large"]));
    }
    add("408", problem("The request took longer than the time limit.", &["request_timeout"]));
    add("500", problem("An internal failure (logged, not described).", &["internal"]));
    for response in responses.values_mut() {
        if let RefOr::T(response) = response {
            response.headers.insert(
                "X-Correlation-Id".to_string(),
                RefOr::T(
                    HeaderBuilder::new()
                        .schema(Some(string(None, None, None)))
                        .description(Some("The request's correlation id."))
                        .build(),
                ),
            );
        }
    }
}

/// The security requirement of every route that takes a token.
fn bearer() -> SecurityRequirement {
    SecurityRequirement::new("bearer", Vec::<String>::new())
}
