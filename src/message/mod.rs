//! What a message says: the templates of a campaign and the variables they
//! may use, and the bounds on rendering them. (Sending lives in `delivery`.)

pub mod context;
pub mod limits;
pub mod template;
pub mod well_formed;

pub use limits::RenderError;
pub use template::{Part, TemplateError, Templates};
