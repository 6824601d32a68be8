//! What a message says: the templates of a campaign and the variables they
//! may use. (Sending lives in `delivery`.)

pub mod context;
pub mod template;

pub use template::{Part, TemplateError, Templates};
