//! The refund policy: windows, deadlines and limits, with per-category overrides.
//!
//! Parsed from TOML (the shape is in API.md and in `default_policy.toml`, which is the built-in
//! policy). Reading the file is the caller's business; this module only parses text.
//!
//! A policy file layers over the built-in policy: a key it does not state keeps the built-in
//! value, in `[default]` and in each category. Category names are matched after
//! [`normalise_category`], here and only here.

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
    #[error("policy [category.{first}] and [category.{second}] name the same category")]
    DuplicateCategory { first: String, second: String },
    #[error("policy is not valid TOML or has an unknown key: {0}")]
    Syntax(String),
    #[error("policy [{section}] {key}: {message}")]
    Value { section: String, key: &'static str, message: String },
}

impl Policy {
    /// The built-in policy (DOMAIN.md's defaults).
    pub fn builtin() -> Self {
        Self::resolve(builtin_file()).expect("the built-in policy resolves")
    }

    /// Parses a policy file and layers it over the built-in policy. Every key is optional: a
    /// key of `[default]` it does not state keeps the built-in default, a category it does not
    /// state (or a key of one it does) keeps the built-in category's value, and a category
    /// states only what differs from `[default]`. So a file that sets `[default]` alone keeps
    /// the built-in exceptions (fresh, virtual, custom-made); to lift one, restate its key.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let file = parse_file(text)?;
        Self::resolve(builtin_file().layer(file))
    }

    fn resolve(file: PolicyFile) -> Result<Self, PolicyError> {
        let default = file.default.unwrap_or_default().resolve("default", &builtin_default())?;
        let mut categories = BTreeMap::new();
        for (name, overrides) in file.category {
            let resolved = overrides.resolve(&format!("category.{name}"), &default)?;
            categories.insert(name, resolved);
        }
        Ok(Self { default, categories })
    }

    /// The rules for `category`: its overrides over the default. A category the policy does not
    /// name gets the default rules (the policy lists the exceptions, not every category).
    pub fn for_category(&self, category: &str) -> &CategoryPolicy {
        self.categories.get(&normalise_category(category)).unwrap_or(&self.default)
    }

    /// Whether the policy names `category` (after normalising), rather than giving it the
    /// default rules.
    pub fn knows(&self, category: &str) -> bool {
        self.categories.contains_key(&normalise_category(category))
    }

    /// Pairs of the policy's categories whose names differ by one or two letters, such as
    /// `fresh` and `frseh`: likely a typo that leaves the intended category with the default
    /// rules. Worth a warning when the policy is loaded.
    pub fn lookalike_categories(&self) -> Vec<(&str, &str)> {
        let names: Vec<&str> = self.categories.keys().map(String::as_str).collect();
        let mut pairs = Vec::new();
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                if edit_distance(a, b) <= 2 {
                    pairs.push((*a, *b));
                }
            }
        }
        pairs
    }
}

/// How category names are compared: without surrounding space, case-insensitively, with `-`
/// and spaces as `_` (`Custom-Made` is `custom_made`).
pub fn normalise_category(name: &str) -> String {
    name.trim().chars().map(|c| if c == '-' || c == ' ' { '_' } else { c }).collect::<String>().to_lowercase()
}

/// Levenshtein distance over characters; category names are short.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

fn builtin_file() -> PolicyFile {
    parse_file(include_str!("default_policy.toml")).expect("the built-in policy parses")
}

/// Parses a file's text, its category names normalised (two names for one category are refused).
fn parse_file(text: &str) -> Result<PolicyFile, PolicyError> {
    let raw: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
    let mut category: BTreeMap<String, Overrides> = BTreeMap::new();
    let mut spelled: BTreeMap<String, String> = BTreeMap::new();
    for (name, overrides) in raw.category {
        let key = normalise_category(&name);
        if let Some(first) = spelled.insert(key.clone(), name.clone()) {
            return Err(PolicyError::DuplicateCategory { first, second: name });
        }
        category.insert(key, overrides);
    }
    Ok(PolicyFile { default: raw.default, category })
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

impl PolicyFile {
    /// `top` over `self`: each key `top` states wins, every other keeps `self`'s value.
    fn layer(mut self, top: PolicyFile) -> PolicyFile {
        self.default = match (self.default, top.default) {
            (Some(base), Some(top)) => Some(top.over(base)),
            (base, top) => top.or(base),
        };
        for (name, overrides) in top.category {
            let merged = match self.category.remove(&name) {
                Some(base) => overrides.over(base),
                None => overrides,
            };
            self.category.insert(name, merged);
        }
        self
    }
}

impl Overrides {
    /// These keys over `base`'s.
    fn over(self, base: Overrides) -> Overrides {
        Overrides {
            request_window: self.request_window.or(base.request_window),
            no_reason_window: self.no_reason_window.or(base.no_reason_window),
            merchant_response: self.merchant_response.or(base.merchant_response),
            on_merchant_timeout: self.on_merchant_timeout.or(base.on_merchant_timeout),
            escalation_window: self.escalation_window.or(base.escalation_window),
            evidence_window: self.evidence_window.or(base.evidence_window),
            arbitration_sla: self.arbitration_sla.or(base.arbitration_sla),
            appeal_window: self.appeal_window.or(base.appeal_window),
            return_ship: self.return_ship.or(base.return_ship),
            return_confirm: self.return_confirm.or(base.return_confirm),
            max_rounds: self.max_rounds.or(base.max_rounds),
            max_evidence_per_party: self.max_evidence_per_party.or(base.max_evidence_per_party),
            no_reason_allowed: self.no_reason_allowed.or(base.no_reason_allowed),
            evidence_request: self.evidence_request.or(base.evidence_request),
            max_messages_per_party: self.max_messages_per_party.or(base.max_messages_per_party),
            offer_response: self.offer_response.or(base.offer_response),
            max_offer_revisions: self.max_offer_revisions.or(base.max_offer_revisions),
            refund_payment: self.refund_payment.or(base.refund_payment),
            return_address: self.return_address.or(base.return_address),
        }
    }

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
    fn a_file_layers_over_the_builtin_policy() {
        let policy = Policy::from_toml(
            "[default]\nmerchant_response = \"24h\"\n[category.fresh]\nrequest_window = \"3d\"\n",
        )
        .unwrap();
        let fresh = policy.for_category("fresh");
        assert_eq!(fresh.request_window, Duration::days(3));
        assert!(!fresh.no_reason_allowed, "a key the file does not restate keeps the built-in value");
        assert_eq!(fresh.on_merchant_timeout, OnMerchantTimeout::AutoAccept);
        assert_eq!(fresh.merchant_response, Duration::hours(24), "the file's default under the category");
        assert!(!policy.for_category("virtual").no_reason_allowed);
        assert_eq!(policy.for_category("electronics").request_window, Duration::days(15));
        // To lift an exception, restate its key.
        let policy = Policy::from_toml("[category.virtual]\nno_reason_allowed = true\n").unwrap();
        assert!(policy.for_category("virtual").no_reason_allowed);
        // An empty file is the built-in policy.
        assert_eq!(Policy::from_toml("").unwrap(), Policy::builtin());
    }

    #[test]
    fn categories_are_matched_without_regard_to_case_space_or_hyphens() {
        let policy = Policy::builtin();
        for name in ["Fresh", "FRESH", " fresh ", "Custom-Made", "custom made", "VIRTUAL"] {
            assert!(!policy.for_category(name).no_reason_allowed, "{name}");
            assert!(policy.knows(name), "{name}");
        }
        assert!(!policy.knows("books"));
        let policy = Policy::from_toml("[category.Toys]\nmax_rounds = 1\n").unwrap();
        assert_eq!(policy.for_category("toys").max_rounds, 1);
        assert_eq!(normalise_category(" Custom-Made "), "custom_made");
    }

    #[test]
    fn two_spellings_of_one_category_are_refused() {
        let err = Policy::from_toml("[category.Toys]\nmax_rounds = 1\n[category.toys]\nmax_rounds = 2\n")
            .unwrap_err();
        assert!(matches!(err, PolicyError::DuplicateCategory { .. }), "{err}");
    }

    #[test]
    fn lookalike_category_names_are_reported() {
        let policy = Policy::from_toml(
            "[category.frseh]\nno_reason_allowed = false\n[category.toys]\nmax_rounds = 1\n",
        )
        .unwrap();
        assert_eq!(policy.lookalike_categories(), vec![("fresh", "frseh")]);
        assert!(Policy::builtin().lookalike_categories().is_empty());
        assert_eq!(edit_distance("custom_made", "custommade"), 1);
        assert_eq!(edit_distance("toys", "books"), 3);
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
