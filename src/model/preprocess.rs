//! Turning raw inputs into what a model fits on: a log transform for skewed
//! counts, amounts and durations, missing values filled with the training
//! mean, and standardization. Fitted on the training rows and stored in the
//! model file, so that scoring applies exactly the same steps.

use serde::{Deserialize, Serialize};

use super::examples::Examples;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    Identity,
    /// `ln(1 + x)` for quantities that are never negative and have long tails.
    Log1p,
    /// `sign(x) ln(1 + |x|)` for long-tailed quantities that can be negative.
    SignedLog1p,
}

impl Transform {
    /// The transform for an input, by its name.
    pub fn for_input(name: &str) -> Transform {
        match name {
            "spend_trend" | "p_alive" | "p_purchase_within_horizon" => Transform::Identity,
            "loyalty_points" => Transform::SignedLog1p,
            _ => Transform::Log1p,
        }
    }

    fn apply(self, x: f64) -> f64 {
        match self {
            Transform::Identity => x,
            Transform::Log1p => x.max(0.0).ln_1p(),
            Transform::SignedLog1p => x.signum() * x.abs().ln_1p(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnScaling {
    pub feature: String,
    pub transform: Transform,
    /// Used for a missing value (after the transform).
    pub fill: f64,
    /// Transformed values are clipped to the range seen in training.
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub std: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Preprocessor {
    pub columns: Vec<ColumnScaling>,
}

impl Preprocessor {
    /// Fits the scaling of every input column on the training rows.
    pub fn fit(names: &[&str], rows: &Examples) -> Preprocessor {
        let columns =
            names.iter().enumerate().map(|(i, name)| fit_column(name, rows.rows().map(|row| Some(row[i])))).collect();
        Preprocessor { columns }
    }

    /// Writes the scaled `inputs` into `out` (resized to fit); a NaN input is missing.
    pub fn apply(&self, inputs: &[f64], out: &mut Vec<f64>) {
        self.apply_values(inputs.iter().copied(), out);
    }

    /// [`Preprocessor::apply`] for inputs as features give them, `None` where missing.
    pub fn apply_options(&self, inputs: &[Option<f64>], out: &mut Vec<f64>) {
        self.apply_values(inputs.iter().map(|v| v.unwrap_or(f64::NAN)), out);
    }

    fn apply_values(&self, inputs: impl Iterator<Item = f64>, out: &mut Vec<f64>) {
        out.clear();
        out.extend(self.columns.iter().zip(inputs).map(|(c, x)| {
            let value = if x.is_finite() { c.transform.apply(x) } else { c.fill };
            (value.clamp(c.min, c.max) - c.mean) / c.std
        }));
    }
}

fn fit_column(name: &str, values: impl Iterator<Item = Option<f64>>) -> ColumnScaling {
    let transform = Transform::for_input(name);
    let present: Vec<Option<f64>> = values.map(|v| v.filter(|x| x.is_finite()).map(|x| transform.apply(x))).collect();
    let known: Vec<f64> = present.iter().flatten().copied().collect();
    let fill = if known.is_empty() { 0.0 } else { known.iter().sum::<f64>() / known.len() as f64 };
    let filled: Vec<f64> = present.iter().map(|v| v.unwrap_or(fill)).collect();
    let (min, max) = filled.iter().fold((fill, fill), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let mean = filled.iter().sum::<f64>() / filled.len().max(1) as f64;
    let variance = filled.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / filled.len().max(1) as f64;
    // A constant column carries no information: scale 1 keeps it at zero instead of NaN.
    let std = if variance > 1e-12 { variance.sqrt() } else { 1.0 };
    ColumnScaling { feature: name.to_owned(), transform, fill, min, max, mean, std }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_values_take_the_training_mean_and_constant_columns_stay_finite() {
        let rows = Examples {
            width: 2,
            inputs: vec![0.0, 5.0, std::f64::consts::E - 1.0, 5.0, f64::NAN, 5.0],
            labels: vec![false; 3],
        };
        let p = Preprocessor::fit(&["orders_total", "frequency"], &rows);
        // ln(1 + x): 0 and 1; the missing one is filled with their mean 0.5.
        assert_eq!(p.columns[0].fill, 0.5);
        let mut out = Vec::new();
        p.apply(&[f64::NAN, 5.0], &mut out);
        assert!(out.iter().all(|v| v.abs() < 1e-12), "{out:?}");
        p.apply(&[1000.0, f64::INFINITY], &mut out);
        // Clipped to the training maximum, 1, which is (1 - 0.5) / std above the mean.
        let std = (1.0f64 / 6.0).sqrt();
        assert!((out[0] - 0.5 / std).abs() < 1e-12);
        assert!(out[1].abs() < 1e-12);
    }
}
