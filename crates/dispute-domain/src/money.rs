//! Money: integer minor units with an ISO 4217 currency code. Never floating point.

use serde::{Deserialize, Serialize};

use crate::DisputeError;

/// An amount in the currency's minor units (cents, fen) and its ISO 4217 code.
//
// Construction is not validated so that a refused request can still be described; the rules
// call [`Money::check_positive`] and [`Money::check_currency`] before trusting an amount.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: String,
}

impl Money {
    pub fn new(amount_minor: i64, currency: impl Into<String>) -> Self {
        Self { amount_minor, currency: currency.into() }
    }

    pub fn zero(currency: impl Into<String>) -> Self {
        Self::new(0, currency)
    }

    /// A well-formed, strictly positive amount: three upper-case ASCII letters and > 0.
    pub fn check_positive(&self) -> Result<(), DisputeError> {
        if !is_currency_code(&self.currency) {
            return Err(DisputeError::InvalidCurrency);
        }
        if self.amount_minor <= 0 {
            return Err(DisputeError::InvalidAmount);
        }
        Ok(())
    }

    /// A positive amount in `currency`.
    pub fn check_currency(&self, currency: &str) -> Result<(), DisputeError> {
        self.check_positive()?;
        if self.currency != currency {
            return Err(DisputeError::CurrencyMismatch);
        }
        Ok(())
    }

    /// `self - other` in the same currency; callers have checked the currency.
    pub fn minus(&self, other: &Money) -> Money {
        Money::new(self.amount_minor - other.amount_minor, self.currency.clone())
    }

    pub fn plus(&self, other: &Money) -> Money {
        Money::new(self.amount_minor + other.amount_minor, self.currency.clone())
    }
}

pub(crate) fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}
