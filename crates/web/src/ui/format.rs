//! How the pages say things: amounts, statuses, kinds, roles, dates — in words, never a code
//! alone.

use approvals::documents::Kind;
use approvals::{Currency, Status, Transition};
use chrono::{DateTime, NaiveDate, Utc};
use identity::Role;

/// `1234567` minor units of EUR → `12,345.67` (the code is shown beside it, not in it).
#[must_use]
pub(crate) fn amount(minor: i64, currency: &str) -> String {
    let exponent = currency.parse::<Currency>().map_or(2, |c| u32::from(c.exponent()));
    let unit = 10i64.pow(exponent);
    let (major, rest) = (minor.unsigned_abs() / unit.unsigned_abs(), minor.unsigned_abs() % unit.unsigned_abs());
    let digits = major.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if minor < 0 { "-" } else { "" };
    if exponent == 0 {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{rest:0width$}", width = exponent as usize)
    }
}

/// A typed amount (`1,234.50`, `1234.5`, `12`) in minor units of `currency`; `None` when it is
/// not a plain non-negative number with at most the currency's decimals.
#[must_use]
pub(crate) fn parse_amount(text: &str, currency: Option<Currency>) -> Option<i64> {
    let exponent = currency.map_or(2, |c| usize::from(c.exponent()));
    let t: String = text.trim().chars().filter(|c| *c != ',' && *c != ' ').collect();
    let (major, minor) = t.split_once('.').unwrap_or((&t, ""));
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if !digits(major) || (!minor.is_empty() && !digits(minor)) || minor.len() > exponent || major.len() > 16 {
        return None;
    }
    let scale = 10i64.checked_pow(u32::try_from(exponent).ok()?)?;
    let major: i64 = major.parse().ok()?;
    let minor_value: i64 = if minor.is_empty() { 0 } else { format!("{minor:0<exponent$}").parse().ok()? };
    major.checked_mul(scale)?.checked_add(minor_value)
}

/// What a status means to the person reading it.
#[must_use]
pub(crate) fn status(s: Status) -> &'static str {
    match s {
        Status::Draft => "Draft",
        Status::Submitted => "Waiting for head of department",
        Status::HodApproved => "Waiting for finance",
        Status::FinanceApproved => "Waiting for MD",
        Status::Queried => "Queried",
        Status::Approved => "Approved, to pay",
        Status::Paid => "Paid",
        Status::Rejected => "Rejected",
        Status::Cancelled => "Cancelled",
    }
}

/// The chip's style: the colour family (the text says the status too).
#[must_use]
pub(crate) fn status_tone(s: Status) -> &'static str {
    match s {
        Status::Draft | Status::Cancelled => "neutral",
        Status::Submitted | Status::HodApproved | Status::FinanceApproved => "waiting",
        Status::Queried => "attention",
        Status::Approved | Status::Paid => "done",
        Status::Rejected => "refused",
    }
}

#[must_use]
pub(crate) fn kind(k: Kind) -> &'static str {
    match k {
        Kind::Voucher => "Payment voucher",
        Kind::PurchaseOrder => "Purchase order",
    }
}

#[must_use]
pub(crate) fn role(r: Role) -> &'static str {
    match r {
        Role::Owner => "Owner",
        Role::Admin => "Administrator",
        Role::Staff => "Staff",
        Role::Hod => "Head of department",
        Role::Finance => "Finance",
        Role::Md => "Managing director",
        Role::Auditor => "Auditor",
        Role::Vendor => "Vendor",
        Role::Client => "Client",
        Role::Partner => "Partner",
        Role::Agent => "Agent",
        Role::ChannelManager => "Channel manager",
        Role::PartnerAdmin => "Partner administrator",
        Role::PartnerAgent => "Partner agent",
    }
}

/// A stored role name in words (unknown names shown as they are).
#[must_use]
pub(crate) fn role_name(r: &str) -> String {
    r.parse::<Role>().map_or_else(|_| r.to_owned(), |r| role(r).to_owned())
}

/// The verb of a transition's button.
#[must_use]
pub(crate) fn verb(t: Transition) -> &'static str {
    match t {
        Transition::Submit => "Submit for approval",
        Transition::Approve => "Approve",
        Transition::Reject => "Reject",
        Transition::Query => "Ask the raiser a question",
        Transition::Answer => "Answer the query",
        Transition::Amend => "Amend (back to draft)",
        Transition::Cancel => "Cancel the document",
        Transition::MarkPaid => "Mark as paid",
    }
}

/// `2026-03-31` → `31 Mar 2026`.
#[must_use]
pub(crate) fn date(d: NaiveDate) -> String {
    d.format("%-d %b %Y").to_string()
}

/// A moment, to the minute, in UTC (`31 Mar 2026, 14:05 UTC`).
#[must_use]
pub(crate) fn moment(t: DateTime<Utc>) -> String {
    t.format("%-d %b %Y, %H:%M UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_group_thousands_and_keep_the_currency_decimals() {
        assert_eq!(amount(123_456_789, "EUR"), "1,234,567.89");
        assert_eq!(amount(5, "EUR"), "0.05");
        assert_eq!(amount(1_000, "JPY"), "1,000");
        assert_eq!(amount(5, "KWD"), "0.005");
        assert_eq!(amount(100_000, "XXX"), "1,000.00");
    }

    #[test]
    fn typed_amounts_parse_to_minor_units_or_not_at_all() {
        let eur = "EUR".parse().ok();
        assert_eq!(parse_amount("1,234.5", eur), Some(123_450));
        assert_eq!(parse_amount(" 12 ", eur), Some(1_200));
        assert_eq!(parse_amount("0.05", eur), Some(5));
        assert_eq!(parse_amount("1000", "JPY".parse().ok()), Some(1000));
        for bad in ["", "-1", "1.234", "1e3", "abc", "1.2.3", ".5", "99999999999999999"] {
            assert_eq!(parse_amount(bad, eur), None, "{bad:?}");
        }
        assert_eq!(parse_amount("1.5", "JPY".parse().ok()), None);
    }
}
