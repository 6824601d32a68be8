//! The report charts as SVG documents, drawn with plotters: bars (with
//! optional 95% whiskers), a line chart and a heat map. Every chart has a
//! title and a description on both axes.

use std::io;

use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentValue;

use crate::model::report::plot_error;
use plotters::prelude::*;

const SIZE: (u32, u32) = (720, 460);
pub const BLUE: RGBColor = RGBColor(31, 119, 180);
pub const GREY: RGBColor = RGBColor(150, 150, 150);
const WHISKER: RGBColor = RGBColor(40, 40, 40);

/// One bar: its label under the axis, its height, its colour and an optional interval.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub color: RGBColor,
    pub interval: Option<(f64, f64)>,
}

pub struct Axes<'a> {
    pub title: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
}

/// A bar chart; the value axis always includes zero, and negative bars hang below it.
pub fn bars(axes: &Axes, bars: &[Bar], decimals: usize) -> io::Result<String> {
    let (low, high) = value_range(bars);
    let n = bars.len().max(1);
    draw_svg(|root| {
        let mut chart = titled(root, axes, 50, 70).build_cartesian_2d(segments(n), low..high).map_err(plot_error)?;
        let label = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => bars.get(*i).map(|b| b.label.clone()).unwrap_or_default(),
            _ => String::new(),
        };
        let tick = |v: &f64| format!("{v:.decimals$}");
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n + 1)
            .x_label_formatter(&label)
            .y_label_formatter(&tick)
            .x_desc(axes.x_desc)
            .y_desc(axes.y_desc)
            .draw()
            .map_err(plot_error)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                let mut rect = Rectangle::new(
                    [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), b.value)],
                    b.color.filled(),
                );
                rect.set_margin(0, 0, 12, 12);
                rect
            }))
            .map_err(plot_error)?;
        let whiskers = bars.iter().enumerate().filter_map(|(i, b)| {
            b.interval.map(|(lo, hi)| {
                PathElement::new(
                    [(SegmentValue::CenterOf(i), lo), (SegmentValue::CenterOf(i), hi)],
                    WHISKER.stroke_width(2),
                )
            })
        });
        chart.draw_series(whiskers).map_err(plot_error)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                [(SegmentValue::Exact(0), 0.0), (SegmentValue::Exact(n), 0.0)],
                BLACK.stroke_width(1),
            )))
            .map_err(plot_error)?;
        Ok(())
    })
}

/// The value axis: zero, every bar and every whisker end, with 10% headroom.
fn value_range(bars: &[Bar]) -> (f64, f64) {
    let values = bars.iter().flat_map(|b| [Some(b.value), b.interval.map(|i| i.0), b.interval.map(|i| i.1)]).flatten();
    let (low, high) = values.filter(|v| v.is_finite()).fold((0.0_f64, 0.0_f64), |(l, h), v| (l.min(v), h.max(v)));
    if high - low < 1e-9 {
        // Nothing but zeros: an axis from 0 to 1 rather than one of rounding noise.
        return (0.0, 1.0);
    }
    let span = high - low;
    let low = if low < 0.0 { low - span * 0.1 } else { 0.0 };
    let high = if high > 0.0 { high + span * 0.1 } else { span * 0.1 };
    (low, high)
}

/// A line from (0, 0) to (100, 100) in percent, with the diagonal of an even spread for reference.
pub fn share_curve(axes: &Axes, points: &[(f64, f64)], mark_x: f64) -> io::Result<String> {
    draw_svg(|root| {
        let mut chart = titled(root, axes, 45, 60).build_cartesian_2d(0.0..100.0, 0.0..100.0).map_err(plot_error)?;
        let tick = |v: &f64| format!("{v:.0}");
        chart
            .configure_mesh()
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .x_desc(axes.x_desc)
            .y_desc(axes.y_desc)
            .draw()
            .map_err(plot_error)?;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), BLUE.stroke_width(2)))
            .map_err(plot_error)?
            .label("Customers by value")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), (100.0, 100.0)], GREY.stroke_width(2)))
            .map_err(plot_error)?
            .label("Every customer worth the same")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], GREY.stroke_width(2)));
        if let Some(&(x, y)) = points.iter().find(|p| (p.0 - mark_x).abs() < 1e-9) {
            chart.draw_series(std::iter::once(Circle::new((x, y), 5, BLUE.filled()))).map_err(plot_error)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("top {x:.0}%: {y:.1}% of revenue"),
                    (x + 2.0, y - 6.0),
                    ("sans-serif", 15),
                )))
                .map_err(plot_error)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
        Ok(())
    })
}

/// Counts in equal steps of time (oldest first) as a filled line; `label`
/// names the step at each of `ticks` evenly spaced marks.
pub fn timeline(axes: &Axes, counts: &[u64], ticks: usize, label: &dyn Fn(usize) -> String) -> io::Result<String> {
    let n = counts.len().max(2);
    let high = counts.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.1;
    draw_svg(|root| {
        let mut chart = titled(root, axes, 50, 70).build_cartesian_2d(0..n - 1, 0.0..high).map_err(plot_error)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(ticks + 1)
            .x_label_formatter(&|i: &usize| label(*i))
            .y_label_formatter(&|v: &f64| format!("{v:.0}"))
            .x_desc(axes.x_desc)
            .y_desc(axes.y_desc)
            .draw()
            .map_err(plot_error)?;
        let points = counts.iter().enumerate().map(|(i, &c)| (i, c as f64));
        chart.draw_series(AreaSeries::new(points, 0.0, BLUE.mix(0.25)).border_style(BLUE)).map_err(plot_error)?;
        Ok(())
    })
}

/// A grid of cells, rows top to bottom, each shaded by its count and labelled with its text.
pub fn heat_map(axes: &Axes, columns: &[&str], rows: &[&str], cells: &[(u64, String)]) -> io::Result<String> {
    let max = cells.iter().map(|c| c.0).max().unwrap_or(0).max(1) as f64;
    let (nc, nr) = (columns.len(), rows.len());
    draw_svg(|root| {
        let mut chart =
            titled(root, axes, 50, 110).build_cartesian_2d(segments(nc), segments(nr)).map_err(plot_error)?;
        let column = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => columns.get(*i).map(|s| (*s).to_owned()).unwrap_or_default(),
            _ => String::new(),
        };
        // Row 0 is drawn at the top.
        let row = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) if *i < nr => rows[nr - 1 - *i].to_owned(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(nc + 1)
            .y_labels(nr + 1)
            .x_label_formatter(&column)
            .y_label_formatter(&row)
            .x_desc(axes.x_desc)
            .y_desc(axes.y_desc)
            .draw()
            .map_err(plot_error)?;
        let at = |i: usize| (i % nc, nr - 1 - i / nc);
        chart
            .draw_series(cells.iter().enumerate().map(|(i, (count, _))| {
                let (x, y) = at(i);
                let shade = 0.08 + 0.82 * (*count as f64 / max);
                let mut rect = Rectangle::new(
                    [
                        (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
                    ],
                    BLUE.mix(shade).filled(),
                );
                rect.set_margin(1, 1, 1, 1);
                rect
            }))
            .map_err(plot_error)?;
        chart
            .draw_series(cells.iter().enumerate().map(|(i, (_, text))| {
                let (x, y) = at(i);
                let style =
                    TextStyle::from(("sans-serif", 14).into_font()).pos(plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Center,
                        plotters::style::text_anchor::VPos::Center,
                    ));
                Text::new(text.clone(), (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)), style)
            }))
            .map_err(plot_error)?;
        Ok(())
    })
}

/// A chart builder with the title of `axes` and room for the axis labels
/// (`x_room` under the chart, `y_room` left of it), as every chart here starts.
fn titled<'a, 'b>(root: &'a Svg<'b>, axes: &Axes, x_room: u32, y_room: u32) -> ChartBuilder<'a, 'a, SVGBackend<'b>> {
    let mut builder = ChartBuilder::on(root);
    builder.caption(axes.title, ("sans-serif", 20)).margin(15).x_label_area_size(x_room).y_label_area_size(y_room);
    builder
}

type Svg<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Draws on a white canvas of the report charts' size and returns the SVG document.
fn draw_svg(draw: impl FnOnce(&Svg) -> io::Result<()>) -> io::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        draw(&root)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// An axis of `n` equal segments (0 to n-1). plotters counts both ends of an
/// integer range, so `0..n` would draw an empty segment after the last; with
/// a single segment it gets two, as `0..0` has no width.
fn segments(n: usize) -> plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordusize> {
    (0..n.max(2) - 1).into_segmented()
}
