//! The variables a template sees for one customer, from the database.
//!
//! The sender loads them for a whole batch of recipients at once ([`load`]);
//! a query per message would cap sending at a few thousand messages a second.

use std::collections::HashMap;

use minijinja::Value;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
use serde_json::{Map, Value as Json, json};

use crate::db::entities::{customer, feature_snapshot, loyalty_account, score};
use crate::segment::compile::FIELDS;

/// What the database holds about one recipient.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub customer: customer::Model,
    /// Every feature by its segment name; `null` where the customer has no value.
    features: Map<String, Json>,
    /// The active model's score row: propensity, decile and outlook.
    score: Option<score::Model>,
    /// `None` for a customer who is not (yet) a loyalty member.
    loyalty: Option<loyalty_account::Model>,
}

/// Rows per `IN (...)` list: well under SQLite's bound-value limit.
const IDS_PER_QUERY: usize = 2000;

/// The recipients among `customer_ids` that still exist, by customer id.
/// Features the customer has no value for are present and empty, so that a
/// template never fails on a customer without a snapshot.
pub async fn load<C: ConnectionTrait>(
    db: &C,
    customer_ids: &[i64],
    model_id: Option<i64>,
) -> Result<HashMap<i64, Recipient>, DbErr> {
    let mut recipients = HashMap::with_capacity(customer_ids.len());
    for ids in customer_ids.chunks(IDS_PER_QUERY) {
        let customers =
            customer::Entity::find().filter(customer::Column::Id.is_in(ids.iter().copied())).all(db).await?;
        let mut snapshots: HashMap<i64, Json> = feature_snapshot::Entity::find()
            .filter(feature_snapshot::Column::CustomerId.is_in(ids.iter().copied()))
            .into_json()
            .all(db)
            .await?
            .into_iter()
            .filter_map(|row| Some((row.get("customer_id")?.as_i64()?, row)))
            .collect();
        let mut scores: HashMap<i64, score::Model> = match model_id {
            Some(model_id) => score::Entity::find()
                .filter(score::Column::ModelId.eq(model_id))
                .filter(score::Column::CustomerId.is_in(ids.iter().copied()))
                .all(db)
                .await?
                .into_iter()
                .map(|s| (s.customer_id, s))
                .collect(),
            None => HashMap::new(),
        };
        let mut accounts: HashMap<i64, loyalty_account::Model> = loyalty_account::Entity::find()
            .filter(loyalty_account::Column::CustomerId.is_in(ids.iter().copied()))
            .all(db)
            .await?
            .into_iter()
            .map(|a| (a.customer_id, a))
            .collect();
        for customer in customers {
            let snapshot = snapshots.remove(&customer.id).unwrap_or_default();
            let features = FIELDS
                .iter()
                .filter(|f| f.2 == "feature_snapshots")
                .map(|f| (f.0.to_owned(), snapshot.get(f.3).cloned().unwrap_or(Json::Null)))
                .collect();
            let score = scores.remove(&customer.id);
            let loyalty = accounts.remove(&customer.id);
            recipients.insert(customer.id, Recipient { customer, features, score, loyalty });
        }
    }
    Ok(recipients)
}

/// What a template knows of the campaign it renders for.
#[derive(Debug, Clone, Copy)]
pub struct CampaignInfo<'a> {
    pub name: &'a str,
    pub description: &'a str,
}

impl Recipient {
    /// Everything a template may use, for this recipient in `campaign`.
    pub fn variables(&self, campaign: CampaignInfo<'_>, variant: Option<&str>, unsubscribe_url: &str) -> Value {
        let customer = &self.customer;
        let features = &self.features;
        let context = json!({
            "customer": {
                "first_name": customer.first_name,
                "last_name": customer.last_name,
                "email": customer.email,
                "external_id": customer.external_id,
                "birthday": customer.birthday.map(|b| b.to_string()),
                "attributes": customer.attributes,
            },
            "loyalty": self.loyalty_variables(),
            "features": features,
            "propensity": self.score.as_ref().map(|s| s.score),
            "propensity_decile": self.score.as_ref().map(|s| s.decile),
            "p_alive": self.score.as_ref().and_then(|s| s.p_alive),
            "expected_orders_90d": self.score.as_ref().and_then(|s| s.expected_orders_90d),
            "expected_orders_365d": self.score.as_ref().and_then(|s| s.expected_orders_365d),
            "clv": self.score.as_ref().and_then(|s| s.clv),
            "campaign": {"name": campaign.name, "description": campaign.description},
            "variant": variant,
        });
        let Json::Object(context) = context else { unreachable!("json! of an object") };
        let mut variables: Vec<(String, Value)> =
            context.into_iter().map(|(k, v)| (k, Value::from(minijinja::value::Serde(v)))).collect();
        variables.push(("unsubscribe_url".to_owned(), patron_url(unsubscribe_url)));
        Value::from_pairs(variables)
    }

    /// The member's standing, the same values as the segment fields; every
    /// value is null for a customer who is not a member.
    fn loyalty_variables(&self) -> Json {
        let account = self.loyalty.as_ref();
        json!({
            "points": account.map(|a| a.points),
            "tier": account.map(|a| &a.tier),
            "tier_direction": account.and_then(|a| a.tier_direction.as_ref()),
            "tier_changed_days_ago": account.map(|a| (chrono::Utc::now() - a.tier_since).num_days()),
            "points_expiring_30d": account.map(|a| a.points_expiring_30d),
            "next_tier": account.and_then(|a| a.next_tier.as_ref()),
            "points_to_next_tier": account.and_then(|a| a.points_to_next_tier),
        })
    }
}

/// A URL that patron built itself (the unsubscribe link: a validated public
/// URL and a base64url token), marked safe so the HTML part does not escape
/// its slashes. Anything that could leave an HTML attribute (quotes, angle
/// brackets, whitespace) keeps it an ordinary, escaped string.
fn patron_url(url: &str) -> Value {
    if url.chars().any(|c| matches!(c, '"' | '\'' | '<' | '>' | '&') || c.is_whitespace()) {
        Value::from(url)
    } else {
        Value::from_safe_string(url.to_owned())
    }
}

/// The variables for one customer (for previews), or `None` if the customer is gone.
pub async fn for_customer<C: ConnectionTrait>(
    db: &C,
    customer_id: i64,
    campaign: CampaignInfo<'_>,
    variant: Option<&str>,
    model_id: Option<i64>,
    unsubscribe_url: &str,
) -> Result<Option<Value>, DbErr> {
    let recipients = load(db, &[customer_id], model_id).await?;
    Ok(recipients.get(&customer_id).map(|r| r.variables(campaign, variant, unsubscribe_url)))
}
