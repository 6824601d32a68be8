//! patron: database-marketing automation. A customer and purchase database,
//! propensity scores, campaigns and loyalty mail; see ARCHITECTURE.md.

pub mod campaign;
pub mod cli;
pub mod config;
pub mod consent;
pub mod daemon;
pub mod db;
pub mod delivery;
pub mod dkim;
pub mod duration;
pub mod failure;
pub mod features;
pub mod feed;
pub mod feedback;
pub mod generate;
pub mod http;
pub mod import;
pub mod logging;
pub mod loyalty;
pub mod message;
pub mod model;
pub mod privacy;
pub mod report;
pub mod schedule;
pub mod scoring;
pub mod segment;
pub mod status;
pub mod ui;
pub mod work;
