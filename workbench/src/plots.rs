//! Plots (plotters): each chart is drawn once per backend — SVG always (embedded in the
//! HTML report, and written when asked), PNG when asked. Text uses the embedded DejaVu Sans,
//! so PNGs render the same on any machine.

use conductor_sim::series::Series;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

const FONT: &str = "sans-serif";
static DEJAVU: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// Up to this many points per line: a sample of 40,000 minutes is drawn as bucket maxima.
const MAX_POINTS: usize = 1500;

pub const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A chart that can draw itself on any backend.
pub trait Chart {
    fn size(&self) -> (u32, u32) {
        (1100, 650)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

/// Which image files to write besides the SVG text the HTML report embeds.
#[derive(Clone, Copy, Debug)]
pub struct Formats {
    pub png: bool,
    pub svg: bool,
}

/// Renders `chart` as `dir/stem.svg` and `dir/stem.png` (as `formats` asks); returns the SVG.
pub fn render(chart: &impl Chart, dir: &Path, stem: &str, formats: Formats) -> Result<String, String> {
    REGISTER.call_once(|| {
        assert!(plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU).is_ok(), "the embedded font is valid");
    });
    let size = chart.size();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        chart.draw(&root).map_err(|e| format!("drawing {stem}.svg: {e}"))?;
        root.present().map_err(|e| format!("drawing {stem}.svg: {e}"))?;
    }
    if formats.svg {
        let path = dir.join(format!("{stem}.svg"));
        std::fs::write(&path, &svg).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    if formats.png {
        let path = dir.join(format!("{stem}.png"));
        let root = BitMapBackend::new(&path, size).into_drawing_area();
        chart.draw(&root).map_err(|e| format!("drawing {}: {e}", path.display()))?;
        root.present().map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(svg)
}

/// `(x, max of y over the bucket)` with at most [`MAX_POINTS`] buckets; NaN values skipped.
fn bucketed(x: &[f64], y: &[f64]) -> Vec<(f64, f64)> {
    let per = x.len().div_ceil(MAX_POINTS).max(1);
    x.chunks(per)
        .zip(y.chunks(per))
        .filter_map(|(xs, ys)| {
            let m = ys.iter().copied().filter(|v| !v.is_nan()).fold(f64::NAN, f64::max);
            (!m.is_nan()).then(|| (xs[0], m))
        })
        .collect()
}

/// Tick labels without needless decimals: "12" for a wide range, "0.25" for a narrow one.
fn tick(span: f64) -> impl Fn(&f64) -> String {
    move |v: &f64| {
        if span >= 8.0 {
            format!("{v:.0}")
        } else if span >= 0.8 {
            format!("{v:.1}")
        } else {
            format!("{v:.2}")
        }
    }
}

fn max_of(values: impl IntoIterator<Item = f64>) -> f64 {
    values.into_iter().filter(|v| v.is_finite()).fold(0.0, f64::max)
}

/// The series legend, the same on every chart.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
    font_size: u32,
) -> DrawResult<DB> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, font_size))
        .draw()
}

/// A labelled line of `(x, y)` points.
fn line<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    width: u32,
    label: &str,
) -> DrawResult<DB> {
    chart.draw_series(LineSeries::new(points, color.stroke_width(width)))?.label(label).legend(legend_line(color));
    Ok(())
}

fn legend_line(c: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3))
}

fn legend_box(c: RGBAColor) -> impl Fn((i32, i32)) -> Rectangle<(i32, i32)> {
    move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], c.filled())
}

/// Capacity against demand over time (top) and VMs and the queue (bottom), one run.
pub struct Capacity<'a> {
    pub title: String,
    pub series: &'a Series,
    pub start_label: String,
}

impl Chart for Capacity<'_> {
    fn size(&self) -> (u32, u32) {
        (1200, 800)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let s = self.series;
        let t0 = s.t.first().copied().unwrap_or(0);
        let days: Vec<f64> = s.t.iter().map(|t| (t - t0) as f64 / 86_400_000.0).collect();
        let xmax = days.last().copied().unwrap_or(1.0).max(1.0 / 24.0);
        let col = |n: &str| s.column(n).unwrap_or(&[]);
        let (ded, cloud) = (col("usable_dedicated_gib"), col("usable_cloud_gib"));
        let usable: Vec<f64> = ded.iter().zip(cloud).map(|(a, b)| a + b).collect();
        let demand = col("demand_gib");
        let reserved: Vec<f64> =
            col("reserved_dedicated_gib").iter().zip(col("reserved_cloud_gib")).map(|(a, b)| a + b).collect();
        let ymax = max_of(usable.iter().chain(demand).copied()) * 1.1 + 1.0;

        let (upper, lower) = root.split_vertically(520);
        let x_desc = format!("days since {}", self.start_label);
        let mut top = ChartBuilder::on(&upper)
            .caption(&self.title, (FONT, 24))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..xmax, 0.0..ymax)?;
        top.configure_mesh()
            .x_desc(&x_desc)
            .y_desc("RAM (GiB)")
            .x_label_formatter(&tick(xmax))
            .y_label_formatter(&tick(ymax))
            .label_style((FONT, 15))
            .draw()?;
        // Opaque pastels: the cloud area is drawn first and the dedicated one over it.
        let light_orange = RGBColor(253, 208, 162);
        let light_blue = RGBColor(174, 199, 232);
        top.draw_series(AreaSeries::new(bucketed(&days, &usable), 0.0, light_orange.filled()))?
            .label("usable RAM, cloud VMs (stacked)")
            .legend(legend_box(light_orange.to_rgba()));
        top.draw_series(AreaSeries::new(bucketed(&days, ded), 0.0, light_blue.filled()))?
            .label("usable RAM, dedicated")
            .legend(legend_box(light_blue.to_rgba()));
        line(&mut top, bucketed(&days, &reserved), COLORS[2], 1, "reserved (placed servers and jobs)")?;
        line(&mut top, bucketed(&days, demand), BLACK, 2, "demand (running, starting, queued)")?;
        legend(&mut top, SeriesLabelPosition::UpperLeft, 15)?;

        let vms = col("vms_existing");
        let prov = col("vms_provisioning");
        let queue = col("queue_length");
        let y2 = max_of(vms.iter().chain(queue).copied()) * 1.15 + 1.0;
        let mut bottom = ChartBuilder::on(&lower)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..xmax, 0.0..y2)?;
        bottom
            .configure_mesh()
            .x_desc(&x_desc)
            .y_desc("count")
            .x_label_formatter(&tick(xmax))
            .y_label_formatter(&tick(y2))
            .label_style((FONT, 15))
            .draw()?;
        line(&mut bottom, bucketed(&days, vms), COLORS[0], 2, "cloud VMs existing")?;
        line(&mut bottom, bucketed(&days, prov), COLORS[1], 1, "VMs provisioning")?;
        line(&mut bottom, bucketed(&days, queue), COLORS[3], 1, "start queue length")?;
        legend(&mut bottom, SeriesLabelPosition::UpperLeft, 15)?;
        Ok(())
    }
}

/// Forecast (mean and 90 % quantile) against the actual peak demand, one run.
pub struct ForecastVsActual<'a> {
    pub title: String,
    pub series: &'a Series,
    pub start_label: String,
}

impl ForecastVsActual<'_> {
    pub fn applies(series: &Series) -> bool {
        series.column("forecast_gib").is_some_and(|c| c.iter().any(|v| !v.is_nan()))
    }
}

impl Chart for ForecastVsActual<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let s = self.series;
        let t0 = s.t.first().copied().unwrap_or(0);
        let days: Vec<f64> = s.t.iter().map(|t| (t - t0) as f64 / 86_400_000.0).collect();
        let xmax = days.last().copied().unwrap_or(1.0).max(1.0 / 24.0);
        let col = |n: &str| s.column(n).unwrap_or(&[]);
        let (mean, p90, actual) = (col("forecast_gib"), col("forecast_p90_gib"), col("actual_peak_gib"));
        let ymax = max_of(mean.iter().chain(p90).chain(actual).copied()) * 1.1 + 1.0;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 24))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..xmax, 0.0..ymax)?;
        let x_desc = format!("days since {}", self.start_label);
        chart
            .configure_mesh()
            .x_desc(&x_desc)
            .y_desc("peak RAM demand per 15 min (GiB)")
            .x_label_formatter(&tick(xmax))
            .y_label_formatter(&tick(ymax))
            .label_style((FONT, 15))
            .draw()?;
        line(&mut chart, bucketed(&days, actual), BLACK, 2, "actual")?;
        line(&mut chart, bucketed(&days, mean), COLORS[0], 2, "forecast mean (nightly, 03:00)")?;
        line(&mut chart, bucketed(&days, p90), COLORS[1], 1, "forecast 90 % quantile")?;
        legend(&mut chart, SeriesLabelPosition::UpperLeft, 15)?;
        Ok(())
    }
}

/// One design's money, for the cost breakdown.
#[derive(Clone, Debug)]
pub struct CostBar {
    pub name: String,
    pub dedicated: f64,
    pub cloud: f64,
    pub storage: f64,
    pub promo: f64,
    pub revenue: f64,
}

/// Cost breakdown per design (stacked horizontal bars) against revenue (a diamond).
pub struct Costs {
    pub title: String,
    pub bars: Vec<CostBar>,
}

fn clip(name: &str, n: usize) -> String {
    if name.chars().count() <= n {
        name.to_owned()
    } else {
        format!("{}…", name.chars().take(n - 1).collect::<String>())
    }
}

impl Chart for Costs {
    fn size(&self) -> (u32, u32) {
        (1100, (160 + 34 * self.bars.len() as u32).max(320))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let n = self.bars.len();
        // Room on the right for the legend, beyond the longest bar and the revenue markers.
        let xmax =
            max_of(self.bars.iter().flat_map(|b| [b.dedicated + b.cloud + b.storage + b.promo, b.revenue])) * 1.4 + 1.0;
        // The best (first) design at the top: segment n − 1 − i.
        let names: Vec<String> = self.bars.iter().rev().map(|b| clip(&b.name, 44)).collect();
        let row = |i: usize| n - 1 - i;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 24))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(340)
            .build_cartesian_2d(0.0..xmax, (0..n).into_segmented())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n.max(1))
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => names.get(*i).cloned().unwrap_or_default(),
                SegmentValue::Last => String::new(),
            })
            .x_desc("EUR over the window")
            .x_label_formatter(&tick(xmax))
            .label_style((FONT, 14))
            .draw()?;
        type Part = (&'static str, RGBColor, fn(&CostBar) -> f64);
        let parts: [Part; 4] = [
            ("dedicated", COLORS[0], |b| b.dedicated),
            ("cloud", COLORS[1], |b| b.cloud),
            ("archive storage", COLORS[4], |b| b.storage),
            ("promo credit", COLORS[6], |b| b.promo),
        ];
        for (k, (label, color, value)) in parts.iter().enumerate() {
            let rects = self.bars.iter().enumerate().map(|(i, b)| {
                let before: f64 = parts[..k].iter().map(|p| (p.2)(b)).sum();
                let mut r = Rectangle::new(
                    [(before, SegmentValue::Exact(row(i))), (before + value(b), SegmentValue::Exact(row(i) + 1))],
                    color.filled(),
                );
                r.set_margin(5, 5, 0, 0);
                r
            });
            chart.draw_series(rects)?.label(*label).legend(legend_box(color.to_rgba()));
        }
        chart
            .draw_series(self.bars.iter().enumerate().map(|(i, b)| {
                EmptyElement::at((b.revenue, SegmentValue::CenterOf(row(i))))
                    + Polygon::new(vec![(0, -8), (8, 0), (0, 8), (-8, 0)], BLACK.filled())
            }))?
            .label("revenue")
            .legend(|(x, y)| {
                Polygon::new(vec![(x + 9, y - 6), (x + 15, y), (x + 9, y + 6), (x + 3, y)], BLACK.filled())
            });
        legend(&mut chart, SeriesLabelPosition::LowerRight, 14)?;
        Ok(())
    }
}

/// Start-wait distribution (CDF) per design, from the waits at percentiles 0..=100.
pub struct WaitCdf {
    pub title: String,
    /// (name, waits in seconds at percentiles 0..=100)
    pub lines: Vec<(String, Vec<f64>)>,
}

impl Chart for WaitCdf {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        // The x range ends at the largest 99th percentile: the last percent is a long tail.
        let xmax = max_of(self.lines.iter().filter_map(|(_, w)| w.get(99).copied())) * 1.1 + 1.0;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 24))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..xmax, 0.0..1.0)?;
        chart
            .configure_mesh()
            .x_desc("start wait, request → running (s)")
            .y_desc("share of starts waiting at most this long")
            .y_label_formatter(&|y| format!("{:.0} %", y * 100.0))
            .x_label_formatter(&tick(xmax))
            .label_style((FONT, 15))
            .draw()?;
        for (k, (name, waits)) in self.lines.iter().enumerate() {
            let c = COLORS[k % COLORS.len()];
            // A step function: a share p of starts waited at most waits[p].
            let mut pts = Vec::with_capacity(2 * waits.len());
            for (p, w) in waits.iter().enumerate() {
                let prev = if p == 0 { 0.0 } else { (p - 1) as f64 / 100.0 };
                pts.push((w.min(xmax), prev));
                pts.push((w.min(xmax), p as f64 / 100.0));
            }
            line(&mut chart, pts, c, 2, &clip(name, 40))?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight, 14)?;
        Ok(())
    }
}

/// One design on the cost/wait plane.
#[derive(Clone, Debug)]
pub struct ParetoPoint {
    pub name: String,
    pub x: f64,
    pub y: f64,
    pub feasible: bool,
    pub frontier: bool,
    pub rank: usize,
}

/// Cost against p95 wait (or the two metrics the study names); the frontier joined.
pub struct Pareto {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub points: Vec<ParetoPoint>,
    /// A constraint bound on the y metric, drawn as a dashed line.
    pub y_bound: Option<f64>,
}

impl Chart for Pareto {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let finite: Vec<&ParetoPoint> = self.points.iter().filter(|p| p.x.is_finite() && p.y.is_finite()).collect();
        let (mut x0, mut x1) = (f64::MAX, f64::MIN);
        for p in &finite {
            x0 = x0.min(p.x);
            x1 = x1.max(p.x);
        }
        if finite.is_empty() {
            (x0, x1) = (0.0, 1.0);
        }
        let pad = ((x1 - x0) * 0.08).max(1.0);
        let ys = finite.iter().map(|p| p.y).chain(self.y_bound);
        let (y0, y1) = ys.fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
        let (y0, y1) = if y0 > y1 { (0.0, 1.0) } else { (y0, y1) };
        let ypad = ((y1 - y0) * 0.12).max(1.0);
        let (ylo, yhi) = ((y0 - ypad).max(0.0), y1 + ypad);
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 24))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d((x0 - pad)..(x1 + pad), ylo..yhi)?;
        chart
            .configure_mesh()
            .x_desc(&self.x_desc)
            .y_desc(&self.y_desc)
            .x_label_formatter(&tick(x1 - x0))
            .y_label_formatter(&tick(yhi - ylo))
            .label_style((FONT, 15))
            .draw()?;
        if let Some(b) = self.y_bound {
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(x0 - pad, b), (x1 + pad, b)],
                    8,
                    6,
                    COLORS[3].stroke_width(1),
                ))?
                .label(format!("constraint: {} ≤ {b}", self.y_desc))
                .legend(legend_line(COLORS[3]));
        }
        let grey = RGBColor(150, 150, 150);
        chart
            .draw_series(finite.iter().filter(|p| !p.feasible).map(|p| Circle::new((p.x, p.y), 5, grey.filled())))?
            .label("breaks a constraint")
            .legend(|(x, y)| Circle::new((x + 9, y), 5, RGBColor(150, 150, 150).filled()));
        chart
            .draw_series(finite.iter().filter(|p| p.feasible).map(|p| Circle::new((p.x, p.y), 5, COLORS[2].filled())))?
            .label("meets the constraints")
            .legend(|(x, y)| Circle::new((x + 9, y), 5, COLORS[2].filled()));
        let mut front: Vec<(f64, f64)> = finite.iter().filter(|p| p.frontier).map(|p| (p.x, p.y)).collect();
        front.sort_by(|a, b| a.0.total_cmp(&b.0));
        line(&mut chart, front.clone(), COLORS[0], 2, "Pareto frontier")?;
        chart.draw_series(front.iter().map(|&(x, y)| Circle::new((x, y), 7, COLORS[0].stroke_width(2))))?;
        // Mark the three best-ranked designs by rank (names are in the ranking table).
        chart.draw_series(finite.iter().filter(|p| p.rank <= 3).map(|p| {
            let dy = -8 - 14 * (p.rank as i32 - 1);
            EmptyElement::at((p.x, p.y)) + Text::new(format!("#{}", p.rank), (8, dy), (FONT, 15))
        }))?;
        legend(&mut chart, SeriesLabelPosition::UpperRight, 14)?;
        Ok(())
    }
}
