//! The suppression list: addresses that get no mail at all, whatever the
//! campaign. Keyed by lower-cased address, so that it outlives the customer;
//! an erased person's address is replaced by a keyed hash of it
//! ([`erased_marker`]), which a later import of the same address recognises.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DbErr};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::{Change, Origin, Source, State, append_each};

/// Rows per multi-row INSERT: 5 values each.
const ROWS_PER_STATEMENT: usize = 500;

/// Why an address is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// The person asked for no more mail (all topics).
    Unsubscribed,
    /// The address does not take mail.
    Bounced,
    /// The person marked a message as spam.
    Complained,
    /// An operator added it (a blocklist entry, a request by phone).
    Manual,
}

impl Reason {
    pub const ALL: [Reason; 4] = [Reason::Unsubscribed, Reason::Bounced, Reason::Complained, Reason::Manual];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unsubscribed => "unsubscribed",
            Reason::Bounced => "bounced",
            Reason::Complained => "complained",
            Reason::Manual => "manual",
        }
    }

    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// Where the consent event of a new suppression says it came from.
    fn source(self) -> Source {
        match self {
            Reason::Unsubscribed => Source::Mailto,
            Reason::Bounced => Source::Bounce,
            Reason::Complained => Source::Complaint,
            Reason::Manual => Source::Command,
        }
    }
}

/// Suppresses each `(email, customer id, reason)` unless the address already
/// is (the first reason of an address wins), a few hundred to a statement;
/// each new suppression of a known customer is a consent event, from the
/// reason's source, whose basis is `source` (`smtp`, `feedback:imap`, ...).
pub async fn suppress_all<C: ConnectionTrait>(
    db: &C,
    suppressions: &[(String, Option<i64>, Reason)],
    source: &str,
) -> Result<(), DbErr> {
    insert(db, suppressions, Some(source.to_owned()), Events::ByReason).await.map(drop)
}

/// [`suppress_all`] for one address.
pub async fn suppress<C: ConnectionTrait>(
    db: &C,
    email: &str,
    customer_id: Option<i64>,
    reason: Reason,
    source: &str,
) -> Result<(), DbErr> {
    suppress_all(db, &[(email.to_owned(), customer_id, reason)], source).await
}

/// Which consent events new suppressions make.
#[derive(Debug, Clone, Copy)]
pub(super) enum Events {
    /// None: the caller records its own.
    None,
    /// One per new suppression of a known customer, from the reason's source.
    ByReason,
    /// As `ByReason`, from this source.
    From(Source),
}

/// Inserts the suppressions not there yet, with `basis` as their source,
/// and returns the addresses that are new.
pub(super) async fn insert<C: ConnectionTrait>(
    db: &C,
    suppressions: &[(String, Option<i64>, Reason)],
    basis: Option<String>,
    events: Events,
) -> Result<HashSet<String>, DbErr> {
    let now = Utc::now();
    let mut new = HashSet::new();
    for chunk in suppressions.chunks(ROWS_PER_STATEMENT) {
        let mut insert = Query::insert();
        insert.into_table("suppressions").columns(["email", "customer_id", "reason", "source", "created_at"]);
        for (email, customer_id, reason) in chunk {
            insert.values_panic([
                email.to_lowercase().into(),
                (*customer_id).into(),
                reason.as_str().into(),
                basis.clone().into(),
                now.into(),
            ]);
        }
        insert.on_conflict(OnConflict::column("email").do_nothing().to_owned()).returning_col("email");
        for row in db.query_all(&insert).await? {
            new.insert(row.try_get_by_index::<String>(0)?);
        }
    }
    let mut recorded = HashSet::new();
    let mut changes = Vec::new();
    for (email, customer_id, reason) in suppressions {
        let source = match events {
            Events::None => break,
            Events::ByReason => reason.source(),
            Events::From(source) => source,
        };
        let email = email.to_lowercase();
        if customer_id.is_some() && new.contains(&email) && recorded.insert(email) {
            let change = Change { customer_id: *customer_id, topic: None, old: None, new: State::Suppressed };
            changes.push((
                change,
                Origin::new(source, Some(format!("{} ({})", reason.as_str(), basis.as_deref().unwrap_or("-")))),
            ));
        }
    }
    append_each(db, &changes, now).await?;
    Ok(new)
}

/// Removes the `unsubscribed` suppression of `email` (the person subscribed
/// again themselves); true if there was one. Other reasons stay.
pub async fn lift_unsubscribe<C: ConnectionTrait>(db: &C, email: &str) -> Result<bool, DbErr> {
    let delete = Query::delete()
        .from_table("suppressions")
        .and_where(Expr::col("email").eq(email.to_lowercase()))
        .and_where(Expr::col("reason").eq(Reason::Unsubscribed.as_str()))
        .to_owned();
    Ok(db.execute(&delete).await?.rows_affected() > 0)
}

/// Why the customer gets no mail, if they don't: their address is
/// suppressed, or they unsubscribed or complained under an earlier address
/// (a bounce belongs to the address only).
pub async fn reason_for<C: ConnectionTrait>(db: &C, email: &str, customer_id: i64) -> Result<Option<Reason>, DbErr> {
    let by_person = Expr::col("customer_id").eq(customer_id).and(Expr::col("reason").ne(Reason::Bounced.as_str()));
    let select = Query::select()
        .column("reason")
        .from("suppressions")
        .cond_where(Expr::col("email").eq(email.to_lowercase()).or(by_person))
        .to_owned();
    let reasons: Vec<String> =
        db.query_all(&select).await?.iter().map(|row| row.try_get_by_index(0)).collect::<Result<_, _>>()?;
    Ok(reasons.iter().filter_map(|r| Reason::parse(r)).min())
}

/// One entry of the list, as `patron suppressions list|export` show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// The address, or `erased:` and the hash of an erased person's address.
    pub email: String,
    pub reason: String,
    pub source: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// The entries with `reason` (all without), created at or after `since`, oldest first.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    reason: Option<Reason>,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<Entry>, DbErr> {
    let mut select = Query::select();
    select.columns(["email", "reason", "source", "created_at"]).from("suppressions");
    if let Some(reason) = reason {
        select.and_where(Expr::col("reason").eq(reason.as_str()));
    }
    if let Some(since) = since {
        select.and_where(Expr::col("created_at").gte(since));
    }
    select.order_by("created_at", sea_orm::sea_query::Order::Asc).order_by("email", sea_orm::sea_query::Order::Asc);
    db.query_all(&select)
        .await?
        .iter()
        .map(|row| {
            Ok(Entry {
                email: row.try_get_by_index(0)?,
                reason: row.try_get_by_index(1)?,
                source: row.try_get_by_index(2)?,
                created_at: row.try_get_by_index(3)?,
            })
        })
        .collect()
}

/// Suppresses `email` by an operator's command; false if it already was.
pub async fn add<C: ConnectionTrait>(
    db: &C,
    email: &str,
    customer_id: Option<i64>,
    reason: Reason,
    source: &str,
) -> Result<bool, DbErr> {
    let rows = [(email.to_owned(), customer_id, reason)];
    Ok(!insert(db, &rows, Some(source.to_owned()), Events::From(Source::Command)).await?.is_empty())
}

/// The reason `email` is suppressed under, as stored; `None` if it is not.
pub async fn reason_of<C: ConnectionTrait>(db: &C, email: &str) -> Result<Option<String>, DbErr> {
    let select = Query::select()
        .column("reason")
        .from("suppressions")
        .and_where(Expr::col("email").eq(email.to_lowercase()))
        .to_owned();
    db.query_one(&select).await?.map(|row| row.try_get_by_index(0)).transpose()
}

/// Removes the suppression of `email` and returns its reason, `None` if there
/// was none; each customer with the address gets a consent event.
pub async fn remove<C: ConnectionTrait>(db: &C, email: &str, basis: &str) -> Result<Option<Reason>, DbErr> {
    let email = email.to_lowercase();
    let Some(reason) = reason_of(db, &email).await? else { return Ok(None) };
    let delete = Query::delete().from_table("suppressions").and_where(Expr::col("email").eq(email.clone())).to_owned();
    db.execute(&delete).await?;
    let customers = Query::select()
        .columns(["id", "marketing_consent"])
        .from("customers")
        .and_where(Expr::expr(sea_orm::sea_query::Func::lower(Expr::col("email"))).eq(email))
        .to_owned();
    let mut changes = Vec::new();
    for row in db.query_all(&customers).await? {
        let consent: bool = row.try_get_by_index(1)?;
        let new = if consent { State::Subscribed } else { State::Unsubscribed };
        let change =
            Change { customer_id: Some(row.try_get_by_index(0)?), topic: None, old: Some(State::Suppressed), new };
        changes.push((change, Origin::new(Source::Command, format!("{basis}: {reason} lifted"))));
    }
    append_each(db, &changes, Utc::now()).await?;
    Ok(Reason::parse(&reason).or(Some(Reason::Manual)))
}

/// What an erased person's address becomes in the suppression list: a keyed
/// hash, not an address (it has no `@`), so that it matches no customer
/// until the same address is imported again.
pub fn erased_marker(key: &SecretString, email: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes()).expect("HMAC takes any key");
    mac.update(email.to_lowercase().as_bytes());
    format!("erased:{}", hex::encode(mac.finalize().into_bytes()))
}

/// Puts each address back in place of its hash, for every erased address
/// among `emails` (an import brings it again): it is suppressed as before.
pub async fn restore_erased<C: ConnectionTrait>(
    db: &C,
    key: &SecretString,
    emails: impl Iterator<Item = &str>,
) -> Result<(), DbErr> {
    let markers: std::collections::HashMap<String, String> =
        emails.map(|email| (erased_marker(key, email), email.to_lowercase())).collect();
    let select = Query::select()
        .column("email")
        .from("suppressions")
        .and_where(Expr::col("email").is_in(markers.keys().cloned()))
        .to_owned();
    for row in db.query_all(&select).await? {
        let marker: String = row.try_get_by_index(0)?;
        let address = markers[&marker].clone();
        // Suppressed again meanwhile under its address: one row is enough.
        let delete =
            Query::delete().from_table("suppressions").and_where(Expr::col("email").eq(address.clone())).to_owned();
        db.execute(&delete).await?;
        let update = Query::update()
            .table("suppressions")
            .value("email", address)
            .and_where(Expr::col("email").eq(marker))
            .to_owned();
        db.execute(&update).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_back_and_an_erased_marker_is_keyed_and_case_blind() {
        for reason in Reason::ALL {
            assert_eq!(Reason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(Reason::parse("spam"), None);
        let key = SecretString::from("k".repeat(32));
        let marker = erased_marker(&key, "Ann@Example.com");
        assert_eq!(marker, erased_marker(&key, "ann@example.com"));
        assert!(marker.starts_with("erased:") && !marker.contains('@') && marker.len() == 7 + 64, "{marker}");
        assert_ne!(marker, erased_marker(&SecretString::from("j".repeat(32)), "ann@example.com"));
    }
}
