//! Who may be mailed about what, and the proof of it.
//!
//! Consent has two levels: `customers.marketing_consent` (marketing as a
//! whole) and, under it, the subscription topics a customer left
//! (`topic_opt_outs`). Suppressions (unsubscribed from everything, bounced,
//! complained) belong to the address and stop all mail. Every change of any
//! of them is appended to `consent_events` with its source and basis: what a
//! data-protection officer shows when asked since when and on what basis.

pub mod page;
pub mod suppressions;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func, OnConflict, Query, Value};
use sea_orm::{ConnectionTrait, DbErr};

pub use suppressions::Reason;

/// Rows per multi-row INSERT of events: 8 values each.
const EVENTS_PER_STATEMENT: usize = 500;

/// Where a change of consent came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Import,
    PreferencePage,
    OneClick,
    /// A mailed unsubscribe request (List-Unsubscribe mailto).
    Mailto,
    /// A provider's webhook reporting an unsubscribe.
    Webhook,
    Bounce,
    Complaint,
    /// An operator's command (`patron suppressions add`, ...).
    Command,
    Erasure,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Import => "import",
            Source::PreferencePage => "preference_page",
            Source::OneClick => "one_click",
            Source::Mailto => "mailto",
            Source::Webhook => "webhook",
            Source::Bounce => "bounce",
            Source::Complaint => "complaint",
            Source::Command => "command",
            Source::Erasure => "erasure",
        }
    }
}

/// A state of consent, for marketing as a whole or for one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Subscribed,
    Unsubscribed,
    /// The address is on the suppression list: no mail at all.
    Suppressed,
    /// The person was erased; nothing about them is kept.
    Erased,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Subscribed => "subscribed",
            State::Unsubscribed => "unsubscribed",
            State::Suppressed => "suppressed",
            State::Erased => "erased",
        }
    }

    fn of_consent(consent: bool) -> State {
        if consent { State::Subscribed } else { State::Unsubscribed }
    }
}

/// Where a change came from and on what basis (a file and line, a page and
/// the request's address when `subscriptions.record_ip` is on, a command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub source: Source,
    pub basis: Option<String>,
}

impl Origin {
    pub fn new(source: Source, basis: impl Into<Option<String>>) -> Self {
        Origin { source, basis: basis.into() }
    }
}

/// One change of consent. `topic` `None`: marketing as a whole, or the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub customer_id: Option<i64>,
    pub topic: Option<String>,
    pub old: Option<State>,
    pub new: State,
}

/// Appends `changes` to `consent_events`, all from `origin` at `at`.
pub async fn append<C: ConnectionTrait>(
    db: &C,
    changes: &[Change],
    origin: &Origin,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let rows: Vec<(Change, Origin)> = changes.iter().map(|c| (c.clone(), origin.clone())).collect();
    append_each(db, &rows, at).await
}

/// Appends changes that each carry their own origin (an import's lines),
/// a few hundred to a statement.
pub async fn append_each<C: ConnectionTrait>(
    db: &C,
    changes: &[(Change, Origin)],
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    for chunk in changes.chunks(EVENTS_PER_STATEMENT) {
        let mut insert = Query::insert();
        insert.into_table("consent_events").columns(EVENT_COLUMNS.iter().copied());
        for (change, origin) in chunk {
            insert.values_panic(event_values(change, origin, at).map(Expr::val));
        }
        db.execute(&insert).await?;
    }
    Ok(())
}

/// The columns of `consent_events` an event fills, in the order of [`event_values`].
pub const EVENT_COLUMNS: &[&str] =
    &["occurred_at", "customer_id", "topic", "old_state", "new_state", "source", "basis"];

/// The values of one event, in the order of [`EVENT_COLUMNS`].
pub fn event_values(change: &Change, origin: &Origin, at: DateTime<Utc>) -> [Value; 7] {
    [
        at.into(),
        change.customer_id.into(),
        change.topic.clone().into(),
        change.old.map(State::as_str).into(),
        change.new.as_str().into(),
        origin.source.as_str().into(),
        origin.basis.clone().into(),
    ]
}

/// The customer leaves `topic`; false when they had already left it.
pub async fn leave_topic<C: ConnectionTrait>(
    db: &C,
    customer_id: i64,
    topic: &str,
    origin: &Origin,
) -> Result<bool, DbErr> {
    let now = Utc::now();
    let insert = Query::insert()
        .into_table("topic_opt_outs")
        .columns(["customer_id", "topic", "created_at"])
        .values_panic([customer_id.into(), topic.into(), now.into()])
        .on_conflict(OnConflict::columns(["customer_id", "topic"]).do_nothing().to_owned())
        .to_owned();
    let left = db.execute(&insert).await?.rows_affected() > 0;
    if left {
        let change = Change {
            customer_id: Some(customer_id),
            topic: Some(topic.to_owned()),
            old: Some(State::Subscribed),
            new: State::Unsubscribed,
        };
        append(db, &[change], origin, now).await?;
    }
    Ok(left)
}

/// The customer joins `topic` again; false when they had not left it.
async fn join_topic<C: ConnectionTrait>(db: &C, customer_id: i64, topic: &str, origin: &Origin) -> Result<bool, DbErr> {
    let delete = Query::delete()
        .from_table("topic_opt_outs")
        .and_where(Expr::col("customer_id").eq(customer_id))
        .and_where(Expr::col("topic").eq(topic))
        .to_owned();
    let joined = db.execute(&delete).await?.rows_affected() > 0;
    if joined {
        let change = Change {
            customer_id: Some(customer_id),
            topic: Some(topic.to_owned()),
            old: Some(State::Unsubscribed),
            new: State::Subscribed,
        };
        append(db, &[change], origin, Utc::now()).await?;
    }
    Ok(joined)
}

/// An unsubscribe from everything, however it came: the address is
/// suppressed (reason `unsubscribed`, so that it follows the person to a new
/// address) and every customer with that address (or `customer_id`) loses
/// marketing consent. `via` is the suppression's source (`campaign:NAME`,
/// `feedback:imap`). Doing it twice is harmless.
pub async fn leave_all<C: ConnectionTrait>(
    db: &C,
    email: &str,
    customer_id: Option<i64>,
    via: &str,
    origin: &Origin,
) -> Result<(), DbErr> {
    let same_address = Expr::expr(Func::lower(Expr::col("email"))).eq(email.to_lowercase());
    let customers = same_address.or(Expr::col("id").eq(customer_id.unwrap_or(0)));
    let consenting = Query::select()
        .column("id")
        .from("customers")
        .and_where(customers.clone())
        .and_where(Expr::col("marketing_consent").eq(true))
        .to_owned();
    let withdrawn: Vec<i64> =
        db.query_all(&consenting).await?.iter().map(|row| row.try_get_by_index(0)).collect::<Result<_, _>>()?;
    let unsubscribe = [(email.to_owned(), customer_id, Reason::Unsubscribed)];
    let newly_suppressed =
        suppressions::insert(db, &unsubscribe, Some(via.to_owned()), suppressions::Events::None).await?;
    let withdraw =
        Query::update().table("customers").value("marketing_consent", false).cond_where(customers).to_owned();
    db.execute(&withdraw).await?;
    let mut changes: Vec<Change> = withdrawn
        .iter()
        .map(|&id| Change {
            customer_id: Some(id),
            topic: None,
            old: Some(State::Subscribed),
            new: State::Unsubscribed,
        })
        .collect();
    if let Some(id) = customer_id.filter(|id| !withdrawn.contains(id) && !newly_suppressed.is_empty()) {
        changes.push(Change { customer_id: Some(id), topic: None, old: None, new: State::Unsubscribed });
    }
    append(db, &changes, origin, Utc::now()).await
}

/// A customer's choices from the preference page: the topics they want.
/// None at all is an unsubscribe from everything; any is also a renewed
/// consent to marketing (lifting their own earlier unsubscribe, never a
/// bounce or complaint).
pub async fn set_preferences<C: ConnectionTrait>(
    db: &C,
    customer_id: i64,
    wanted: &BTreeSet<String>,
    topics: &[String],
    via: &str,
    origin: &Origin,
) -> Result<bool, DbErr> {
    let Some((email, consent)) = customer_consent(db, customer_id).await? else { return Ok(false) };
    if wanted.is_empty() {
        leave_all(db, &email, Some(customer_id), via, origin).await?;
        return Ok(true);
    }
    let lifted = suppressions::lift_unsubscribe(db, &email).await?;
    if !consent || lifted {
        let update = Query::update()
            .table("customers")
            .value("marketing_consent", true)
            .and_where(Expr::col("id").eq(customer_id))
            .to_owned();
        db.execute(&update).await?;
        let change = Change {
            customer_id: Some(customer_id),
            topic: None,
            old: Some(State::of_consent(consent)),
            new: State::Subscribed,
        };
        append(db, &[change], origin, Utc::now()).await?;
    }
    for topic in topics {
        if wanted.contains(topic) {
            join_topic(db, customer_id, topic, origin).await?;
        } else {
            leave_topic(db, customer_id, topic, origin).await?;
        }
    }
    Ok(true)
}

/// The customer's address and marketing consent; `None` if there is no such
/// (unerased) customer.
pub async fn customer_consent<C: ConnectionTrait>(db: &C, customer_id: i64) -> Result<Option<(String, bool)>, DbErr> {
    let select = Query::select()
        .columns(["email", "marketing_consent"])
        .from("customers")
        .and_where(Expr::col("id").eq(customer_id))
        .and_where(Expr::col("erased_at").is_null())
        .to_owned();
    let Some(row) = db.query_one(&select).await? else { return Ok(None) };
    Ok(Some((row.try_get_by_index(0)?, row.try_get_by_index(1)?)))
}

/// What a customer may receive now: marketing consent, the topics they
/// left, and the suppression of their address if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub consent: bool,
    pub left: BTreeSet<String>,
    pub suppressed: Option<Reason>,
}

impl Standing {
    /// Whether mail of `topic` may reach them (kinds that need marketing consent aside).
    pub fn receives(&self, topic: &str) -> bool {
        self.consent && self.suppressed.is_none() && !self.left.contains(topic)
    }
}

/// The customer's [`Standing`]; `None` if there is no such customer.
pub async fn standing<C: ConnectionTrait>(db: &C, customer_id: i64) -> Result<Option<Standing>, DbErr> {
    let Some((email, consent)) = customer_consent(db, customer_id).await? else { return Ok(None) };
    let select = Query::select()
        .column("topic")
        .from("topic_opt_outs")
        .and_where(Expr::col("customer_id").eq(customer_id))
        .to_owned();
    let left = db.query_all(&select).await?.iter().map(|row| row.try_get_by_index(0)).collect::<Result<_, _>>()?;
    let suppressed = suppressions::reason_for(db, &email, customer_id).await?;
    Ok(Some(Standing { consent, left, suppressed }))
}
