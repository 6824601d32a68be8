//! Erasure (GDPR Art. 17): the person's personal data leaves every table in
//! one transaction. What stays is anonymous: a shell customer row (so that
//! campaign totals and, with `privacy.keep_anonymous_orders`, sales totals
//! still add up), their outbox rows without replies, feedback events without
//! address or diagnostic, and their suppression with a keyed hash in place of
//! the address, so that importing the address again keeps it suppressed.

use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait, Func, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr};
use secrecy::SecretString;
use serde_json::json;

use crate::consent::suppressions::{self, Reason, erased_marker};
use crate::consent::{self, Change, Origin, Source, State};
use crate::db::entities::customer;
use crate::db::entities::outbox::State as OutboxState;
use crate::delivery::outbox::PENDING_STATES;

/// What an erasure changed, in counts (nothing personal).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Erased {
    pub customer_id: i64,
    pub orders_deleted: u64,
    pub orders_kept_anonymous: u64,
    pub interactions: u64,
    pub loyalty_entries: u64,
    pub messages_cleared: u64,
    pub messages_cancelled: u64,
    pub feedback_events_cleared: u64,
    pub consent_events: u64,
    pub suppressions_hashed: u64,
}

/// Erases `customer`. `key` makes the hash that replaces the address.
pub async fn erase(
    db: &DatabaseConnection,
    customer: &customer::Model,
    key: &SecretString,
    keep_anonymous_orders: bool,
) -> Result<Erased, DbErr> {
    let txn = crate::db::begin_write(db).await?;
    if txn.get_database_backend() == DbBackend::Sqlite {
        // Freed space is zeroed, so that no copy of the data stays in the file.
        txn.execute_unprepared("PRAGMA secure_delete = ON").await?;
    }
    let id = customer.id;
    let email = customer.email.to_lowercase();
    let mut erased = Erased { customer_id: id, ..Erased::default() };

    // Their address stays suppressed, as a hash.
    suppressions::suppress(&txn, &email, Some(id), Reason::Unsubscribed, "erasure").await?;
    let theirs = Expr::col("email").eq(email.clone()).or(Expr::col("customer_id").eq(id));
    let select = Query::select().column("email").from("suppressions").cond_where(theirs.clone()).to_owned();
    for row in txn.query_all(&select).await? {
        let address: String = row.try_get_by_index(0)?;
        erased.suppressions_hashed += hash_suppression(&txn, key, &address, id).await?;
    }

    let of_customer = || Expr::col("customer_id").eq(id);
    erased.interactions = delete(&txn, "interactions", of_customer()).await?;
    erased.loyalty_entries = delete(&txn, "loyalty_ledger", of_customer()).await?;
    delete(&txn, "loyalty_tier_changes", of_customer()).await?;
    delete(&txn, "loyalty_accounts", of_customer()).await?;
    delete(&txn, "feature_snapshots", of_customer()).await?;
    delete(&txn, "scores", of_customer()).await?;
    delete(&txn, "topic_opt_outs", of_customer()).await?;
    erased.consent_events = delete(&txn, "consent_events", of_customer()).await?;
    if keep_anonymous_orders {
        erased.orders_kept_anonymous = count(&txn, "orders", id).await?;
    } else {
        erased.orders_deleted = delete(&txn, "orders", of_customer()).await?;
    }

    let cancel = Query::update()
        .table("outbox")
        .value("state", OutboxState::Suppressed)
        .value("last_error", "the customer was erased")
        .and_where(of_customer())
        .and_where(Expr::col("state").is_in(PENDING_STATES))
        .to_owned();
    erased.messages_cancelled = txn.execute(&cancel).await?.rows_affected();
    let clear = Query::update()
        .table("outbox")
        .value("server_reply", Option::<String>::None)
        .value("last_error", Option::<String>::None)
        .and_where(of_customer())
        .and_where(Expr::col("state").ne(OutboxState::Suppressed))
        .to_owned();
    erased.messages_cleared = txn.execute(&clear).await?.rows_affected();
    let feedback = Query::update()
        .table("feedback_events")
        .value("email", Option::<String>::None)
        .value("diagnostic", Option::<String>::None)
        .cond_where(Expr::col("customer_id").eq(id).or(Expr::col("email").eq(email)))
        .to_owned();
    erased.feedback_events_cleared = txn.execute(&feedback).await?.rows_affected();

    let now = Utc::now();
    let shell = Query::update()
        .table("customers")
        .value("external_id", format!("erased-{id}"))
        .value("email", "")
        .value("first_name", Option::<String>::None)
        .value("last_name", Option::<String>::None)
        .value("birthday", Option::<chrono::NaiveDate>::None)
        .value("signed_up_at", Option::<chrono::DateTime<Utc>>::None)
        .value("marketing_consent", false)
        .value("attributes", json!({}))
        .value("erased_at", now)
        .value("updated_at", now)
        .and_where(Expr::col("id").eq(id))
        .to_owned();
    txn.execute(&shell).await?;
    let change = Change { customer_id: Some(id), topic: None, old: None, new: State::Erased };
    consent::append(&txn, &[change], &Origin::new(Source::Erasure, None), now).await?;
    txn.commit().await?;
    compact(db).await?;
    tracing::info!(customer_id = id, "customer erased");
    Ok(erased)
}

/// Replaces `address` by its hash in the suppression list, unless another
/// customer has that address too (then only the link to the erased one goes).
async fn hash_suppression<C: ConnectionTrait>(
    txn: &C,
    key: &SecretString,
    address: &str,
    id: i64,
) -> Result<u64, DbErr> {
    let shared = Query::select()
        .expr(Expr::val(1))
        .from("customers")
        .and_where(Expr::expr(Func::lower(Expr::col("email"))).eq(address))
        .and_where(Expr::col("id").ne(id))
        .and_where(Expr::col("erased_at").is_null())
        .limit(1)
        .to_owned();
    let mut update = Query::update();
    update.table("suppressions").value("customer_id", Option::<i64>::None).and_where(Expr::col("email").eq(address));
    if txn.query_one(&shared).await?.is_none() {
        let marker = erased_marker(key, address);
        // The same address erased before, under another customer: one row is enough.
        delete(txn, "suppressions", Expr::col("email").eq(marker.clone())).await?;
        update.value("email", marker);
    }
    Ok(txn.execute(&update).await?.rows_affected())
}

async fn delete<C: ConnectionTrait>(
    txn: &C,
    table: &str,
    condition: sea_orm::sea_query::SimpleExpr,
) -> Result<u64, DbErr> {
    let delete = Query::delete().from_table(sea_orm::sea_query::Alias::new(table)).and_where(condition).to_owned();
    Ok(txn.execute(&delete).await?.rows_affected())
}

async fn count<C: ConnectionTrait>(txn: &C, table: &str, customer_id: i64) -> Result<u64, DbErr> {
    let select = Query::select()
        .expr(Expr::col("customer_id").count())
        .from(sea_orm::sea_query::Alias::new(table))
        .and_where(Expr::col("customer_id").eq(customer_id))
        .to_owned();
    let row = txn.query_one(&select).await?.ok_or_else(|| DbErr::RecordNotFound("a count".into()))?;
    Ok(row.try_get_by_index::<i64>(0)? as u64)
}

/// On SQLite, rewrites the file (and empties the write-ahead log), so that
/// no earlier copy of the erased rows stays in free pages. PostgreSQL's own
/// VACUUM reclaims dead rows in its time.
async fn compact(db: &DatabaseConnection) -> Result<(), DbErr> {
    if db.get_database_backend() == DbBackend::Sqlite {
        db.execute_unprepared("VACUUM").await?;
        db.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)").await?;
    }
    Ok(())
}
