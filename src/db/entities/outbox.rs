//! One message (or control-group entry) per customer per run, and its delivery state.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub run_id: i64,
    pub customer_id: i64,
    pub state: String,
    pub variant: Option<String>,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTimeUtc>,
    pub lease_until: Option<DateTimeUtc>,
    pub message_id: Option<String>,
    pub sent_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub server_reply: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// Not sent before this moment: the campaign's send window was closed
    /// at the fire time (migration 000014). NULL: at once.
    pub not_before: Option<DateTimeUtc>,
    /// Never sent from this moment on: the row turns `expired`. NULL: no expiry.
    pub expires_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Where an outbox row stands; `outbox.state` holds [`State::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Waiting to be sent.
    Planned,
    /// In the control group: never sent.
    Control,
    /// Claimed by a sender until its lease runs out.
    Sending,
    /// Refused for now; sent again at `next_attempt_at`.
    Retrying,
    Sent,
    /// Refused for good, or out of attempts.
    Failed,
    /// Not sent: the address is suppressed, consent withdrawn, the customer gone.
    Suppressed,
    /// Handed over, but the server's reply was lost: perhaps delivered.
    Unknown,
    /// Not sent by its `expires_at`: never sent.
    Expired,
    /// Waits for its campaign's A/B winner (`[winner]`): not sent before the
    /// test is judged, then `planned` with the winning variant.
    Held,
}

impl State {
    pub const ALL: [State; 10] = [
        State::Planned,
        State::Control,
        State::Sending,
        State::Retrying,
        State::Sent,
        State::Failed,
        State::Suppressed,
        State::Unknown,
        State::Expired,
        State::Held,
    ];

    /// The states a message is still on its way in (a held one too: it goes
    /// out once its campaign's A/B test is judged).
    pub const PENDING: [State; 4] = [State::Planned, State::Retrying, State::Sending, State::Held];

    pub const fn as_str(self) -> &'static str {
        match self {
            State::Planned => "planned",
            State::Control => "control",
            State::Sending => "sending",
            State::Retrying => "retrying",
            State::Sent => "sent",
            State::Failed => "failed",
            State::Suppressed => "suppressed",
            State::Unknown => "unknown",
            State::Expired => "expired",
            State::Held => "held",
        }
    }

    pub fn parse(text: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl From<State> for sea_orm::Value {
    fn from(state: State) -> Self {
        state.as_str().into()
    }
}

#[cfg(test)]
mod tests {
    use super::State;

    #[test]
    fn every_state_reads_back_from_its_name() {
        for state in State::ALL {
            assert_eq!(State::parse(state.as_str()), Some(state));
        }
        assert_eq!(State::parse("delivered"), None);
    }
}
