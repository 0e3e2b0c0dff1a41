//! The report's plots: each a `Figure` (data, kept in results.json) drawn to SVG by plotters.

use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Vertical bars from 0 at each x.
    Bars,
    /// Points joined in order by a line.
    Line,
    /// Points only.
    Points,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    /// Written beside the point (None: unlabelled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub name: String,
    pub kind: Kind,
    pub points: Vec<Point>,
    /// A shaded band around the series: (x, low, high) per point (the calibration sweep's
    /// min-max over draws).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub band: Vec<[f64; 3]>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub id: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Logarithmic x axis (base 2 sizes).
    pub x_log: bool,
    pub series: Vec<Series>,
    /// Horizontal reference lines: (y, label).
    pub hlines: Vec<(f64, String)>,
}

pub const WIDTH: u32 = 780;
pub const HEIGHT: u32 = 380;

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

fn range(values: impl Iterator<Item = f64>, log: bool, zero: bool) -> (f64, f64) {
    let v: Vec<f64> = values.filter(|v| v.is_finite() && (!log || *v > 0.0)).collect();
    let mut lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let mut hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        return if log { (1.0, 2.0) } else { (0.0, 1.0) };
    }
    if zero {
        lo = lo.min(0.0);
        hi = hi.max(0.0);
    }
    if log {
        return (lo / 1.5, hi * 1.5);
    }
    let pad = ((hi - lo) * 0.08).max(1e-3 * hi.abs().max(1.0));
    (lo - pad, hi + pad)
}

impl Figure {
    /// Every plotted value: points, bands and reference lines.
    fn ys(&self) -> impl Iterator<Item = f64> + '_ {
        let pts = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.y));
        let band = self.series.iter().flat_map(|s| s.band.iter().flat_map(|b| [b[1], b[2]]));
        pts.chain(band).chain(self.hlines.iter().map(|h| h.0))
    }

    fn xs(&self) -> impl Iterator<Item = f64> + '_ {
        self.series.iter().flat_map(|s| s.points.iter().map(|p| p.x))
    }

    /// Points drawn as markers (bars excepted): what a reader counts on the plot.
    pub fn marker_count(&self) -> usize {
        self.series.iter().filter(|s| s.kind != Kind::Bars).map(|s| s.points.len()).sum()
    }

    /// The figure as a standalone SVG document.
    pub fn svg(&self) -> Result<String, String> {
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
            self.draw(&root).map_err(|e| format!("plot {}: {e}", self.id))?;
            root.present().map_err(|e| format!("plot {}: {e}", self.id))?;
        }
        Ok(out)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let bars = self.series.iter().any(|s| s.kind == Kind::Bars);
        let (mut x0, mut x1) = range(self.xs(), self.x_log, false);
        if bars {
            (x0, x1) = (x0.min(-0.5), x1.max(0.5));
        }
        let (y0, y1) = range(self.ys(), false, bars);
        let integer_x = bars || self.x_log;
        let fmt_x = move |x: &f64| if integer_x { format!("{x:.0}") } else { format!("{x:.1}") };
        let mut builder = ChartBuilder::on(root);
        builder.caption(&self.title, ("sans-serif", 19)).margin(12).x_label_area_size(46).y_label_area_size(62);
        if self.x_log {
            let mut chart = builder.build_cartesian_2d((x0..x1).log_scale(), y0..y1)?;
            self.draw_chart(&mut chart, x0, x1, &fmt_x)?;
        } else {
            let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1)?;
            self.draw_chart(&mut chart, x0, x1, &fmt_x)?;
        }
        Ok(())
    }

    /// Axes, series and legend on a chart with either x axis.
    fn draw_chart<'a, DB, X>(
        &self,
        chart: &mut ChartContext<'a, DB, Cartesian2d<X, plotters::coord::types::RangedCoordf64>>,
        x0: f64,
        x1: f64,
        fmt_x: &dyn Fn(&f64) -> String,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
    where
        DB: DrawingBackend + 'a,
        X: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
    {
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_label_formatter(fmt_x)
            .y_label_formatter(&|y: &f64| format!("{y:.1}"))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .light_line_style(WHITE)
            .draw()?;
        self.draw_series(chart, x0, x1)?;
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.85)).draw()?;
        Ok(())
    }

    fn draw_series<'a, DB, X>(
        &self,
        chart: &mut ChartContext<'a, DB, Cartesian2d<X, plotters::coord::types::RangedCoordf64>>,
        x0: f64,
        x1: f64,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
    where
        DB: DrawingBackend + 'a,
        X: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
    {
        for (y, label) in &self.hlines {
            let style = ShapeStyle::from(&RGBColor(120, 120, 120)).stroke_width(1);
            chart.draw_series(LineSeries::new([(x0, *y), (x1, *y)], style))?;
            chart.draw_series(std::iter::once(Text::new(label.clone(), (x0, *y), ("sans-serif", 11))))?;
        }
        for (i, s) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            if !s.band.is_empty() {
                let mut poly: Vec<(f64, f64)> = s.band.iter().map(|b| (b[0], b[2])).collect();
                poly.extend(s.band.iter().rev().map(|b| (b[0], b[1])));
                chart.draw_series(std::iter::once(Polygon::new(poly, color.mix(0.18).filled())))?;
            }
            let pts: Vec<(f64, f64)> = s.points.iter().map(|p| (p.x, p.y)).collect();
            let legend = move |(x, y): (i32, i32)| Rectangle::new([(x, y - 4), (x + 14, y + 4)], color.filled());
            match s.kind {
                Kind::Bars => {
                    chart
                        .draw_series(
                            pts.iter().map(|&(x, y)| Rectangle::new([(x - 0.38, 0.0), (x + 0.38, y)], color.filled())),
                        )?
                        .label(s.name.clone())
                        .legend(legend);
                }
                Kind::Line | Kind::Points => {
                    if s.kind == Kind::Line {
                        chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?;
                    }
                    chart
                        .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?
                        .label(s.name.clone())
                        .legend(legend);
                    let labels = s.points.iter().filter_map(|p| p.label.as_ref().map(|l| (l, (p.x, p.y))));
                    chart.draw_series(labels.map(|(l, p)| {
                        EmptyElement::at(p)
                            + Text::new(l.clone(), (6, -12), ("sans-serif", 11).into_font().color(&color))
                    }))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_one_marker_per_point_and_the_labels() {
        let p = |x, y, l: &str| Point { x, y, label: Some(l.into()) };
        let f = Figure {
            id: "t".into(),
            title: "greedy path".into(),
            x_label: "INT8 MACs (%)".into(),
            y_label: "mAP".into(),
            x_log: false,
            series: vec![
                Series {
                    name: "greedy".into(),
                    kind: Kind::Line,
                    points: vec![p(100.0, 60.0, "full INT8"), p(95.0, 69.0, "blocks.0.4")],
                    band: vec![],
                },
                Series { name: "drop".into(), kind: Kind::Bars, points: vec![p(0.0, 1.0, "a")], band: vec![] },
            ],
            hlines: vec![(69.9, "FP32".into())],
        };
        let svg = f.svg().unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert_eq!(svg.matches("<circle").count(), f.marker_count());
        assert!(svg.contains("blocks.0.4") && svg.contains("full INT8") && svg.contains("greedy path"));
        let log = Figure { x_log: true, ..f.clone() };
        assert!(log.svg().unwrap().contains("<circle"));
    }
}
