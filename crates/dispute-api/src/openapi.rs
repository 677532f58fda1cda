//! The OpenAPI document, generated from the command route table and the domain's types.

use dispute_domain::command::*;
use dispute_domain::*;
use utoipa::OpenApi;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Paths, Ref, Required};

use crate::commands::{CommandAnswer, ROUTES};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "disputes",
        description = "Refund-dispute arbitration: commands over an append-only event store."
    ),
    components(schemas(
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
        Money,
        Evidence,
        Status,
        CloseReason
    ))
)]
struct ApiDoc;

/// The whole document, as served at `/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let mut paths = Paths::new();
    for route in ROUTES {
        let mut operation = OperationBuilder::new()
            .operation_id(Some(route.name))
            .summary(Some(format!("{} (role: {})", route.name, roles(route.roles))))
            .parameter(
                ParameterBuilder::new()
                    .name("id")
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .description(Some("The order id; one order has one dispute stream.")),
            )
            .parameter(header("Idempotency-Key", "Replays the first answer for the same key and body."))
            .parameter(header("If-Match", "Runs the command only if the stream's last sequence is this."))
            .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
            .response(
                "200",
                ResponseBuilder::new()
                    .description("The events are committed; the state after them.")
                    .content("application/json", Content::new(Some(Ref::from_schema_name("CommandAnswer"))))
                    .build(),
            );
        for (status, what) in [
            ("400", "malformed_request"),
            ("401", "unauthenticated"),
            ("403", "forbidden"),
            ("404", "not_found"),
            ("409", "invalid_transition, concurrent_modification or idempotency_key_reused"),
            ("413", "payload_too_large"),
            ("422", "a rule's code"),
        ] {
            operation =
                operation.response(status, Response::new(format!("application/problem+json: {what}")));
        }
        if let Some(schema) = route.body_schema {
            operation = operation.request_body(Some(
                RequestBodyBuilder::new()
                    .content("application/json", Content::new(Some(Ref::from_schema_name(schema))))
                    .required(Some(Required::True))
                    .build(),
            ));
        }
        let method = match route.method {
            Method::Put => HttpMethod::Put,
            Method::Post => HttpMethod::Post,
        };
        paths.add_path_operation(route.path, vec![method], operation.build());
    }
    for (path, summary) in [
        ("/healthz", "The process is alive."),
        ("/readyz", "The event store answers."),
        ("/openapi.json", "This document."),
    ] {
        paths.add_path_operation(
            path,
            vec![HttpMethod::Get],
            OperationBuilder::new().summary(Some(summary)).response("200", Response::new(summary)).build(),
        );
    }
    for (path, summary, as_of) in [
        (
            "/v1/audit/disputes/{id}",
            "The dispute's state replayed from the log as of an instant (role: auditor).",
            true,
        ),
        (
            "/v1/audit/disputes/{id}/events",
            "The dispute's stored events with their hashes, and the chain check (role: auditor).",
            false,
        ),
    ] {
        let mut operation = OperationBuilder::new()
            .summary(Some(summary))
            .parameter(
                ParameterBuilder::new()
                    .name("id")
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .description(Some("The order id.")),
            )
            .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
            .response("200", Response::new("application/json"));
        if as_of {
            operation = operation.parameter(
                ParameterBuilder::new()
                    .name("as_of")
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description(Some("RFC 3339 instant; the latest state when omitted.")),
            );
        }
        for (status, what) in [
            ("400", "malformed_request"),
            ("401", "unauthenticated"),
            ("403", "forbidden: every role but auditor"),
            ("404", "not_found: no events (as of the instant)"),
        ] {
            operation =
                operation.response(status, Response::new(format!("application/problem+json: {what}")));
        }
        paths.add_path_operation(path, vec![HttpMethod::Get], operation.build());
    }
    doc.paths = paths;
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
    );
    doc
}

fn header(name: &str, description: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .build()
}

fn roles(roles: &[Role]) -> String {
    roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
}
