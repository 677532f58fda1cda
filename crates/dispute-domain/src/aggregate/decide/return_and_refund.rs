//! The goods coming back and the money going out: shipping and confirming a return, and the
//! payment system's report of the refund paid.

use chrono::{DateTime, Datelike, Duration, Utc, Weekday};

use super::{Context, Decided, require_text};
use crate::command::{ConfirmReturn, RecordRefundPaid, ShipReturn};
use crate::{Dispute, DisputeError, DisputeEvent, PaymentChannel, ReceiptConfirmedBy};

/// How far the payment system's clock may run ahead of ours: a `paid_at` later than now plus
/// this is refused.
pub const PAYMENT_CLOCK_SKEW: Duration = Duration::minutes(5);

impl Dispute {
    pub(super) fn ship_return(&self, cx: &Context, cmd: &ShipReturn) -> Decided {
        let (order, round) = self.in_status(cx)?;
        let policy = cx.policy.for_category(&order.category);
        require_text("carrier", &cmd.carrier)?;
        require_text("tracking_number", &cmd.tracking_number)?;
        if round.return_ship_due.is_some_and(|due| cx.now > due) {
            return Err(DisputeError::ReturnWindowClosed);
        }
        Ok(vec![DisputeEvent::ReturnShipped {
            round: self.round,
            carrier: cmd.carrier.clone(),
            tracking_number: cmd.tracking_number.clone(),
            receipt_confirm_due: cx.now + policy.return_confirm,
        }])
    }

    /// Receipt as expected, or a failed inspection (with a note saying what was found), which
    /// the buyer may escalate like a rejection.
    pub(super) fn confirm_return(&self, cx: &Context, cmd: &ConfirmReturn) -> Decided {
        let (order, round) = self.in_status(cx)?;
        let policy = cx.policy.for_category(&order.category);
        if let Some(problem) = cmd.inspection_failed {
            let note = cmd.note.clone().unwrap_or_default();
            require_text("note", &note)?;
            return Ok(vec![DisputeEvent::ReturnInspectionFailed {
                round: self.round,
                problem,
                note,
                escalation_due: cx.now + policy.escalation_window,
            }]);
        }
        Ok(vec![DisputeEvent::ReturnReceived {
            round: self.round,
            confirmed_by: ReceiptConfirmedBy::Merchant,
            note: cmd.note.clone(),
            refund_due: (!round.replacement).then(|| cx.now + policy.refund_payment),
        }])
    }

    pub(super) fn record_refund_paid(&self, cx: &Context, cmd: &RecordRefundPaid) -> Decided {
        let (order, round) = self.in_status(cx)?;
        cmd.amount.check_currency(&order.paid_amount.currency)?;
        require_text("payment_ref", &cmd.payment_ref)?;
        if Some(&cmd.amount) != round.approved.as_ref() {
            return Err(DisputeError::AmountMismatch);
        }
        if cmd.channel != order.payment_channel {
            return Err(DisputeError::ChannelMismatch);
        }
        // Approvals stored before they carried their time are checked against the clock only.
        if let Some(approved_at) = round.approved_at.filter(|at| cmd.paid_at < *at) {
            return Err(DisputeError::PaidBeforeApproval { approved_at });
        }
        let latest = cx.now + PAYMENT_CLOCK_SKEW;
        if cmd.paid_at > latest {
            return Err(DisputeError::PaidInFuture { latest });
        }
        Ok(vec![DisputeEvent::RefundPaid {
            round: self.round,
            amount: cmd.amount.clone(),
            channel: cmd.channel,
            payment_ref: cmd.payment_ref.clone(),
            paid_at: cmd.paid_at,
            expected_arrival_by: expected_arrival(cmd.channel, cmd.paid_at),
        }])
    }
}

/// When a refund paid at `paid_at` should reach the buyer: balance at once, Alipay and WeChat
/// Pay within one business day, bank cards within seven.
pub fn expected_arrival(channel: PaymentChannel, paid_at: DateTime<Utc>) -> DateTime<Utc> {
    let business_days = match channel {
        PaymentChannel::Balance => 0,
        PaymentChannel::Alipay | PaymentChannel::WechatPay => 1,
        PaymentChannel::BankCard => 7,
    };
    let mut at = paid_at;
    let mut left = business_days;
    while left > 0 {
        at += Duration::days(1);
        if !matches!(at.weekday(), Weekday::Sat | Weekday::Sun) {
            left -= 1;
        }
    }
    at
}
