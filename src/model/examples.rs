//! The examples a model learns from: one row of inputs per customer and
//! cutoff, with whether they bought within the horizon after it.

/// Inputs and labels of the customers known at some cutoffs: row `i` is
/// `inputs[i * width..(i + 1) * width]`, NaN where a value is missing
/// (flat, to keep hundreds of thousands of rows small).
#[derive(Debug)]
pub struct Examples {
    pub width: usize,
    pub inputs: Vec<f64>,
    pub labels: Vec<bool>,
}

impl Examples {
    pub fn new(width: usize) -> Self {
        Examples { width, inputs: Vec::new(), labels: Vec::new() }
    }

    pub fn rows(&self) -> impl Iterator<Item = &[f64]> {
        self.inputs.chunks_exact(self.width)
    }

    pub(super) fn push(&mut self, inputs: &[Option<f64>], label: bool) {
        self.inputs.extend(inputs.iter().map(|v| v.unwrap_or(f64::NAN)));
        self.labels.push(label);
    }

    pub(super) fn buyers(&self) -> usize {
        self.labels.iter().filter(|&&b| b).count()
    }
}
