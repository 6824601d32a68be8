//! sea-orm entities, one module per table. The migrations define the schema;
//! these mirror it for typed queries.

pub mod campaign_run;
pub mod customer;
pub mod feature_snapshot;
pub mod interaction;
pub mod loyalty_account;
pub mod loyalty_ledger;
pub mod loyalty_tier_change;
pub mod model;
pub mod order;
pub mod outbox;
pub mod score;
pub mod suppression;
