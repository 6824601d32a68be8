//! Campaigns: the files marketers write ([`spec`]), the set of them
//! ([`catalog`]), when they fire ([`crate::schedule`], [`scheduler`]) and who each
//! run reaches ([`plan`]), the hours its messages may go out ([`window`]),
//! how an edit changes that ([`diff`]), and whether its data is fresh enough
//! to plan on ([`freshness`]).

pub mod catalog;
pub mod diff;
pub mod freshness;
pub mod plan;
pub mod scheduler;
pub mod spec;
pub mod window;
pub mod winner;

pub use catalog::Catalog;
pub use spec::{Campaign, Diagnostic, Kind};
