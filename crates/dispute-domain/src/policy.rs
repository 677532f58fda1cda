//! The refund policy: windows, deadlines and limits, with per-category overrides.
//!
//! Parsed from TOML (the shape is in API.md and in `default_policy.toml`, which is the built-in
//! policy). Reading the file is the caller's business; this module only parses text.

use std::collections::BTreeMap;

use chrono::Duration;
use serde::Deserialize;

/// What the service does when the merchant lets the response deadline pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMerchantTimeout {
    /// The request counts as rejected; the buyer may escalate.
    AllowEscalation,
    /// The request is approved as asked (Taobao style).
    AutoAccept,
}

/// The rules that apply to one category, every field resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryPolicy {
    pub request_window: Duration,
    pub no_reason_window: Duration,
    pub merchant_response: Duration,
    pub on_merchant_timeout: OnMerchantTimeout,
    pub escalation_window: Duration,
    pub evidence_window: Duration,
    pub arbitration_sla: Duration,
    pub appeal_window: Duration,
    pub return_ship: Duration,
    pub return_confirm: Duration,
    pub max_rounds: u32,
    pub max_evidence_per_party: u32,
    pub no_reason_allowed: bool,
    /// How long a party has to answer an arbitrator's evidence request.
    pub evidence_request: Duration,
    /// Messages per author over the whole dispute: the buyer, the merchant, and the
    /// arbitrators together.
    pub max_messages_per_party: u32,
    /// How long the buyer has to answer a merchant's offer before it lapses.
    pub offer_response: Duration,
    /// How often the merchant may revise a declined offer in one round (0: never).
    pub max_offer_revisions: u32,
    /// How long the payment system has to pay an approved refund, counted from the approval
    /// or, when the goods come back, from their receipt.
    pub refund_payment: Duration,
    /// The return address used when the merchant names none (absent: the merchant's address
    /// on file with the order service).
    pub return_address: Option<String>,
}

/// The whole policy: a default and the categories that override parts of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    default: CategoryPolicy,
    categories: BTreeMap<String, CategoryPolicy>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy is not valid TOML or has an unknown key: {0}")]
    Syntax(String),
    #[error("policy [{section}] {key}: {message}")]
    Value { section: String, key: &'static str, message: String },
}

impl Policy {
    /// The built-in policy (DOMAIN.md's defaults).
    pub fn builtin() -> Self {
        Self::from_toml(include_str!("default_policy.toml")).expect("the built-in policy parses")
    }

    /// Parses a policy file. Every key of `[default]` is optional and falls back to the
    /// built-in default; a category states only what differs from `[default]`.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        let default = file.default.unwrap_or_default().resolve("default", &builtin_default())?;
        let mut categories = BTreeMap::new();
        for (name, overrides) in file.category {
            let resolved = overrides.resolve(&format!("category.{name}"), &default)?;
            categories.insert(name, resolved);
        }
        Ok(Self { default, categories })
    }

    /// The rules for `category`: its overrides over the default.
    pub fn for_category(&self, category: &str) -> &CategoryPolicy {
        self.categories.get(category).unwrap_or(&self.default)
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self::builtin()
    }
}

/// DOMAIN.md's defaults, the base under `[default]`.
fn builtin_default() -> CategoryPolicy {
    CategoryPolicy {
        request_window: Duration::days(7),
        no_reason_window: Duration::days(7),
        merchant_response: Duration::hours(48),
        on_merchant_timeout: OnMerchantTimeout::AllowEscalation,
        escalation_window: Duration::days(7),
        evidence_window: Duration::hours(72),
        arbitration_sla: Duration::hours(24),
        appeal_window: Duration::days(3),
        return_ship: Duration::days(7),
        return_confirm: Duration::days(10),
        max_rounds: 3,
        max_evidence_per_party: 20,
        no_reason_allowed: true,
        evidence_request: Duration::hours(72),
        max_messages_per_party: 100,
        offer_response: Duration::days(10),
        max_offer_revisions: 2,
        refund_payment: Duration::days(3),
        return_address: None,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    default: Option<Overrides>,
    #[serde(default)]
    category: BTreeMap<String, Overrides>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Overrides {
    request_window: Option<String>,
    no_reason_window: Option<String>,
    merchant_response: Option<String>,
    on_merchant_timeout: Option<OnMerchantTimeout>,
    escalation_window: Option<String>,
    evidence_window: Option<String>,
    arbitration_sla: Option<String>,
    appeal_window: Option<String>,
    return_ship: Option<String>,
    return_confirm: Option<String>,
    max_rounds: Option<u32>,
    max_evidence_per_party: Option<u32>,
    no_reason_allowed: Option<bool>,
    evidence_request: Option<String>,
    max_messages_per_party: Option<u32>,
    offer_response: Option<String>,
    max_offer_revisions: Option<u32>,
    refund_payment: Option<String>,
    return_address: Option<String>,
}

impl Overrides {
    fn resolve(self, section: &str, base: &CategoryPolicy) -> Result<CategoryPolicy, PolicyError> {
        let duration = |key: &'static str, value: Option<String>, base: Duration| match value {
            None => Ok(base),
            Some(text) => parse_duration(&text).map_err(|message| PolicyError::Value {
                section: section.to_string(),
                key,
                message,
            }),
        };
        let positive = |key: &'static str, value: Option<u32>, base: u32| match value {
            Some(0) => Err(PolicyError::Value {
                section: section.to_string(),
                key,
                message: "must be at least 1".to_string(),
            }),
            Some(n) => Ok(n),
            None => Ok(base),
        };
        Ok(CategoryPolicy {
            request_window: duration("request_window", self.request_window, base.request_window)?,
            no_reason_window: duration("no_reason_window", self.no_reason_window, base.no_reason_window)?,
            merchant_response: duration("merchant_response", self.merchant_response, base.merchant_response)?,
            on_merchant_timeout: self.on_merchant_timeout.unwrap_or(base.on_merchant_timeout),
            escalation_window: duration("escalation_window", self.escalation_window, base.escalation_window)?,
            evidence_window: duration("evidence_window", self.evidence_window, base.evidence_window)?,
            arbitration_sla: duration("arbitration_sla", self.arbitration_sla, base.arbitration_sla)?,
            appeal_window: duration("appeal_window", self.appeal_window, base.appeal_window)?,
            return_ship: duration("return_ship", self.return_ship, base.return_ship)?,
            return_confirm: duration("return_confirm", self.return_confirm, base.return_confirm)?,
            max_rounds: positive("max_rounds", self.max_rounds, base.max_rounds)?,
            max_evidence_per_party: positive(
                "max_evidence_per_party",
                self.max_evidence_per_party,
                base.max_evidence_per_party,
            )?,
            no_reason_allowed: self.no_reason_allowed.unwrap_or(base.no_reason_allowed),
            evidence_request: duration("evidence_request", self.evidence_request, base.evidence_request)?,
            max_messages_per_party: positive(
                "max_messages_per_party",
                self.max_messages_per_party,
                base.max_messages_per_party,
            )?,
            offer_response: duration("offer_response", self.offer_response, base.offer_response)?,
            // Zero is allowed here: a category may forbid revisions.
            max_offer_revisions: self.max_offer_revisions.unwrap_or(base.max_offer_revisions),
            refund_payment: duration("refund_payment", self.refund_payment, base.refund_payment)?,
            return_address: match self.return_address {
                Some(address) if address.trim().is_empty() => {
                    return Err(PolicyError::Value {
                        section: section.to_string(),
                        key: "return_address",
                        message: "must not be empty".to_string(),
                    });
                }
                Some(address) => Some(address),
                None => base.return_address.clone(),
            },
        })
    }
}

/// Parses the short duration form: a positive integer and one unit of `s`, `m`, `h`, `d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: i64 =
        digits.parse().map_err(|_| format!("{text:?} is not a duration like \"90s\", \"48h\" or \"7d\""))?;
    if n <= 0 {
        return Err(format!("{text:?} must be longer than zero"));
    }
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("{text:?} has no unit: use s, m, h or d")),
    };
    n.checked_mul(seconds_per_unit)
        .and_then(Duration::try_seconds)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_matches_the_domain_defaults() {
        let policy = Policy::builtin();
        assert_eq!(policy.for_category("books"), &builtin_default());
        assert!(!policy.for_category("fresh").no_reason_allowed);
        assert_eq!(policy.for_category("fresh").on_merchant_timeout, OnMerchantTimeout::AutoAccept);
        assert_eq!(policy.for_category("electronics").request_window, Duration::days(15));
        assert_eq!(policy.for_category("electronics").merchant_response, Duration::hours(48));
        assert_eq!(policy.for_category("fresh").evidence_request, Duration::hours(24));
        assert_eq!(policy.for_category("books").offer_response, Duration::days(10));
        assert_eq!(policy.for_category("fresh").offer_response, Duration::hours(48));
    }

    #[test]
    fn categories_override_the_files_default_not_the_builtin() {
        let policy =
            Policy::from_toml("[default]\nmerchant_response = \"90s\"\n[category.toys]\nmax_rounds = 1\n")
                .unwrap();
        assert_eq!(policy.for_category("toys").merchant_response, Duration::seconds(90));
        assert_eq!(policy.for_category("toys").max_rounds, 1);
        assert_eq!(policy.for_category("other").max_rounds, 3);
    }

    #[test]
    fn bad_policies_are_refused_with_the_key_named() {
        let err = Policy::from_toml("[default]\nrequest_window = \"7 days\"\n").unwrap_err();
        assert!(matches!(err, PolicyError::Value { key: "request_window", .. }), "{err}");
        let err = Policy::from_toml("[default]\nmax_rounds = 0\n").unwrap_err();
        assert!(matches!(err, PolicyError::Value { key: "max_rounds", .. }), "{err}");
        assert!(matches!(
            Policy::from_toml("[default]\nrequest_windw = \"7d\"\n"),
            Err(PolicyError::Syntax(_))
        ));
        assert!(matches!(
            Policy::from_toml("[category.x]\non_merchant_timeout = \"shrug\"\n"),
            Err(PolicyError::Syntax(_))
        ));
    }

    #[test]
    fn durations_take_one_unit() {
        assert_eq!(parse_duration("90s"), Ok(Duration::seconds(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::minutes(15)));
        assert_eq!(parse_duration("48h"), Ok(Duration::hours(48)));
        assert_eq!(parse_duration("7d"), Ok(Duration::days(7)));
        assert!(parse_duration("0d").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("7w").is_err());
        assert!(parse_duration("-7d").is_err());
    }
}
