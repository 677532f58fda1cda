//! Synthetic but valid logs for the audit benchmark (`disputes audit bench`): whole dispute
//! lifecycles (registered → requested → approved → refund paid), chained by the function
//! [`dispute_store::Store::execute`] chains with ([`chain::link`]), inserted in bulk.
//!
//! Only for an empty store set aside for measuring: it writes events no command caused.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use cqrs_es::DomainEvent;
use dispute_domain::{
    ApprovedBy, DisputeEvent, Evidence, EvidenceKind, Money, OrderFacts, PaymentChannel, RefundKind,
    RefundReason, Role, expected_arrival,
};
use dispute_store::chain::{self, GENESIS, Unlinked};
use dispute_store::{BulkStream, EventMetadata, Store};

use crate::AuditError;

/// Events per synthetic order.
pub const EVENTS_PER_ORDER: u64 = 4;

/// Orders inserted per statement.
const ORDERS_PER_INSERT: u64 = 2_500;

/// The four chained events of synthetic order `n`.
fn lifecycle(n: u64, start: DateTime<Utc>) -> BulkStream {
    let order_id = format!("bench-{n:08}");
    let t0 = start + Duration::seconds(n as i64);
    let amount = Money::new(1_000 + (n % 9_000) as i64, "CNY");
    let facts = OrderFacts {
        order_id: order_id.clone(),
        buyer_id: format!("buyer-{}", n % 10_000),
        merchant_id: format!("merchant-{}", n % 500),
        paid_amount: Money::new(20_000, "CNY"),
        paid_at: t0 - Duration::days(3),
        category: "books".to_string(),
        payment_channel: PaymentChannel::Alipay,
        shipped_at: Some(t0 - Duration::days(2)),
        delivered_at: Some(t0 - Duration::days(1)),
    };
    let paid_at = t0 + Duration::hours(3);
    let events = [
        (Role::System, "order-service", "register_order", t0, DisputeEvent::OrderRegistered { facts }),
        (
            Role::Buyer,
            "buyer",
            "request",
            t0 + Duration::hours(1),
            DisputeEvent::RefundRequested {
                round: 1,
                kind: RefundKind::RefundOnly,
                reason: RefundReason::QualityIssue,
                amount: amount.clone(),
                description: "the cover is torn".to_string(),
                evidence: vec![Evidence {
                    kind: EvidenceKind::Photo,
                    uri: format!("https://evidence.example/{order_id}/1.jpg"),
                    sha256: "a".repeat(64),
                    note: None,
                }],
                merchant_response_due: t0 + Duration::hours(49),
            },
        ),
        (
            Role::Merchant,
            "merchant",
            "merchant_accept",
            t0 + Duration::hours(2),
            DisputeEvent::RefundApproved {
                round: 1,
                amount: amount.clone(),
                approved_by: ApprovedBy::Merchant,
                return_required: false,
                return_ship_due: None,
                note: None,
                // As stored before approvals carried their time: the pinned hashes stay.
                approved_at: None,
                return_address: None,
                refund_due: None,
            },
        ),
        (
            Role::System,
            "payments",
            "refund_paid",
            paid_at,
            DisputeEvent::RefundPaid {
                round: 1,
                amount,
                channel: PaymentChannel::Alipay,
                payment_ref: format!("pay-{order_id}"),
                paid_at,
                expected_arrival_by: expected_arrival(PaymentChannel::Alipay, paid_at),
            },
        ),
    ];
    let unlinked = (1..).zip(events).map(|(sequence, (role, actor, command, time, event))| Unlinked {
        event_type: event.event_type(),
        event_version: event.event_version(),
        payload: serde_json::to_value(&event).expect("an event serializes"),
        metadata: EventMetadata {
            actor_role: role,
            actor_id: actor.to_string(),
            command: command.to_string(),
            time,
            correlation_id: format!("corr-{n}-{sequence}"),
            idempotency_key: None,
            prevhash: None,
            hash: None,
        },
    });
    let linked = chain::link(&order_id, 0, GENESIS, unlinked);
    (order_id, linked)
}

/// Inserts `orders` synthetic lifecycles into an empty store, calling `progress(done, total)`
/// as events go in. Refuses a store that already holds events.
pub async fn load_synthetic(
    store: &Arc<Store>,
    orders: u64,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64, AuditError> {
    if store.count_events().await? > 0 {
        return Err(AuditError::Event {
            order_id: String::new(),
            sequence: 0,
            reason: "the benchmark loads only into an empty store".to_string(),
        });
    }
    let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().expect("an instant");
    let total = orders * EVENTS_PER_ORDER;
    let mut done = 0;
    let mut first = 0;
    while first < orders {
        let last = (first + ORDERS_PER_INSERT).min(orders);
        let streams: Vec<BulkStream> = (first..last).map(|n| lifecycle(n, start)).collect();
        store.insert_bulk(&streams).await?;
        done += streams.iter().map(|(_, events)| events.len() as u64).sum::<u64>();
        progress(done, total);
        first = last;
    }
    store.analyze_events().await?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use dispute_store::StoredEvent;

    use super::*;

    #[test]
    fn a_synthetic_lifecycle_is_chained_and_replays_to_refunded() {
        let (order_id, linked) = lifecycle(7, Utc::now());
        let events: Vec<StoredEvent> = linked
            .into_iter()
            .map(|row| StoredEvent {
                order_id: order_id.clone(),
                sequence: row.sequence,
                event_type: row.event_type,
                event_version: row.event_version,
                payload: row.payload,
                metadata: row.metadata,
                cursor: Default::default(),
            })
            .collect();
        assert_eq!(chain::verify_stream(events.iter().map(StoredEvent::hashed)), vec![]);
        let replayed = crate::replay(&events, None).unwrap().unwrap();
        assert_eq!(replayed.state.status(), dispute_domain::Status::Refunded);
    }

    #[test]
    fn a_synthetic_lifecycle_is_stored_exactly_as_before() {
        let (_, rows) = lifecycle(7, "2026-01-01T00:00:00Z".parse().unwrap());
        assert_eq!(
            rows[3].metadata.to_string(),
            r#"{"actor_id":"payments","actor_role":"system","command":"refund_paid","correlation_id":"corr-7-4","hash":"b3526c3f8edae2b829dcd707515e94cfc0794747070d2870f8dfa567fe947026","prevhash":"7432c06ded65eb8fb99f5ad35ce7028c707ca6ba03ccd36e6621304815a54b7c","time":"2026-01-01T03:00:07.000000Z"}"#
        );
    }
}
