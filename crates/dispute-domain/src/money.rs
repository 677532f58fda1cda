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

/// "12.00 CNY": the amount in the currency's major unit, for people to read.
impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digits = minor_unit_digits(&self.currency);
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let abs = self.amount_minor.unsigned_abs();
        if digits == 0 {
            return write!(f, "{sign}{abs} {}", self.currency);
        }
        let per_major = 10u64.pow(digits);
        let (major, minor) = (abs / per_major, abs % per_major);
        write!(f, "{sign}{major}.{minor:0width$} {}", self.currency, width = digits as usize)
    }
}

/// How many digits the currency's minor unit has (ISO 4217): two unless listed.
fn minor_unit_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "UYI"
        | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

pub(crate) fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_reads_in_the_currencys_major_unit() {
        assert_eq!(Money::new(1_200, "CNY").to_string(), "12.00 CNY");
        assert_eq!(Money::new(5, "USD").to_string(), "0.05 USD");
        assert_eq!(Money::new(1_200, "JPY").to_string(), "1200 JPY");
        assert_eq!(Money::new(1_234, "KWD").to_string(), "1.234 KWD");
        assert_eq!(Money::new(-150, "EUR").to_string(), "-1.50 EUR");
    }
}
