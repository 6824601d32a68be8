//! Why training can fail: the data (too little, no window) or the fit.

/// Fewest buyers (and non-buyers) a window needs for a model to mean anything.
pub const MIN_CLASS_SIZE: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(
        "not enough history to train: a {horizon}-day training window and a {horizon}-day validation window must fit \
         before {as_of}, but the first order is on {first}"
    )]
    NoWindow { as_of: String, horizon: i64, first: String },
    #[error("there are no orders to learn from; import orders first")]
    NoOrders,
    #[error(
        "too little data to train: the {window} window ({from} to {to}) has {buyers} buyers and {others} non-buyers; \
         at least {MIN_CLASS_SIZE} of each are needed (try a longer --horizon or an earlier --as-of)"
    )]
    TooLittle { window: &'static str, from: String, to: String, buyers: usize, others: usize },
    #[error("the {0} model could not be fitted: {1}")]
    Fit(&'static str, String),
    #[error("the {0} model gives non-finite scores on the validation window; it was not saved")]
    NotFinite(&'static str),
}

impl crate::failure::Failure for TrainError {
    /// The data or the request is at fault, or the machine.
    fn fault(&self) -> crate::failure::Fault {
        let input = matches!(self, TrainError::NoWindow { .. } | TrainError::NoOrders | TrainError::TooLittle { .. });
        crate::failure::Fault::input_if(input)
    }
}
