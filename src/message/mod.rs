//! What a message says: the templates of a campaign, the layouts and
//! partials they use, the variables they may use, and the bounds on
//! rendering them. (Sending lives in `delivery`.)

pub mod context;
pub mod library;
pub mod limits;
pub mod template;
pub mod well_formed;

pub use library::Library;
pub use limits::RenderError;
pub use template::{Part, TemplateError, Templates};
