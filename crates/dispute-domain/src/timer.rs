//! The deadline a dispute waits on: at most one status-changing deadline runs at a time, and
//! every event either starts one, ends the running one, or leaves it alone.
//!
//! The timer service keeps one row per order from [`DisputeEvent::timer_change`] alone, without
//! loading the aggregate; [`Dispute::pending_timer`](crate::Dispute::pending_timer) says the same from the state, and a
//! property test holds the two together.
//!
//! An arbitrator's evidence request changes no status but has a deadline of its own
//! ([`Deadline::EvidenceRequest`]): it runs under review, where no status-changing deadline
//! does, one request at a time.
//!
//! The other windows (evidence, appeal, the arbitration SLA) change no status: a command after
//! them is refused by its rule, and the views flag a breached SLA.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Deadline, DisputeEvent};

/// A status-changing deadline of one round, and when it comes due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    pub deadline: Deadline,
    pub round: u32,
    pub due: DateTime<Utc>,
}

/// What an event does to its order's timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerChange {
    /// The running timer, if any, keeps running.
    Unchanged,
    /// This timer now runs, replacing any other.
    Set(Timer),
    /// No timer runs any more.
    Cleared,
}

impl DisputeEvent {
    /// The timer this event starts or ends, read from what the event carries.
    pub fn timer_change(&self) -> TimerChange {
        use DisputeEvent::*;
        let set = |deadline, round: &u32, due: &DateTime<Utc>| {
            TimerChange::Set(Timer { deadline, round: *round, due: *due })
        };
        match self {
            OrderRegistered { .. } | OrderDelivered { .. } | EvidenceSubmitted { .. } => {
                TimerChange::Unchanged
            }
            ArbitratorAssigned { .. } => TimerChange::Unchanged,
            RefundRequested { round, merchant_response_due, .. } => {
                set(Deadline::MerchantResponse, round, merchant_response_due)
            }
            MerchantRejected { round, escalation_due, .. }
            | OfferDeclined { round, escalation_due, .. }
            | MerchantResponseMissed { round, escalation_due }
            | OfferLapsed { round, escalation_due }
            | ReturnInspectionFailed { round, escalation_due, .. } => {
                set(Deadline::EscalationWindow, round, escalation_due)
            }
            RefundApproved { round, return_ship_due: Some(due), .. } => {
                set(Deadline::ReturnShipping, round, due)
            }
            DisputeJudged { round, amount: Some(_), return_ship_due: Some(due), .. } => {
                set(Deadline::ReturnShipping, round, due)
            }
            MerchantOffered { round, expires_at: Some(due), .. }
            | ReplacementOffered { round, expires_at: due, .. } => set(Deadline::OfferResponse, round, due),
            ReplacementAgreed { round, return_ship_due, .. } => {
                set(Deadline::ReturnShipping, round, return_ship_due)
            }
            ReturnShipped { round, receipt_confirm_due, .. } => {
                set(Deadline::ReturnReceipt, round, receipt_confirm_due)
            }
            RefundApproved { .. }
            | DisputeJudged { .. }
            | MerchantOffered { .. }
            | DisputeEscalated { .. }
            | EscalationWindowClosed { .. }
            | RulingAppealed { .. }
            | ReturnReceived { .. }
            | ReturnShippingMissed { .. }
            | RefundPaid { .. }
            | RequestWithdrawn { .. } => TimerChange::Cleared,
            MessagePosted { .. } => TimerChange::Unchanged,
            // Under review no other deadline runs, so the request's is the order's timer.
            EvidenceRequested { round, due, .. } => set(Deadline::EvidenceRequest, round, due),
            EvidenceRequestAnswered { .. } | EvidenceRequestLapsed { .. } => TimerChange::Cleared,
            OrderShipped { .. } => TimerChange::Unchanged,
        }
    }
}
