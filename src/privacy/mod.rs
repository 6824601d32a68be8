//! The rights of the people in the database: what patron holds about a
//! person ([`dossier`], the GDPR's access and portability answer), erasing
//! them ([`erase`]), and forgetting old message details ([`retention`]).

pub mod dossier;
pub mod erase;
pub mod retention;

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use crate::db::entities::customer;

/// The customer with `external_id` (as imported), unless erased.
pub async fn find_customer<C: ConnectionTrait>(db: &C, external_id: &str) -> Result<Option<customer::Model>, DbErr> {
    customer::Entity::find()
        .filter(customer::Column::ExternalId.eq(external_id))
        .filter(Expr::col(customer::Column::ErasedAt).is_null())
        .one(db)
        .await
}
