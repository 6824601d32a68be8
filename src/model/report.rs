//! The model report a marketer reads: one self-contained HTML page (no
//! scripts, no external assets) plus three SVG charts, written to a folder
//! that can be zipped, mailed or served as static files.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::ModelFile;
use super::metrics::{CalibrationBin, Metrics};

/// What the report shows, already formatted where it is free text.
pub struct ReportInput<'a> {
    pub model_name: &'a str,
    pub algorithm: &'a str,
    /// Already formatted.
    pub trained_at: &'a str,
    /// e.g. "labels from 1997-01-01 to 1997-04-01", already formatted.
    pub training_window: &'a str,
    pub validation_window: &'a str,
    pub features: &'a [String],
    pub metrics: &'a Metrics,
    /// Whether this model is the one currently scoring customers.
    pub active: bool,
}

/// Calls `with` on the report input of `file` (the active model when `active`).
pub fn of_file<R>(file: &ModelFile, active: bool, with: impl FnOnce(&ReportInput) -> R) -> R {
    let trained_at = file.trained_at.format("%Y-%m-%d %H:%M UTC").to_string();
    let (training, validation) = (training_text(file), validation_text(file));
    with(&ReportInput {
        model_name: &file.name,
        algorithm: file.algorithm.name(),
        trained_at: &trained_at,
        training_window: &training,
        validation_window: &validation,
        features: &file.features,
        metrics: &file.metrics,
        active,
    })
}

/// Writes index.html, roc.svg, gains.svg and calibration.svg into `dir` (created if missing); returns the path of index.html.
///
/// # Errors
/// Any failure to create `dir` or write a file; chart drawing failures are
/// reported as [`io::ErrorKind::Other`].
pub fn write_report(dir: &Path, input: &ReportInput) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let index = dir.join("index.html");
    let body = report_body(input, &Charts::Files(dir))?;
    let name = escape(input.model_name);
    fs::write(
        &index,
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <title>Model report: {name}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n\
             <h1>Model report: {name}</h1>\n{body}</body>\n</html>\n"
        ),
    )?;
    Ok(index)
}

/// The report's content below its title, its charts where `charts` puts them.
pub fn report_body(input: &ReportInput, charts: &Charts) -> io::Result<String> {
    Ok([
        summary_section(input),
        metrics_section(input.metrics),
        charts_section(input.metrics, charts)?,
        calibration_section(&input.metrics.calibration),
        features_section(input.features),
    ]
    .concat())
}

/// How the model was trained, in a sentence.
pub fn training_text(m: &ModelFile) -> String {
    let first = m.training.cutoffs.last().map_or(String::new(), |c| c.format("%Y-%m-%d").to_string());
    format!(
        "{} cutoff(s) from {first}, each labelled by purchases in the next {} days; {} customers, {} buyers (each buyer counted {}×)",
        m.training.cutoffs.len(),
        m.training.horizon_days,
        m.training.rows,
        m.training.buyers,
        m.training.buyer_weight
    )
}

/// What the model was validated on, in a sentence.
pub fn validation_text(m: &ModelFile) -> String {
    let end = m.validation.cutoff + chrono::TimeDelta::days(m.validation.horizon_days);
    format!(
        "customers as of {}, labelled by purchases until {}; {} customers, {} buyers",
        m.validation.cutoff.format("%Y-%m-%d"),
        end.format("%Y-%m-%d"),
        m.validation.rows,
        m.validation.buyers
    )
}

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

// One formatter per kind of figure, shared by the page and the charts so the
// same number always reads the same way.

fn format_auc(auc: f64) -> String {
    format!("{auc:.3}")
}

fn format_percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

fn format_lift(lift: f64) -> String {
    format!("{lift:.2}×")
}

fn format_loss(loss: f64) -> String {
    format!("{loss:.4}")
}

// ---------------------------------------------------------------- charts

const CHART_SIZE: (u32, u32) = (640, 480);
const MODEL_COLOR: RGBColor = RGBColor(31, 119, 180);
const REFERENCE_COLOR: RGBColor = RGBColor(150, 150, 150);

/// One line on a chart.
struct Series {
    label: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
    /// Draw a dot at every point as well as the line.
    markers: bool,
}

/// A square chart whose axes both run from 0 to `max`.
struct Chart<'a> {
    caption: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    max: f64,
    /// Decimals on the axis tick labels: rates read 0.3, percentages 30.
    tick_decimals: usize,
    series: Vec<Series>,
}

fn roc_svg(m: &Metrics) -> io::Result<String> {
    render_chart(&Chart {
        caption: &format!("ROC curve (AUC {})", format_auc(m.roc_auc)),
        x_desc: "False positive rate (non-buyers selected)",
        y_desc: "True positive rate (buyers selected)",
        max: 1.0,
        tick_decimals: 1,
        series: vec![
            model_series(m.roc_curve.iter().map(|&[x, y]| (x, y)).collect(), false),
            diagonal("Random (AUC 0.5)", 1.0),
        ],
    })
}

fn gains_svg(m: &Metrics) -> io::Result<String> {
    let points = m.gains_curve.iter().map(|&[x, y]| (x * 100.0, y * 100.0));
    render_chart(&Chart {
        caption: "Buyers reached by contacting the top x% of customers",
        x_desc: "Customers contacted, highest scores first (%)",
        y_desc: "Buyers reached (%)",
        max: 100.0,
        tick_decimals: 0,
        series: vec![model_series(points.collect(), false), diagonal("Random selection", 100.0)],
    })
}

fn calibration_svg(m: &Metrics) -> io::Result<String> {
    let points: Vec<(f64, f64)> = m.calibration.iter().map(|b| (b.mean_score * 100.0, b.buyer_rate * 100.0)).collect();
    let max = calibration_axis_max(&points);
    render_chart(&Chart {
        caption: "Predicted vs actual buyer rate by decile",
        x_desc: "Mean predicted score (%)",
        y_desc: "Actual buyer rate (%)",
        max,
        // Narrow axes get half-percent ticks.
        tick_decimals: usize::from(max <= 10.0),
        series: vec![model_series(points, true), diagonal("Perfect calibration", max)],
    })
}

/// Propensity scores are often a few percent, so the axis is fitted to the
/// data (rounded up to a multiple of 5%) instead of always running to 100%.
fn calibration_axis_max(points: &[(f64, f64)]) -> f64 {
    let largest = points.iter().flat_map(|&(x, y)| [x, y]).filter(|v| v.is_finite()).fold(0.0, f64::max);
    ((largest * 1.1 / 5.0).ceil() * 5.0).clamp(5.0, 100.0)
}

fn model_series(points: Vec<(f64, f64)>, markers: bool) -> Series {
    Series { label: "Model", color: MODEL_COLOR, points, markers }
}

fn diagonal(label: &'static str, max: f64) -> Series {
    Series { label, color: REFERENCE_COLOR, points: vec![(0.0, 0.0), (max, max)], markers: false }
}

/// Draws `chart` as an SVG document.
fn render_chart(chart: &Chart) -> io::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, CHART_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut ctx = ChartBuilder::on(&root)
            .caption(chart.caption, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..chart.max, 0.0..chart.max)
            .map_err(plot_error)?;
        let decimals = chart.tick_decimals;
        let tick = |v: &f64| format!("{v:.decimals$}");
        ctx.configure_mesh()
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .x_desc(chart.x_desc)
            .y_desc(chart.y_desc)
            .draw()
            .map_err(plot_error)?;
        for series in &chart.series {
            let color = series.color;
            ctx.draw_series(LineSeries::new(series.points.iter().copied(), color.stroke_width(2)))
                .map_err(plot_error)?
                .label(series.label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
            if series.markers {
                let dots = series.points.iter().map(|&p| Circle::new(p, 4, color.filled()));
                ctx.draw_series(dots).map_err(plot_error)?;
            }
        }
        ctx.configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// A plotters error as an I/O error: drawing into a string fails only like writing.
pub(crate) fn plot_error<E: std::error::Error + Send + Sync + 'static>(error: E) -> io::Error {
    io::Error::other(error)
}

// ------------------------------------------------------------------ page

pub(crate) const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222;line-height:1.5}
h1{margin-bottom:.2rem}
table{border-collapse:collapse;margin:1rem 0}
th,td{border:1px solid #ccc;padding:.35rem .7rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}
td.num{text-align:right;white-space:nowrap}
.status{display:inline-block;padding:.15rem .6rem;border-radius:1rem;font-weight:600}
.active{background:#dff3e0;color:#1d6b25}
.inactive{background:#eee;color:#555}
figure{margin:1rem 0}
img{max-width:100%;border:1px solid #ddd}
figcaption{color:#555;font-size:.95rem}
";

fn summary_section(input: &ReportInput) -> String {
    let status = if input.active {
        "<p><span class=\"status active\">Active</span> This model is the one scoring customers now.</p>"
    } else {
        "<p><span class=\"status inactive\">Not active</span> This model is kept for comparison; it is not scoring customers.</p>"
    };
    let m = input.metrics;
    let rows = [
        ("Algorithm", escape(input.algorithm)),
        ("Trained at", escape(input.trained_at)),
        ("Training data", escape(input.training_window)),
        ("Validation data", escape(input.validation_window)),
        ("Customers in validation", m.rows.to_string()),
        ("Buyers among them", m.positives.to_string()),
    ];
    let rows: String =
        rows.iter().map(|(label, value)| format!("<tr><th>{label}</th><td>{value}</td></tr>\n")).collect();
    format!(
        "{status}\n<table>\n{rows}</table>\n\
         <p>All figures below are measured on the validation customers, which the model \
         did not see while it was trained.</p>\n"
    )
}

fn metrics_section(m: &Metrics) -> String {
    let rows = [
        (
            "AUC",
            format_auc(m.roc_auc),
            "How well the scores put buyers ahead of non-buyers: the chance that a randomly \
             picked buyer scores higher than a randomly picked non-buyer. 0.5 means no better \
             than a coin toss; 1.0 means every buyer is ranked above every non-buyer."
                .to_owned(),
        ),
        ("Top-decile lift", format_lift(m.top_decile_lift), lift_explanation(m.top_decile_lift)),
        (
            "Base rate",
            format_percent(m.base_rate),
            "The share of customers who bought: what a random selection would hit.".to_owned(),
        ),
        ("Log loss", format_loss(m.log_loss), log_loss_explanation(m.base_rate)),
        ("Brier score", format_loss(m.brier), brier_explanation(m.base_rate)),
    ];
    let rows: String = rows
        .iter()
        .map(|(metric, value, meaning)| {
            format!("<tr><th>{metric}</th><td class=\"num\">{value}</td><td>{meaning}</td></tr>\n")
        })
        .collect();
    format!(
        "<h2>How good is the model?</h2>\n<table>\n\
         <tr><th>Measure</th><th>Value</th><th>What it means</th></tr>\n{rows}</table>\n"
    )
}

fn lift_explanation(lift: f64) -> String {
    format!(
        "How many more buyers the best-scored customers hold than a random pick: here the 10% \
         highest-scored customers contain {} as many buyers as a random 10%. A lift of 3 would \
         mean the top 10% contain 3× as many buyers as a random 10%; 1 means no better than \
         random. Customers with equal scores are kept together, so the top group can hold a \
         little more than 10%.",
        format_lift(lift)
    )
}

/// Explains log loss, giving the loss of scoring everybody at the base rate as
/// the bar a model must beat.
fn log_loss_explanation(base_rate: f64) -> String {
    let p = base_rate;
    let baseline = if p > 0.0 && p < 1.0 {
        let loss = -(p * p.ln() + (1.0 - p) * (1.0 - p).ln());
        format!(" Giving every customer the base rate as score would get {}.", format_loss(loss))
    } else {
        String::new()
    };
    format!(
        "How far the scores are from what happened, punishing confident mistakes hardest. \
         Lower is better.{baseline}"
    )
}

fn brier_explanation(base_rate: f64) -> String {
    let p = base_rate;
    format!(
        "The average squared gap between the score and the outcome (1 = bought, 0 = did not). \
         Lower is better; giving every customer the base rate as score would get {}.",
        format_loss(p * (1.0 - p))
    )
}

fn charts_section(m: &Metrics, charts: &Charts) -> io::Result<String> {
    let reach = m
        .gains_curve
        .iter()
        .find(|p| (p[0] - 0.2).abs() < 1e-9)
        .map(|p| format!(" Here, contacting the top 20% of customers reaches {} of buyers.", format_percent(p[1])))
        .unwrap_or_default();
    let gains = charts.figure(
        "gains.svg",
        &gains_svg(m)?,
        "Cumulative gains chart",
        &format!(
            "Cumulative gains: the share of all buyers you reach by contacting the \
             best-scored customers first. The grey diagonal is a random selection; the higher the \
             blue line above it, the better.{reach}"
        ),
    )?;
    let roc = charts.figure(
        "roc.svg",
        &roc_svg(m)?,
        "ROC curve",
        &format!(
            "ROC curve (AUC {}): buyers found against non-buyers wrongly selected, as \
             the score cut-off is lowered. The area under it is the AUC.",
            format_auc(m.roc_auc)
        ),
    )?;
    let calibration = charts.figure(
        "calibration.svg",
        &calibration_svg(m)?,
        "Calibration chart",
        "Calibration: for each decile, the average score against the share who \
         actually bought. Points on the grey diagonal mean the scores can be read as buying \
         probabilities.",
    )?;
    Ok(format!("<h2>Charts</h2>\n{gains}{roc}{calibration}"))
}

fn calibration_section(bins: &[CalibrationBin]) -> String {
    let rows: String = bins
        .iter()
        .map(|b| {
            format!(
                "<tr><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
                b.decile,
                b.customers,
                format_percent(b.mean_score),
                format_percent(b.buyer_rate)
            )
        })
        .collect();
    format!(
        "<h2>Calibration by decile</h2>\n\
         <p>Customers are split into ten groups by score, decile 1 being the 10% with the \
         highest scores. If the model is well calibrated, the mean predicted score and the \
         actual buyer rate of each group are close: a score of 20% then really means about 2 in \
         10 buy. Deciles with no customers (possible with very few customers or many equal \
         scores) are left out.</p>\n<table>\n<tr><th>Decile</th><th>Customers</th>\
         <th>Mean predicted</th><th>Actual buyer rate</th></tr>\n{rows}</table>\n"
    )
}

fn features_section(features: &[String]) -> String {
    if features.is_empty() {
        return "<h2>Features used</h2>\n<p>No features were recorded for this model.</p>\n".to_owned();
    }
    let items: String = features.iter().map(|f| format!("<li>{}</li>\n", escape(f))).collect();
    format!(
        "<h2>Features used</h2>\n<p>The {} customer attributes the model scores on:</p>\n\
         <ul>\n{items}</ul>\n",
        features.len()
    )
}

/// Where a page's charts go: into files beside the page, which links them
/// (the report commands, whose folder can be zipped or mailed), or inline
/// into the page (the dashboard, which serves one document and no files).
pub enum Charts<'a> {
    Files(&'a Path),
    Inline,
}

impl Charts<'_> {
    /// The chart `svg` as a figure with its caption; as a file, named `file`.
    pub fn figure(&self, file: &str, svg: &str, alt: &str, caption: &str) -> io::Result<String> {
        match self {
            Charts::Files(dir) => {
                fs::write(dir.join(file), svg)?;
                Ok(format!(
                    "<figure><img src=\"{}\" alt=\"{}\"><figcaption>{caption}</figcaption></figure>\n",
                    escape(file),
                    escape(alt)
                ))
            }
            Charts::Inline => Ok(format!(
                "<figure role=\"img\" aria-label=\"{}\">{svg}<figcaption>{caption}</figcaption></figure>\n",
                escape(alt)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::metrics::evaluate;

    fn sample_metrics() -> Metrics {
        let scores: Vec<f64> = (0..40).map(|i| f64::from(i) / 40.0).collect();
        let labels: Vec<bool> = (0..40).map(|i| i % 3 == 0 || i > 32).collect();
        evaluate(&scores, &labels).unwrap()
    }

    #[test]
    fn escape_neutralises_html_special_characters() {
        assert_eq!(escape(r#"<b>"Tom's" & co</b>"#), "&lt;b&gt;&quot;Tom&#39;s&quot; &amp; co&lt;/b&gt;");
        assert_eq!(escape("plain text é"), "plain text é");
    }

    #[test]
    fn report_writes_the_page_and_three_charts() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("reports/model-7");
        let metrics = sample_metrics();
        let features = ["recency_days".to_owned(), "spend <90d> & more".to_owned()];
        let input = ReportInput {
            model_name: "Spring <&> promo",
            algorithm: "logistic regression",
            trained_at: "1997-05-02 10:00 UTC",
            training_window: "labels from 1997-01-01 to 1997-04-01",
            validation_window: "labels from 1997-04-01 to 1997-05-01",
            features: &features,
            metrics: &metrics,
            active: true,
        };

        let index = write_report(&out, &input).unwrap();

        assert_eq!(index, out.join("index.html"));
        let html = fs::read_to_string(&index).unwrap();
        assert!(html.contains("Spring &lt;&amp;&gt; promo"));
        assert!(!html.contains("Spring <&>"));
        assert!(html.contains("spend &lt;90d&gt; &amp; more"));
        assert!(html.contains(&format_auc(metrics.roc_auc)));
        for img in ["roc.svg", "gains.svg", "calibration.svg"] {
            assert!(html.contains(&format!("<img src=\"{img}\"")), "{img} not linked");
            let svg = fs::read_to_string(out.join(img)).unwrap();
            assert!(svg.contains("<svg"), "{img} is not SVG");
            assert!(svg.contains("<polyline") || svg.contains("<path"), "{img} has no line");
        }
        let roc = fs::read_to_string(out.join("roc.svg")).unwrap();
        assert!(roc.contains(&format!("AUC {}", format_auc(metrics.roc_auc))));
    }

    #[test]
    fn the_inline_page_is_self_contained_with_its_three_charts() {
        let metrics = sample_metrics();
        let input = ReportInput {
            model_name: "m",
            algorithm: "a",
            trained_at: "t",
            training_window: "w",
            validation_window: "v",
            features: &[],
            metrics: &metrics,
            active: false,
        };
        let html = report_body(&input, &Charts::Inline).unwrap();
        assert!(!html.contains("<script"));
        let links = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        assert!(!links.contains("http://") && !links.contains("https://") && !html.contains("<img"));
        assert_eq!(html.matches("<svg").count(), 3);
        assert!(html.contains("Not active"));
    }

    #[test]
    fn calibration_axis_fits_low_propensities() {
        // Largest value 3.2% → 3.52% with headroom → next multiple of 5.
        assert_eq!(calibration_axis_max(&[(1.0, 0.5), (3.2, 2.0)]), 5.0);
        assert_eq!(calibration_axis_max(&[(40.0, 61.0)]), 70.0);
        assert_eq!(calibration_axis_max(&[]), 5.0);
    }
}
