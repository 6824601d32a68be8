//! The `models` table: which trained models exist, and which one is active
//! (the one that scores customers). Also the promotion rule that decides
//! whether a new model replaces the active one.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Select, Set, TransactionTrait,
};

use super::ModelFile;
use crate::db::entities::model;

/// Why a new model was or was not made active.
#[derive(Debug, Clone, PartialEq)]
pub enum Promotion {
    /// There was no usable active model.
    NoActiveModel,
    /// Its validation AUC is at least the active model's on the same window.
    AtLeastAsGood { active: String, active_auc: f64 },
    /// Worse than the active model, which stays active.
    Worse { active: String, active_auc: f64 },
    /// Worse, but the operator forced it.
    Forced { active: String, active_auc: f64 },
}

impl Promotion {
    pub fn activates(&self) -> bool {
        !matches!(self, Promotion::Worse { .. })
    }
}

/// The promotion rule: a new model becomes active only if its validation AUC
/// is not below the active model's AUC on the same validation window.
/// `active` is the active model's name and AUC on that window.
pub fn promotion(new_auc: f64, active: Option<(String, f64)>, force: bool) -> Promotion {
    match active {
        None => Promotion::NoActiveModel,
        Some((active, active_auc)) if new_auc >= active_auc => Promotion::AtLeastAsGood { active, active_auc },
        Some((active, active_auc)) if force => Promotion::Forced { active, active_auc },
        Some((active, active_auc)) => Promotion::Worse { active, active_auc },
    }
}

/// When the active model last scored customers. One scoring writes one time
/// for all its rows, so any row tells.
pub async fn last_scored_at(db: &DatabaseConnection) -> Result<Option<DateTime<Utc>>, DbErr> {
    let Some(active) = active(db).await? else { return Ok(None) };
    let row = crate::db::entities::score::Entity::find()
        .filter(crate::db::entities::score::Column::ModelId.eq(active.id))
        .one(db)
        .await?;
    Ok(row.map(|score| score.scored_at))
}

/// Records a newly saved model (inactive).
pub async fn register(
    db: &DatabaseConnection,
    file: &ModelFile,
    file_name: &str,
    now: DateTime<Utc>,
) -> Result<i64, DbErr> {
    let row = model::ActiveModel {
        name: Set(file.name.clone()),
        algorithm: Set(file.algorithm.name().to_owned()),
        file_name: Set(file_name.to_owned()),
        trained_at: Set(file.trained_at),
        validation_auc: Set(Some(file.metrics.roc_auc)),
        active: Set(false),
        created_at: Set(now),
        ..Default::default()
    };
    Ok(row.insert(db).await?.id)
}

/// How a model was made active, as `model_activations.how` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// After training: at least as good as the active model, or there was none.
    Promoted,
    /// After training, worse than the active model: `train --force`.
    Forced,
    /// `patron model activate`.
    ByHand,
}

impl Activation {
    pub fn as_str(self) -> &'static str {
        match self {
            Activation::Promoted => "promoted",
            Activation::Forced => "forced",
            Activation::ByHand => "by hand",
        }
    }

    /// How a promotion that activates records itself.
    pub fn of(promotion: &Promotion) -> Activation {
        match promotion {
            Promotion::Forced { .. } => Activation::Forced,
            _ => Activation::Promoted,
        }
    }
}

/// Makes `id` the only active model, and records when and how.
pub async fn activate(db: &DatabaseConnection, id: i64, how: Activation, now: DateTime<Utc>) -> Result<(), DbErr> {
    let txn = db.begin().await?;
    deactivate_all(&txn).await?;
    model::Entity::update_many()
        .col_expr(model::Column::Active, Expr::value(true))
        .filter(model::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    let record = Query::insert()
        .into_table(ACTIVATIONS)
        .columns(["model_id", "how", "activated_at"])
        .values_panic([id.into(), how.as_str().into(), now.into()])
        .to_owned();
    txn.execute(&record).await?;
    txn.commit().await
}

const ACTIVATIONS: &str = "model_activations";

/// One activation of a model, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Activated {
    pub model: String,
    pub how: String,
    pub at: DateTime<Utc>,
}

/// Every activation recorded, newest first (models activated before the
/// record was kept have none).
pub async fn activations(db: &DatabaseConnection) -> Result<Vec<Activated>, DbErr> {
    let select = Query::select()
        .column((Alias::new("models"), Alias::new("name")))
        .columns([(Alias::new(ACTIVATIONS), Alias::new("how")), (Alias::new(ACTIVATIONS), Alias::new("activated_at"))])
        .from(ACTIVATIONS)
        .inner_join(
            "models",
            Expr::col((Alias::new("models"), Alias::new("id")))
                .equals((Alias::new(ACTIVATIONS), Alias::new("model_id"))),
        )
        .order_by((Alias::new(ACTIVATIONS), Alias::new("activated_at")), Order::Desc)
        .order_by((Alias::new(ACTIVATIONS), Alias::new("id")), Order::Desc)
        .to_owned();
    db.query_all(&select)
        .await?
        .iter()
        .map(|row| {
            Ok(Activated {
                model: row.try_get_by_index(0)?,
                how: row.try_get_by_index(1)?,
                at: row.try_get_by_index(2)?,
            })
        })
        .collect()
}

async fn deactivate_all(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    model::Entity::update_many()
        .col_expr(model::Column::Active, Expr::value(false))
        .filter(model::Column::Active.eq(true))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn active<C: ConnectionTrait>(db: &C) -> Result<Option<model::Model>, DbErr> {
    find_active().one(db).await
}

/// The active model, as a query (also run through `db::engine`).
pub fn find_active() -> Select<model::Entity> {
    model::Entity::find().filter(model::Column::Active.eq(true))
}

pub async fn find(db: &DatabaseConnection, name: &str) -> Result<Option<model::Model>, DbErr> {
    model::Entity::find().filter(model::Column::Name.eq(name)).one(db).await
}

/// All models, newest first.
pub async fn list(db: &DatabaseConnection) -> Result<Vec<model::Model>, DbErr> {
    model::Entity::find().order_by_desc(model::Column::TrainedAt).order_by_desc(model::Column::Id).all(db).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_as_good_as_the_active_one_is_promoted_and_a_worse_one_only_when_forced() {
        let active = || Some(("old".to_owned(), 0.75));
        assert_eq!(promotion(0.70, None, false), Promotion::NoActiveModel);
        assert!(promotion(0.75, active(), false).activates());
        assert!(promotion(0.80, active(), false).activates());
        assert_eq!(promotion(0.74, active(), false), Promotion::Worse { active: "old".into(), active_auc: 0.75 });
        assert!(!promotion(0.74, active(), false).activates());
        assert_eq!(promotion(0.74, active(), true), Promotion::Forced { active: "old".into(), active_auc: 0.75 });
        assert!(promotion(0.74, active(), true).activates());
    }
}
