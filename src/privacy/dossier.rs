//! Everything patron holds about one person, as one JSON document
//! (`patron customer export`): profile, orders, interactions, loyalty,
//! messages, feedback, scores, features, consent and its history. Its shape
//! is described by `docs/customer-export.schema.json`.

use sea_orm::sea_query::{Expr, ExprTrait, Order, Query, SelectStatement};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, JsonValue, QueryFilter, QueryOrder};
use serde::Serialize;

use crate::consent::{self, Standing};
use crate::db::entities::{
    customer, feature_snapshot, interaction, loyalty_account, loyalty_ledger, loyalty_tier_change, order, score,
};

/// The version of the document's shape, raised when a field changes meaning.
pub const FORMAT: u32 = 1;

/// Everything held about one customer.
#[derive(Debug, Serialize)]
pub struct Dossier {
    pub format: u32,
    pub exported_at: String,
    pub customer: JsonValue,
    pub consent: ConsentNow,
    pub consent_history: Vec<JsonValue>,
    pub suppressions: Vec<JsonValue>,
    pub orders: Vec<JsonValue>,
    pub interactions: Vec<JsonValue>,
    pub loyalty_account: Option<JsonValue>,
    pub loyalty_ledger: Vec<JsonValue>,
    pub loyalty_tier_changes: Vec<JsonValue>,
    /// Each outbox row (a message, or a place in a control group) with its campaign.
    pub messages: Vec<JsonValue>,
    pub feedback_events: Vec<JsonValue>,
    pub scores: Vec<JsonValue>,
    pub features: Option<JsonValue>,
}

/// Consent as it stands: marketing as a whole, each topic, the suppression.
#[derive(Debug, Serialize)]
pub struct ConsentNow {
    pub marketing: bool,
    pub topics: Vec<TopicConsent>,
    pub suppressed: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct TopicConsent {
    pub topic: String,
    pub subscribed: bool,
}

impl ConsentNow {
    pub fn of(standing: &Standing, topics: &[String]) -> Self {
        ConsentNow {
            marketing: standing.consent,
            topics: topics
                .iter()
                .map(|t| TopicConsent { topic: t.clone(), subscribed: standing.consent && !standing.left.contains(t) })
                .collect(),
            suppressed: standing.suppressed.map(|r| r.as_str()),
        }
    }
}

/// The dossier of `customer`; `topics` are the configured subscription topics.
pub async fn collect<C: ConnectionTrait>(
    db: &C,
    customer: &customer::Model,
    topics: &[String],
) -> Result<Dossier, DbErr> {
    let id = customer.id;
    let standing = consent::standing(db, id).await?.unwrap_or(Standing {
        consent: false,
        left: Default::default(),
        suppressed: None,
    });
    Ok(Dossier {
        format: FORMAT,
        exported_at: chrono::Utc::now().to_rfc3339(),
        customer: profile(customer),
        consent: ConsentNow::of(&standing, topics),
        consent_history: rows(db, by_customer("consent_events", id).order_by("id", Order::Asc).to_owned()).await?,
        suppressions: rows(db, suppressions_of(customer)).await?,
        orders: order::Entity::find()
            .filter(order::Column::CustomerId.eq(id))
            .order_by_asc(order::Column::OrderedAt)
            .into_json()
            .all(db)
            .await?,
        interactions: interaction::Entity::find()
            .filter(interaction::Column::CustomerId.eq(id))
            .order_by_asc(interaction::Column::OpenedAt)
            .into_json()
            .all(db)
            .await?,
        loyalty_account: loyalty_account::Entity::find_by_id(id).into_json().one(db).await?,
        loyalty_ledger: loyalty_ledger::Entity::find()
            .filter(loyalty_ledger::Column::CustomerId.eq(id))
            .order_by_asc(loyalty_ledger::Column::Id)
            .into_json()
            .all(db)
            .await?,
        loyalty_tier_changes: loyalty_tier_change::Entity::find()
            .filter(loyalty_tier_change::Column::CustomerId.eq(id))
            .order_by_asc(loyalty_tier_change::Column::Id)
            .into_json()
            .all(db)
            .await?,
        messages: rows(db, messages_of(id)).await?,
        feedback_events: rows(db, feedback_of(customer)).await?,
        scores: score::Entity::find().filter(score::Column::CustomerId.eq(id)).into_json().all(db).await?,
        features: feature_snapshot::Entity::find_by_id(id).into_json().one(db).await?,
    })
}

/// The customer row as JSON (typed, so that booleans and the attributes
/// read the same on both engines).
fn profile(customer: &customer::Model) -> JsonValue {
    serde_json::json!({
        "id": customer.id,
        "external_id": customer.external_id,
        "email": customer.email,
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "birthday": customer.birthday,
        "signed_up_at": customer.signed_up_at,
        "marketing_consent": customer.marketing_consent,
        "attributes": customer.attributes,
        "created_at": customer.created_at,
        "updated_at": customer.updated_at,
        "erased_at": customer.erased_at,
    })
}

/// Rows of a statement as JSON objects, column by column.
async fn rows<C: ConnectionTrait>(db: &C, select: SelectStatement) -> Result<Vec<JsonValue>, DbErr> {
    let statement = db.get_database_backend().build(&select);
    JsonValue::find_by_statement(statement).all(db).await
}

fn by_customer(table: &str, customer_id: i64) -> SelectStatement {
    Query::select()
        .expr(Expr::cust("*"))
        .from(sea_orm::sea_query::Alias::new(table))
        .and_where(Expr::col("customer_id").eq(customer_id))
        .to_owned()
}

/// The suppressions of the person's address, or of the person.
fn suppressions_of(customer: &customer::Model) -> SelectStatement {
    Query::select()
        .columns(["email", "reason", "source", "created_at"])
        .from("suppressions")
        .cond_where(Expr::col("email").eq(customer.email.to_lowercase()).or(Expr::col("customer_id").eq(customer.id)))
        .to_owned()
}

/// The customer's outbox rows with their campaign, oldest first.
fn messages_of(customer_id: i64) -> SelectStatement {
    let columns =
        ["id", "state", "variant", "attempts", "message_id", "sent_at", "last_error", "server_reply", "created_at"];
    let mut select = Query::select();
    for column in columns {
        select.column(("outbox", column));
    }
    select
        .column(("campaign_runs", "campaign"))
        .from("outbox")
        .inner_join("campaign_runs", Expr::col(("campaign_runs", "id")).equals(("outbox", "run_id")))
        .and_where(Expr::col(("outbox", "customer_id")).eq(customer_id))
        .order_by(("outbox", "id"), Order::Asc)
        .to_owned()
}

/// Bounces, complaints and unsubscribe requests about the customer or their address.
fn feedback_of(customer: &customer::Model) -> SelectStatement {
    Query::select()
        .columns(["received_at", "kind", "status", "diagnostic", "email", "source", "run_id"])
        .from("feedback_events")
        .cond_where(Expr::col("customer_id").eq(customer.id).or(Expr::col("email").eq(customer.email.to_lowercase())))
        .order_by("id", Order::Asc)
        .to_owned()
}
