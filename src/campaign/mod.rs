//! Campaigns: the files marketers write ([`spec`]), the set of them
//! ([`catalog`]), when they fire ([`crate::schedule`], [`scheduler`]) and who each
//! run reaches ([`plan`]), the hours its messages may go out ([`window`]),
//! and how an edit changes that ([`diff`]).

pub mod catalog;
pub mod diff;
pub mod plan;
pub mod scheduler;
pub mod spec;
pub mod window;
pub mod winner;

pub use catalog::Catalog;
pub use spec::{Campaign, Diagnostic, Kind};
