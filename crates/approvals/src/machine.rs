//! The approval state machine for payment vouchers and purchase orders.
//!
//! ```text
//!  draft ──submit──▶ submitted ──approve(HOD)──▶ hod_approved ──approve(FIN)──▶ ┬─ approved ──mark_paid──▶ paid
//!    ▲                  │  ▲                        │  ▲                        └▶ finance_approved ──approve(MD)──▶ approved
//!    │               query│  │answer            query│  │answer       (amount above the MD threshold of its currency,
//!    │                  │  │                        │  │                              or no threshold for its currency)
//!    │                  ▼  │                        ▼  │
//!    │                 queried (remembers the level it came from and returns there when answered)
//!    │
//!    └──── amend (from any open state: the approvals collected so far are discarded)
//!  reject ──▶ rejected (final)      cancel ──▶ cancelled (final, raiser, before any payment)
//! ```
//!
//! The machine is pure: it says which transitions a state allows and what the next state is.
//! Who may perform a transition is the authorisation engine's business; the machine tells it which
//! approval level ([`Level`]) the document waits for.

use std::fmt;
use std::str::FromStr;

use authz::{Action, Level};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Draft,
    Submitted,
    HodApproved,
    FinanceApproved,
    Queried,
    Approved,
    Paid,
    Rejected,
    Cancelled,
}

impl Status {
    pub const ALL: &'static [Status] = &[
        Self::Draft,
        Self::Submitted,
        Self::HodApproved,
        Self::FinanceApproved,
        Self::Queried,
        Self::Approved,
        Self::Paid,
        Self::Rejected,
        Self::Cancelled,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Submitted => "submitted",
            Self::HodApproved => "hod_approved",
            Self::FinanceApproved => "finance_approved",
            Self::Queried => "queried",
            Self::Approved => "approved",
            Self::Paid => "paid",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
        }
    }

    /// The approval level a document in this state waits for.
    #[must_use]
    pub fn level(self) -> Option<Level> {
        match self {
            Self::Submitted => Some(Level::Hod),
            Self::HodApproved => Some(Level::Finance),
            Self::FinanceApproved => Some(Level::Md),
            _ => None,
        }
    }

    /// Final states accept no transition at all.
    #[must_use]
    pub fn is_final(self) -> bool {
        matches!(self, Self::Paid | Self::Rejected | Self::Cancelled)
    }
}

impl FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.iter().copied().find(|st| st.as_str() == s).ok_or(UnknownStatus)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown document status")]
pub struct UnknownStatus;

/// What can be done to a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    Submit,
    Approve,
    Reject,
    Query,
    Answer,
    Amend,
    Cancel,
    MarkPaid,
}

impl Transition {
    pub const ALL: &'static [Transition] = &[
        Self::Submit,
        Self::Approve,
        Self::Reject,
        Self::Query,
        Self::Answer,
        Self::Amend,
        Self::Cancel,
        Self::MarkPaid,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submit => "submit",
            Self::Approve => "approve",
            Self::Reject => "reject",
            Self::Query => "query",
            Self::Answer => "answer",
            Self::Amend => "amend",
            Self::Cancel => "cancel",
            Self::MarkPaid => "mark_paid",
        }
    }

    /// The authorisation action that guards this transition.
    #[must_use]
    pub fn action(self) -> Action {
        match self {
            Self::Submit => Action::DocumentSubmit,
            Self::Approve => Action::DocumentApprove,
            Self::Reject => Action::DocumentReject,
            Self::Query => Action::DocumentQuery,
            Self::Answer => Action::DocumentAnswer,
            Self::Amend => Action::DocumentAmend,
            Self::Cancel => Action::DocumentCancel,
            Self::MarkPaid => Action::DocumentMarkPaid,
        }
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The part of a document the machine reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub status: Status,
    /// For `queried`: the state to return to when the raiser answers.
    pub queried_from: Option<Status>,
    pub amount_minor: i64,
}

/// The machine's answer: the next status, where a query will return, and whether the approvals
/// recorded so far are discarded (an amendment) or one is added (an approval).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub from: Status,
    pub to: Status,
    pub queried_from: Option<Status>,
    pub records_approval: Option<Level>,
    pub resets_approvals: bool,
}

/// A transition the current state does not allow; carries the ones it does (for a 409 body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {transition} a document that is {from}")]
pub struct NotAllowed {
    pub from: Status,
    pub transition: Transition,
    pub allowed: Vec<Transition>,
}

/// The transitions `status` allows, in a stable order.
#[must_use]
pub fn allowed(status: Status) -> Vec<Transition> {
    use Transition::*;
    match status {
        Status::Draft => vec![Submit, Amend, Cancel],
        Status::Submitted | Status::HodApproved | Status::FinanceApproved => {
            vec![Approve, Reject, Query, Amend, Cancel]
        }
        Status::Queried => vec![Answer, Amend, Cancel],
        Status::Approved => vec![MarkPaid],
        Status::Paid | Status::Rejected | Status::Cancelled => Vec::new(),
    }
}

/// Computes the step `t` takes from `s`. `md_threshold_minor` is the threshold in the
/// document's currency: amounts strictly above it need the managing director after finance.
/// `None` (no threshold for that currency) always needs the MD: a missing setting never skips
/// a level.
///
/// # Errors
/// [`NotAllowed`] when `s.status` does not allow `t`.
pub fn step(s: &State, t: Transition, md_threshold_minor: Option<i64>) -> Result<Step, NotAllowed> {
    let refuse = || NotAllowed { from: s.status, transition: t, allowed: allowed(s.status) };
    if !allowed(s.status).contains(&t) {
        return Err(refuse());
    }
    let plain = |to| Step { from: s.status, to, queried_from: None, records_approval: None, resets_approvals: false };
    let over_threshold = md_threshold_minor.is_none_or(|limit| s.amount_minor > limit);
    Ok(match (s.status, t) {
        (Status::Draft, Transition::Submit) => plain(Status::Submitted),
        (from, Transition::Approve) => {
            let to = match from {
                Status::Submitted => Status::HodApproved,
                Status::HodApproved if over_threshold => Status::FinanceApproved,
                Status::HodApproved | Status::FinanceApproved => Status::Approved,
                _ => return Err(refuse()),
            };
            Step { records_approval: from.level(), ..plain(to) }
        }
        (_, Transition::Reject) => plain(Status::Rejected),
        (from, Transition::Query) => Step { queried_from: Some(from), ..plain(Status::Queried) },
        (Status::Queried, Transition::Answer) => plain(s.queried_from.ok_or_else(refuse)?),
        (_, Transition::Amend) => Step { resets_approvals: true, ..plain(Status::Draft) },
        (_, Transition::Cancel) => plain(Status::Cancelled),
        (Status::Approved, Transition::MarkPaid) => plain(Status::Paid),
        _ => return Err(refuse()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn st(status: Status, amount: i64) -> State {
        State { status, queried_from: None, amount_minor: amount }
    }

    fn run(mut s: State, path: &[Transition], threshold: Option<i64>) -> Result<State, NotAllowed> {
        for t in path {
            let step = step(&s, *t, threshold)?;
            s = State { status: step.to, queried_from: step.queried_from, amount_minor: s.amount_minor };
        }
        Ok(s)
    }

    #[test]
    fn happy_paths_below_and_above_the_md_threshold() {
        use Transition::*;
        let below = run(st(Status::Draft, 10_000), &[Submit, Approve, Approve, MarkPaid], Some(100_000));
        assert_eq!(below.map(|s| s.status), Ok(Status::Paid));
        // Above the threshold the machine escalates: finance's approval leads to the MD.
        let s = run(st(Status::Draft, 500_000), &[Submit, Approve, Approve], Some(100_000)).expect("to MD");
        assert_eq!((s.status, s.status.level()), (Status::FinanceApproved, Some(Level::Md)));
        assert_eq!(run(s, &[Approve, MarkPaid], Some(100_000)).map(|s| s.status), Ok(Status::Paid));
        // Exactly at the threshold does not escalate.
        let at = run(st(Status::Draft, 100_000), &[Submit, Approve, Approve], Some(100_000));
        assert_eq!(at.map(|s| s.status), Ok(Status::Approved));
    }

    #[test]
    fn a_currency_without_a_threshold_goes_to_the_md() {
        use Transition::*;
        // Fail safe: no threshold for the document's currency means the MD decides, even for
        // one cent (the old reading, "no threshold: no MD", let a missing setting skip a level).
        let none = run(st(Status::Draft, 1), &[Submit, Approve, Approve], None).expect("to MD");
        assert_eq!((none.status, none.status.level()), (Status::FinanceApproved, Some(Level::Md)));
    }

    #[test]
    fn approvals_record_the_level_they_decide() {
        let s = st(Status::Submitted, 1);
        assert_eq!(step(&s, Transition::Approve, None).map(|x| x.records_approval), Ok(Some(Level::Hod)));
        let s = st(Status::HodApproved, 1);
        assert_eq!(step(&s, Transition::Approve, None).map(|x| x.records_approval), Ok(Some(Level::Finance)));
        let s = st(Status::FinanceApproved, 1);
        assert_eq!(step(&s, Transition::Approve, None).map(|x| x.records_approval), Ok(Some(Level::Md)));
    }

    #[test]
    fn a_query_returns_to_the_level_that_asked() {
        use Transition::*;
        let s = run(st(Status::Draft, 10), &[Submit, Approve, Query], None).expect("queried");
        assert_eq!((s.status, s.queried_from), (Status::Queried, Some(Status::HodApproved)));
        assert_eq!(run(s, &[Answer], None).map(|s| s.status), Ok(Status::HodApproved));
        // A queried state that lost its origin (a damaged row) refuses to guess.
        let orphan = st(Status::Queried, 10);
        assert!(step(&orphan, Answer, None).is_err());
    }

    #[test]
    fn amendments_reset_approvals_and_final_states_are_final() {
        let s = st(Status::FinanceApproved, 10);
        let a = step(&s, Transition::Amend, None).expect("amend");
        assert_eq!((a.to, a.resets_approvals), (Status::Draft, true));
        for f in [Status::Paid, Status::Rejected, Status::Cancelled] {
            assert!(f.is_final());
            for t in Transition::ALL {
                let e = step(&st(f, 1), *t, None).expect_err("final");
                assert!(e.allowed.is_empty());
            }
        }
        // Approved documents can only be paid: no cancelling money already approved out.
        let e = step(&st(Status::Approved, 1), Transition::Cancel, None).expect_err("cancel approved");
        assert_eq!(e.allowed, [Transition::MarkPaid]);
        assert_eq!(e.to_string(), "cannot cancel a document that is approved");
    }

    #[test]
    fn statuses_round_trip() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>(), Ok(*s));
        }
        assert!("Draft".parse::<Status>().is_err());
    }

    proptest! {
        /// Whatever sequence of requests arrives, the machine only ever moves along allowed
        /// edges, refuses everything else with the list of what is allowed, and never reaches
        /// `paid` without the approvals its amount needs since the last amendment.
        #[test]
        fn any_request_sequence_respects_the_graph(
            path in proptest::collection::vec(0usize..8, 0..40),
            amount in 0i64..10_000,
            threshold in proptest::option::of(0i64..10_000),
        ) {
            let mut s = st(Status::Draft, amount);
            let mut levels: Vec<Level> = Vec::new();
            for i in path {
                let t = Transition::ALL[i];
                match step(&s, t, threshold) {
                    Ok(x) => {
                        prop_assert!(allowed(s.status).contains(&t));
                        if x.resets_approvals { levels.clear(); }
                        if let Some(l) = x.records_approval { levels.push(l); }
                        if x.to == Status::Paid {
                            let needs_md = threshold.is_none_or(|l| amount > l);
                            prop_assert!(levels.contains(&Level::Hod) && levels.contains(&Level::Finance));
                            prop_assert_eq!(levels.contains(&Level::Md), needs_md);
                        }
                        s = State { status: x.to, queried_from: x.queried_from, amount_minor: amount };
                    }
                    Err(e) => {
                        prop_assert!(!allowed(s.status).contains(&t) || s.status == Status::Queried);
                        prop_assert_eq!(e.allowed, allowed(s.status));
                    }
                }
            }
        }
    }
}
