//! Consent in a customer import: a file never turns marketing back on for
//! someone who unsubscribed, complained or was suppressed after the consent
//! date the file gives (or at all, when it gives none); an address erased
//! earlier is recognised by its keyed hash and stays suppressed; and every
//! change of consent the file makes is a consent event naming file and line.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DbErr};
use secrecy::SecretString;

use super::Pending;
use super::customers::CustomerRow;
use crate::consent::suppressions::{self, Reason};
use crate::consent::{self, Change, Origin, Source, State};
use crate::db::bulk::{BulkInsert, BulkTarget};

/// What the checks of one import need.
pub struct Guard {
    pub file: String,
    /// Whether the file has a `marketing_consent` column (without it, consent is not touched).
    pub consent_column: bool,
    /// The key of erased addresses' hashes, when configured and some exist.
    pub erased_key: Option<SecretString>,
    /// No customer existed when the import began: nothing to look up.
    pub none_exist: bool,
}

/// A change of consent made by a row, recorded once the row is written
/// (a new customer has no id before).
pub struct PendingChange {
    external_id: String,
    old: Option<bool>,
    new: bool,
    basis: String,
}

/// The batch's customers already stored: external id → (id, marketing consent).
pub type Known = HashMap<String, (i64, bool)>;

/// What the checks of one batch found.
#[derive(Default)]
pub struct Checked {
    /// Rows whose consent was kept off.
    pub kept_off: u64,
    pub changes: Vec<PendingChange>,
}

impl Guard {
    /// Whether erased addresses exist to look for.
    pub async fn new(
        txn: &impl ConnectionTrait,
        file: String,
        consent_column: bool,
        key: Option<SecretString>,
    ) -> Result<Guard, DbErr> {
        let any_erased = Query::select()
            .expr(Expr::val(1))
            .from("suppressions")
            .and_where(Expr::col("email").like("erased:%"))
            .limit(1)
            .to_owned();
        let erased_exist = txn.query_one(&any_erased).await?.is_some();
        if erased_exist && key.is_none() {
            tracing::warn!(
                "erased addresses are on the suppression list but privacy.address_key is not set: \
                 an erased address imported again is not recognised"
            );
        }
        Ok(Guard { file, consent_column, erased_key: key.filter(|_| erased_exist), none_exist: false })
    }

    /// Restores erased addresses found in the batch to the suppression list,
    /// keeps consent off where a suppression is newer than the file's
    /// consent, and lists the changes of consent. `known`: the batch's
    /// stored customers when the caller has read them already.
    pub async fn check(
        &self,
        txn: &impl BulkTarget,
        batch: &mut [Pending<CustomerRow>],
        known: Option<Known>,
    ) -> Result<Checked, DbErr> {
        if let Some(key) = &self.erased_key {
            suppressions::restore_erased(txn, key, batch.iter().map(|p| p.row.email.as_str())).await?;
        }
        // Without the consent column no row asks for consent or changes it,
        // so the stored consent is not needed.
        let existing = match known {
            Some(known) => known,
            None if self.none_exist || !self.consent_column => HashMap::new(),
            None => existing_consent(txn, batch).await?,
        };
        let suppressed = suppression_times(txn, batch, &existing).await?;
        let mut checked = Checked::default();
        for pending in batch.iter_mut() {
            let row = &mut pending.row;
            let known = existing.get(&row.external_id).copied();
            if row.marketing_consent == Some(true) && known.is_none_or(|(_, consent)| !consent) {
                let id = known.map(|(id, _)| id);
                let since = suppressed
                    .get(&row.email.to_lowercase())
                    .into_iter()
                    .chain(id.and_then(|id| suppressed.get(&id.to_string())));
                if since.copied().any(|at| row.consent_at.is_none_or(|given| at > given)) {
                    row.marketing_consent = Some(false);
                    checked.kept_off += 1;
                }
            }
            if !self.consent_column {
                continue;
            }
            let new = row.marketing_consent.unwrap_or(false);
            let old = known.map(|(_, consent)| consent);
            if old != Some(new) {
                let basis = match row.consent_at {
                    Some(given) => format!("{} line {}, consent given {}", self.file, pending.line, given.to_rfc3339()),
                    None => format!("{} line {}", self.file, pending.line),
                };
                checked.changes.push(PendingChange { external_id: row.external_id.clone(), old, new, basis });
            }
        }
        Ok(checked)
    }
}

/// Appends the consent events of written rows, in bulk.
pub async fn record(txn: &impl BulkTarget, changes: Vec<PendingChange>) -> Result<(), DbErr> {
    if changes.is_empty() {
        return Ok(());
    }
    let ids = customer_ids(txn, &changes).await?;
    let events: Vec<(Change, Origin)> = changes
        .into_iter()
        .filter_map(|c| {
            let change = Change {
                customer_id: Some(*ids.get(&c.external_id)?),
                topic: None,
                old: c.old.map(state),
                new: state(c.new),
            };
            Some((change, Origin::new(Source::Import, c.basis)))
        })
        .collect();
    let now = Utc::now();
    let insert = BulkInsert::new(txn.get_database_backend(), "consent_events", consent::EVENT_COLUMNS);
    if let Some(postgres) = txn.postgres() {
        insert.learn_wire_types(postgres).await?;
    }
    let values = events.iter().flat_map(|(change, origin)| consent::event_values(change, origin, now)).collect();
    insert.write(txn, insert.batch(values)).await.map(drop)
}

/// The ids of the customers whose consent changed, by external id (written
/// in this import, so all of them exist).
async fn customer_ids(txn: &impl BulkTarget, changes: &[PendingChange]) -> Result<HashMap<String, i64>, DbErr> {
    super::customer_refs::known_customers(txn, changes.iter().map(|c| c.external_id.clone()).collect()).await
}

fn state(consent: bool) -> State {
    if consent { State::Subscribed } else { State::Unsubscribed }
}

/// Existing customers of the batch: external id → (id, consent).
async fn existing_consent(
    txn: &impl BulkTarget,
    batch: &[Pending<CustomerRow>],
) -> Result<HashMap<String, (i64, bool)>, DbErr> {
    if let Some(postgres) = txn.postgres() {
        let keys: Vec<&str> = batch.iter().map(|p| p.row.external_id.as_str()).collect();
        let select =
            r#"SELECT "external_id", "id", "marketing_consent" FROM "customers" WHERE "external_id" = ANY($1)"#;
        let rows: Vec<(String, i64, bool)> = postgres.fetch_by_keys(select, &keys).await?;
        return Ok(rows.into_iter().map(|(external_id, id, consent)| (external_id, (id, consent))).collect());
    }
    let select = Query::select()
        .from("customers")
        .and_where(Expr::col("external_id").is_in(batch.iter().map(|p| p.row.external_id.clone())))
        .to_owned();
    let rows: Vec<(String, i64, i64)> =
        crate::db::sqlite_rows_as_json(txn, &["external_id", "id", "marketing_consent"], select).await?;
    Ok(rows.into_iter().map(|(external_id, id, consent)| (external_id, (id, consent != 0))).collect())
}

/// When the addresses (by lower-cased address) and the people (by customer
/// id as text; their unsubscribes and complaints, not bounces) of rows that
/// ask for consent were suppressed.
async fn suppression_times(
    txn: &impl BulkTarget,
    batch: &[Pending<CustomerRow>],
    existing: &HashMap<String, (i64, bool)>,
) -> Result<HashMap<String, DateTime<Utc>>, DbErr> {
    let asking: Vec<&CustomerRow> =
        batch.iter().map(|p| &p.row).filter(|r| r.marketing_consent == Some(true)).collect();
    if asking.is_empty() {
        return Ok(HashMap::new());
    }
    let emails: HashSet<String> = asking.iter().map(|r| r.email.to_lowercase()).collect();
    let ids: Vec<i64> = asking.iter().filter_map(|r| existing.get(&r.external_id).map(|(id, _)| *id)).collect();
    let mut times = HashMap::new();
    for (email, customer_id, reason, at) in suppressions_of(txn, &emails, ids).await? {
        let mut latest = |key: String| {
            let time = times.entry(key).or_insert(at);
            *time = Ord::max(*time, at);
        };
        if emails.contains(&email) {
            latest(email);
        }
        if let Some(id) = customer_id.filter(|_| reason != Reason::Bounced.as_str()) {
            latest(id.to_string());
        }
    }
    Ok(times)
}

/// A suppression as `suppression_times` reads it: address, customer,
/// reason, time.
type SuppressionRow = (String, Option<i64>, String, DateTime<Utc>);

/// The suppressions of `emails`, and those of the customers `ids` that are
/// not bounces. On PostgreSQL both sets are bound as arrays: one statement,
/// prepared once, where lists of thousands of values would be parsed and
/// planned again for every batch.
async fn suppressions_of(
    txn: &impl BulkTarget,
    emails: &HashSet<String>,
    ids: Vec<i64>,
) -> Result<Vec<SuppressionRow>, DbErr> {
    let bounced = Reason::Bounced.as_str();
    if let Some(postgres) = txn.postgres() {
        let select = r#"SELECT "email", "customer_id", "reason", "created_at" FROM "suppressions"
                        WHERE "email" = ANY($1) OR ("customer_id" = ANY($2) AND "reason" <> $3)"#;
        let emails: Vec<&str> = emails.iter().map(String::as_str).collect();
        return postgres.fetch_by_texts_and_ids(select, &emails, &ids, bounced).await;
    }
    let by_person = Expr::col("customer_id").is_in(ids).and(Expr::col("reason").ne(bounced));
    let select = Query::select()
        .columns(["email", "customer_id", "reason", "created_at"])
        .from("suppressions")
        .cond_where(Expr::col("email").is_in(emails.iter().cloned()).or(by_person))
        .to_owned();
    let rows = txn.query_all(&select).await?;
    rows.iter()
        .map(|row| {
            Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?, row.try_get_by_index(2)?, row.try_get_by_index(3)?))
        })
        .collect()
}
