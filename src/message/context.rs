//! The variables a template sees for one customer, from the database.

use minijinja::Value;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
use serde_json::{Map, Value as Json, json};

use crate::campaign::Campaign;
use crate::db::entities::{customer, feature_snapshot, score};
use crate::segment::compile::FIELDS;

/// Everything a template may use for `customer_id`, or `None` if the customer
/// is gone. Features the customer has no value for are present and empty, so
/// that a template never fails on a customer without a snapshot.
pub async fn for_customer<C: ConnectionTrait>(
    db: &C,
    customer_id: i64,
    campaign: &Campaign,
    variant: Option<&str>,
    model_id: Option<i64>,
    unsubscribe_url: &str,
) -> Result<Option<Value>, DbErr> {
    let Some(customer) = customer::Entity::find_by_id(customer_id).one(db).await? else {
        return Ok(None);
    };
    let snapshot = feature_snapshot::Entity::find()
        .filter(feature_snapshot::Column::CustomerId.eq(customer_id))
        .into_json()
        .one(db)
        .await?
        .unwrap_or_default();
    let score = match model_id {
        Some(model_id) => {
            score::Entity::find()
                .filter(score::Column::ModelId.eq(model_id))
                .filter(score::Column::CustomerId.eq(customer_id))
                .one(db)
                .await?
        }
        None => None,
    };
    let features: Map<String, Json> = FIELDS
        .iter()
        .filter(|f| f.2 == "feature_snapshots")
        .map(|f| (f.0.to_owned(), snapshot.get(f.3).cloned().unwrap_or(Json::Null)))
        .collect();
    let context = json!({
        "customer": {
            "first_name": customer.first_name,
            "last_name": customer.last_name,
            "email": customer.email,
            "external_id": customer.external_id,
            "birthday": customer.birthday.map(|b| b.to_string()),
            "attributes": customer.attributes,
        },
        "loyalty": {"points": features.get("loyalty_points"), "tier": features.get("loyalty_tier")},
        "features": features,
        "propensity": score.as_ref().map(|s| s.score),
        "propensity_decile": score.as_ref().map(|s| s.decile),
        "campaign": {"name": campaign.name, "description": campaign.description},
        "variant": variant,
        "unsubscribe_url": unsubscribe_url,
    });
    Ok(Some(Value::from(minijinja::value::Serde(context))))
}
