//! The conversation on a dispute: messages from its parties and its arbitrator, and the
//! arbitrator's evidence requests, answered by the party's evidence or lapsed at their deadline.

use super::{Context, Decided, Round, party_of, require_text};
use crate::command::{MAX_TEXT_CHARS, PostMessage, RequestEvidence};
use crate::{ActionKind, Dispute, DisputeError, DisputeEvent, Evidence, Party, Role, Status};

impl Dispute {
    pub(super) fn post_message(&self, cx: &Context, cmd: &PostMessage) -> Decided {
        let (order, round) = self.in_status(cx)?;
        let policy = cx.policy.for_category(&order.category);
        let role = cx.actor.role;
        if role == Role::Arbitrator && round.arbitrator.as_deref() != Some(cx.actor.id.as_str()) {
            return Err(DisputeError::NotAssignee);
        }
        check_text("text", &cmd.text)?;
        let sent = match role {
            Role::Buyer => self.buyer_messages,
            Role::Merchant => self.merchant_messages,
            _ => self.arbitrator_messages,
        };
        if sent >= policy.max_messages_per_party {
            return Err(DisputeError::TooManyMessages);
        }
        let mut events = vec![DisputeEvent::MessagePosted {
            round: self.round,
            author_role: role,
            author_id: cx.actor.id.clone(),
            text: cmd.text.clone(),
            evidence: cmd.evidence.clone(),
        }];
        if !cmd.evidence.is_empty() {
            // Evidence on a message follows the rules of submitted evidence.
            if role == Role::Arbitrator || !ActionKind::SubmitEvidence.spec().statuses.contains(&self.status)
            {
                return Err(DisputeError::EvidenceNotAllowed);
            }
            let party = party_of(cx.actor);
            self.check_evidence_window(cx, round, party)?;
            self.check_evidence(party, &cmd.evidence, policy, false)?;
            events.extend(self.answer(round, party, &cmd.evidence));
        }
        Ok(events)
    }

    pub(super) fn request_evidence(&self, cx: &Context, cmd: &RequestEvidence) -> Decided {
        let (order, round) = self.in_status(cx)?;
        if round.arbitrator.as_deref() != Some(cx.actor.id.as_str()) {
            return Err(DisputeError::NotAssignee);
        }
        check_text("what", &cmd.what)?;
        if round.evidence_request.is_some() {
            return Err(DisputeError::EvidenceRequestOpen);
        }
        let policy = cx.policy.for_category(&order.category);
        Ok(vec![DisputeEvent::EvidenceRequested {
            round: self.round,
            request: self.evidence_requests + 1,
            arbitrator_id: cx.actor.id.clone(),
            party: cmd.party,
            what: cmd.what.clone(),
            due: cx.now + policy.evidence_request,
        }])
    }

    /// Whether `party` may add evidence now, in a status where evidence is taken: before
    /// escalation until its window closes, after it within the evidence window, and at any
    /// time until the deadline of an open request that names the party.
    pub(super) fn check_evidence_window(
        &self,
        cx: &Context,
        round: &Round,
        party: Party,
    ) -> Result<(), DisputeError> {
        let requested = round.evidence_request.as_ref().is_some_and(|r| r.party == party && cx.now <= r.due);
        let due = match self.status {
            Status::AwaitingMerchant => None,
            Status::Rejected => round.escalation_due,
            _ => round.evidence_due,
        };
        if !requested && due.is_some_and(|due| cx.now > due) {
            return Err(DisputeError::EvidenceWindowClosed);
        }
        Ok(())
    }

    /// The answer to the open request, when `party`'s evidence is what it asked for.
    pub(super) fn answer(&self, round: &Round, party: Party, evidence: &[Evidence]) -> Option<DisputeEvent> {
        let request = round.evidence_request.as_ref().filter(|r| r.party == party && !evidence.is_empty())?;
        Some(DisputeEvent::EvidenceRequestAnswered { round: self.round, request: request.number, party })
    }
}

/// Non-empty, and at most [`MAX_TEXT_CHARS`] characters.
fn check_text(field: &'static str, value: &str) -> Result<(), DisputeError> {
    require_text(field, value)?;
    if value.chars().count() > MAX_TEXT_CHARS {
        return Err(DisputeError::TextTooLong(field));
    }
    Ok(())
}
