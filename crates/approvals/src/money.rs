//! Money as integer minor units of an ISO 4217 currency: no floats anywhere near an amount.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Active ISO 4217 codes usable for payments, with their minor-unit exponent (precious metals,
/// test and fund codes other than the ones banks settle in are left out).
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHF", 2),
    ("CLF", 4),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("UYU", 2),
    ("UZS", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XCG", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

/// The largest amount one document may carry, in minor units: 10^15 (ten trillion major units
/// of a two-decimal currency) keeps sums of many lines far from `i64` overflow.
pub const MAX_MINOR: i64 = 1_000_000_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("currency: expected an ISO 4217 code such as EUR or USD")]
    UnknownCurrency,
    #[error("amount: must be a whole number of minor units between 0 and {MAX_MINOR}")]
    OutOfRange,
    #[error("amount: all amounts of one document must share its currency")]
    MixedCurrencies,
}

/// An ISO 4217 currency code from the list above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    #[must_use]
    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// Digits after the decimal point (JPY 0, EUR 2, KWD 3).
    #[must_use]
    pub fn exponent(&self) -> u8 {
        CURRENCIES.iter().find(|(c, _)| c.as_bytes() == self.0).map_or(2, |(_, e)| *e)
    }
}

impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == s)
            .and_then(|(c, _)| c.as_bytes().try_into().ok())
            .map(Currency)
            .ok_or(MoneyError::UnknownCurrency)
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> Self {
        c.code().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A non-negative amount in minor units of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    /// # Errors
    /// [`MoneyError::OutOfRange`] for negative amounts or more than [`MAX_MINOR`].
    pub fn new(minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        if (0..=MAX_MINOR).contains(&minor) { Ok(Self { minor, currency }) } else { Err(MoneyError::OutOfRange) }
    }

    /// Sums amounts of one currency, refusing overflow past [`MAX_MINOR`] and mixed currencies.
    ///
    /// # Errors
    /// See [`MoneyError`].
    pub fn sum(currency: Currency, items: impl IntoIterator<Item = Money>) -> Result<Self, MoneyError> {
        let mut total: i64 = 0;
        for m in items {
            if m.currency != currency {
                return Err(MoneyError::MixedCurrencies);
            }
            total = total.checked_add(m.minor).ok_or(MoneyError::OutOfRange)?;
        }
        Self::new(total, currency)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = u32::from(self.currency.exponent());
        if e == 0 {
            return write!(f, "{} {}", self.minor, self.currency);
        }
        let unit = 10i64.pow(e);
        write!(f, "{}.{:0width$} {}", self.minor / unit, self.minor % unit, self.currency, width = e as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_are_iso_codes_with_their_exponents() {
        let eur: Currency = "EUR".parse().expect("EUR");
        assert_eq!((eur.code(), eur.exponent()), ("EUR", 2));
        assert_eq!("JPY".parse::<Currency>().map(|c| c.exponent()), Ok(0));
        assert_eq!("KWD".parse::<Currency>().map(|c| c.exponent()), Ok(3));
        for bad in ["", "eur", "EURO", "XXX", "E", "€", "US$"] {
            assert_eq!(bad.parse::<Currency>(), Err(MoneyError::UnknownCurrency), "{bad}");
        }
        assert!(serde_json::from_str::<Currency>("\"ABC\"").is_err());
        assert_eq!(serde_json::to_string(&eur).ok().as_deref(), Some("\"EUR\""));
        // The table has no duplicates and only upper-case three-letter codes.
        let mut codes: Vec<&str> = CURRENCIES.iter().map(|(c, _)| *c).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), CURRENCIES.len());
        assert!(codes.iter().all(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())));
    }

    #[test]
    fn amounts_are_bounded_and_sums_do_not_overflow_or_mix() {
        let eur: Currency = "EUR".parse().expect("EUR");
        let usd: Currency = "USD".parse().expect("USD");
        assert_eq!(Money::new(-1, eur), Err(MoneyError::OutOfRange));
        assert_eq!(Money::new(MAX_MINOR + 1, eur), Err(MoneyError::OutOfRange));
        let big = Money::new(MAX_MINOR, eur).expect("max");
        assert_eq!(Money::sum(eur, [big, big]), Err(MoneyError::OutOfRange));
        assert_eq!(Money::sum(eur, [Money { minor: i64::MAX, currency: eur }, big]), Err(MoneyError::OutOfRange));
        let a = Money::new(1050, eur).expect("a");
        assert_eq!(Money::sum(eur, [a, Money::new(1, usd).expect("b")]), Err(MoneyError::MixedCurrencies));
        assert_eq!(Money::sum(eur, [a, a]).map(|m| m.minor), Ok(2100));
        assert_eq!(a.to_string(), "10.50 EUR");
        assert_eq!(Money::new(1234, "JPY".parse().expect("JPY")).expect("yen").to_string(), "1234 JPY");
        assert_eq!(Money::new(5, "KWD".parse().expect("KWD")).expect("kwd").to_string(), "0.005 KWD");
    }
}
