//! `phantom bench --report FILE`: a run drawn for people.
//!
//! The report is one self-contained HTML page: inline CSS and inline SVG, no script, no
//! font or style fetched, so that it opens the same from a CI artifact, a mail attachment
//! or a machine without a network. A path ending in `.svg` gets every chart stacked in a
//! single SVG instead, for pasting into an issue.
//!
//! # Layout of the page
//! - the run: name, commit, start, machine, configuration, and how many targets it met;
//! - with a comparison, its table first: what changed is what a reader comes for;
//! - per suite: its metrics (median, spread of the repeats, target met or not), its charts
//!   (one per distinct `Series::chart`), its events and its notes.
//!
//! # Charts
//! Drawn with plotters' SVG backend. A CDF has a log latency axis (a tail a hundred times the
//! median stays readable) and a share axis from 0 to 1; a timeline carries the suite's
//! events as dashed vertical markers, coloured by kind and labelled with what happened. An
//! event of a phase (`layers off`) marks only the charts whose series name that phase, so a
//! fault injected with the layers off is not read as a dip of the run with them on.
//!
//! Everything from the run (names, notes, events) is escaped: a note may quote the markup
//! of an attack payload, and the report must show it, not run it.

use std::{fmt::Write as _, path::Path};

use anyhow::Context as _;
use plotters::{
    coord::Shift,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use super::{
    fmt_value, label,
    model::{Better, Delta, Event, Metric, Results, Series, SeriesKind, Suite, Verdict},
};

/// Width of a chart, pixels: room for four decades of a log axis with their labels.
const CHART_WIDTH: u32 = 880;

/// Height of a chart without its legend: two fit a laptop screen.
const PLOT_HEIGHT: u32 = 420;

/// Height of the run's title band in the single-SVG report.
const TITLE_HEIGHT: u32 = 44;

/// The charts' font: a generic family, so the viewer's own sans-serif draws the text and
/// nothing is fetched (plotters only estimates text sizes without its `ttf` feature).
const FONT: &str = "sans-serif";

/// Where a CDF's latencies at or below zero are drawn when the chart has no positive latency
/// to put them at: a log axis has no zero, and a microsecond is below any call measured.
const FALLBACK_FLOOR_MS: f64 = 1e-3;

/// Longest event label drawn on a chart; the events table has the full text.
const MAX_LABEL_CHARS: usize = 48;

/// Height of a legend row, pixels.
const LEGEND_ROW: u32 = 20;

/// How a met target is marked (tests look for it).
const MET: &str = "✓ met";

/// How a missed target is marked (tests look for it).
const NOT_MET: &str = "✗ not met";

/// Colours of the series of a chart, in order: the Okabe–Ito palette (told apart with the
/// common colour blindnesses too), without its yellow, too pale on white.
const SERIES_COLOURS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(213, 94, 0),
    RGBColor(86, 180, 233),
    RGBColor(204, 121, 167),
    RGBColor(0, 0, 0),
];

/// Colours of event kinds the runner does not name below.
const OTHER_EVENT_COLOURS: [RGBColor; 3] = [
    RGBColor(100, 100, 100),
    RGBColor(140, 90, 50),
    RGBColor(40, 90, 140),
];

/// Writes the report of `results` to `path`: an HTML page, or a single SVG of every chart
/// when `path` ends in `.svg`. With `comparison` (run A and the deltas of `results` against
/// it, as [`super::model::compare`] gives them), the page opens with the comparison table;
/// a single SVG has no tables, and leaves it out.
pub fn write(
    path: &Path,
    results: &Results,
    comparison: Option<(&Results, &[Delta])>,
) -> anyhow::Result<()> {
    let svg_only = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    let text = if svg_only {
        stacked_svg(results)?
    } else {
        html(results, comparison)?
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// `s` with the characters that mean something in HTML (and in attribute values) replaced.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------------------

/// The stylesheet, inline so the file stands alone.
const CSS: &str = "
body { font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; color: #1f2328;
       max-width: 1100px; margin: 2em auto; padding: 0 1.2em; }
h1 { margin: 0 0 .3em; font-size: 1.7em; }
h2 { margin: 1.8em 0 .5em; padding-bottom: .2em; border-bottom: 2px solid #d0d7de; }
h3 { margin: 1.2em 0 .4em; font-size: 1.05em; color: #57606a; }
code { font: .9em ui-monospace, 'SF Mono', Menlo, Consolas, monospace; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1em; margin: 0; }
dl.facts dt { color: #57606a; }
dl.facts dd { margin: 0; }
ul.config { list-style: none; padding: 0; margin: 0; display: flex; flex-wrap: wrap; gap: .3em; }
ul.config li { background: #f0f2f4; border-radius: 4px; padding: 0 .4em; }
nav { margin: 1em 0; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; width: 100%; margin: .4em 0 1em; }
th, td { padding: .3em .6em; border-bottom: 1px solid #e4e7ea; text-align: left;
         vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
small, .dim { color: #6e7781; }
.better-dir { color: #6e7781; font-size: .85em; }
.badge { font-size: .6em; font-weight: 600; vertical-align: middle; border-radius: 1em;
         padding: .15em .7em; margin-left: .6em; }
.met, .badge.ok { color: #116329; background: #dafbe1; font-weight: 600; }
.unmet, .badge.bad { color: #a40e26; background: #ffebe9; font-weight: 600; }
.nodata { color: #6e7781; }
tr.verdict-better td { background: #dafbe1; }
tr.verdict-worse td { background: #ffebe9; }
tr.verdict-better td.verdict { color: #116329; font-weight: 600; }
tr.verdict-worse td.verdict { color: #a40e26; font-weight: 600; }
tr.verdict-same td { color: #57606a; }
.summary span { margin-right: 1em; }
.warn { background: #fff8c5; padding: .4em .8em; border-radius: 4px; }
figure { margin: 1em 0; }
figure svg { max-width: 100%; height: auto; border: 1px solid #e4e7ea; border-radius: 6px; }
.kind { display: inline-block; border-radius: 3px; padding: 0 .4em; color: #fff;
        font-size: .85em; }
ul.notes li { margin: .2em 0; }
";

/// The whole page.
fn html(results: &Results, comparison: Option<(&Results, &[Delta])>) -> anyhow::Result<String> {
    let mut out = String::with_capacity(64 * 1024);
    writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>phantom bench: {}</title>\n<style>{CSS}</style>\n</head>\n<body>",
        escape(label(results))
    )?;
    header(&mut out, results)?;
    if let Some((a, deltas)) = comparison {
        comparison_section(&mut out, a, results, deltas)?;
    }
    if results.suites.len() > 1 {
        out.push_str("<nav>Suites:");
        for (i, suite) in results.suites.iter().enumerate() {
            write!(out, " <a href=\"#suite-{i}\">{}</a>", escape(&suite.name))?;
        }
        out.push_str("</nav>\n");
    }
    for (i, suite) in results.suites.iter().enumerate() {
        suite_section(&mut out, i, suite)?;
    }
    out.push_str("</body>\n</html>\n");
    Ok(out)
}

/// The run: what, where, how, and the targets at a glance.
fn header(out: &mut String, r: &Results) -> anyhow::Result<()> {
    writeln!(
        out,
        "<header>\n<h1>phantom bench: {}{}</h1>",
        escape(label(r)),
        targets_badge(r.suites.iter().flat_map(|s| &s.metrics))
    )?;
    let m = &r.machine;
    let mut machine = format!("{} · {} CPUs", escape(&m.host), m.cpus);
    if !m.cpu_model.is_empty() {
        write!(machine, " ({})", escape(&m.cpu_model))?;
    }
    if m.memory_mib > 0 {
        write!(machine, " · {:.1} GiB", m.memory_mib as f64 / 1024.0)?;
    }
    if !m.os.is_empty() {
        write!(machine, " · {}", escape(&m.os))?;
    }
    writeln!(
        out,
        "<dl class=\"facts\">\n<dt>commit</dt><dd><code>{}</code></dd>\n\
         <dt>started</dt><dd>{}</dd>\n<dt>machine</dt><dd>{machine}</dd>",
        escape(&r.commit),
        escape(&r.started)
    )?;
    if !r.config.is_empty() {
        out.push_str("<dt>configuration</dt><dd><ul class=\"config\">");
        for (k, v) in &r.config {
            write!(out, "<li><code>{} = {}</code></li>", escape(k), escape(v))?;
        }
        out.push_str("</ul></dd>\n");
    }
    out.push_str("</dl>\n</header>\n");
    Ok(())
}

/// "3/4 targets met", green when all are, red otherwise; nothing when no metric has one.
fn targets_badge<'a>(metrics: impl Iterator<Item = &'a Metric>) -> String {
    let (mut met, mut total) = (0, 0);
    for m in metrics {
        if let Some(t) = m.target {
            total += 1;
            if !m.samples.is_empty() && t.met(m.median()) {
                met += 1;
            }
        }
    }
    if total == 0 {
        return String::new();
    }
    let class = if met == total { "ok" } else { "bad" };
    format!(" <span class=\"badge {class}\">{met}/{total} targets met</span>")
}

/// The comparison of `b` (this run) against `a`: one row per metric both have, coloured by
/// verdict, then the metrics only one of them has.
fn comparison_section(
    out: &mut String,
    a: &Results,
    b: &Results,
    deltas: &[Delta],
) -> anyhow::Result<()> {
    let run = |r: &Results| {
        format!(
            "<b>{}</b> (<code>{}</code>, {})",
            escape(label(r)),
            escape(&r.commit),
            escape(&r.started)
        )
    };
    writeln!(
        out,
        "<section class=\"comparison\">\n<h2>Comparison</h2>\n<p>A: {} → B: {}</p>",
        run(a),
        run(b)
    )?;
    if a.machine != b.machine {
        writeln!(
            out,
            "<p class=\"warn\">The two runs are from different machines ({} and {}): \
             a change may be the machine's.</p>",
            escape(&a.machine.host),
            escape(&b.machine.host)
        )?;
    }
    let count = |v: Verdict| deltas.iter().filter(|d| d.verdict == v).count();
    writeln!(
        out,
        "<p class=\"summary\"><span class=\"met\">{} better</span>\
         <span class=\"unmet\">{} worse</span><span>{} no change</span></p>",
        count(Verdict::Better),
        count(Verdict::Worse),
        count(Verdict::NoChange)
    )?;
    out.push_str(
        "<table class=\"compare\">\n<thead><tr><th>metric</th><th>A</th><th>B</th>\
         <th>change</th><th>verdict</th></tr></thead>\n<tbody>\n",
    );
    for d in deltas {
        let class = match d.verdict {
            Verdict::Better => "verdict-better",
            Verdict::Worse => "verdict-worse",
            Verdict::NoChange => "verdict-same",
        };
        let change = if d.change_pct.is_finite() {
            format!("{:+.1}%", d.change_pct)
        } else {
            "n/a".to_owned()
        };
        writeln!(
            out,
            "<tr class=\"{class}\"><td>{} <small>{}</small></td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{change}</td>\
             <td class=\"verdict\">{}</td></tr>",
            escape(&d.metric),
            escape(&d.unit),
            median_and_spread(d.a),
            median_and_spread(d.b),
            d.verdict
        )?;
    }
    out.push_str("</tbody>\n</table>\n");
    // The deltas name only shared metrics; what only one run measured is worth a line (a
    // suite skipped, a metric renamed), not a silent gap.
    let names = |r: &Results| {
        r.suites
            .iter()
            .flat_map(|s| {
                s.metrics
                    .iter()
                    .map(move |m| format!("{}/{}", s.name, m.name))
            })
            .filter(|n| !deltas.iter().any(|d| &d.metric == n))
            .collect::<Vec<_>>()
    };
    for (which, only) in [("A", names(a)), ("B", names(b))] {
        if !only.is_empty() {
            let list: Vec<String> = only.iter().map(|n| escape(n)).collect();
            writeln!(
                out,
                "<p class=\"dim\">Only in {which}: {}</p>",
                list.join(", ")
            )?;
        }
    }
    out.push_str("</section>\n");
    Ok(())
}

/// A comparison cell: the median, and under it the spread when the repeats differ.
fn median_and_spread((median, lo, hi): (f64, f64, f64)) -> String {
    if lo < hi {
        format!(
            "{}<br><small>{} .. {}</small>",
            fmt_value(median),
            fmt_value(lo),
            fmt_value(hi)
        )
    } else {
        fmt_value(median)
    }
}

/// One suite: metrics, charts, events, notes.
fn suite_section(out: &mut String, index: usize, suite: &Suite) -> anyhow::Result<()> {
    writeln!(
        out,
        "<section class=\"suite\" id=\"suite-{index}\">\n<h2>{}{}</h2>",
        escape(&suite.name),
        targets_badge(suite.metrics.iter())
    )?;
    if suite.metrics.is_empty() {
        out.push_str("<p class=\"dim\">No metrics.</p>\n");
    } else {
        metrics_table(out, &suite.metrics)?;
    }
    let charts = charts(suite);
    for chart in &charts {
        writeln!(out, "<figure>\n{}</figure>", chart_svg(chart, &chart.name)?)?;
    }
    if !suite.events.is_empty() {
        events_table(out, &suite.events)?;
    }
    if !suite.notes.is_empty() {
        out.push_str("<h3>Notes</h3>\n<ul class=\"notes\">\n");
        for note in &suite.notes {
            writeln!(out, "<li>{}</li>", escape(note))?;
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</section>\n");
    Ok(())
}

/// A suite's metrics: median, spread of the repeats, unit, target and whether it is met.
fn metrics_table(out: &mut String, metrics: &[Metric]) -> anyhow::Result<()> {
    out.push_str(
        "<table class=\"metrics\">\n<thead><tr><th>metric</th><th>median</th>\
         <th>spread (min .. max)</th><th>unit</th><th>target</th><th></th></tr></thead>\n\
         <tbody>\n",
    );
    for m in metrics {
        let direction = match m.better {
            Better::Higher => " <span class=\"better-dir\" title=\"higher is better\">↑</span>",
            Better::Lower => " <span class=\"better-dir\" title=\"lower is better\">↓</span>",
            Better::Neither => "",
        };
        let (median, spread) = if m.samples.is_empty() {
            (
                "<span class=\"nodata\">no samples</span>".to_owned(),
                String::new(),
            )
        } else if m.samples.len() > 1 {
            let (lo, hi) = m.spread();
            (
                fmt_value(m.median()),
                format!(
                    "{} .. {} <small>({} repeats)</small>",
                    fmt_value(lo),
                    fmt_value(hi),
                    m.samples.len()
                ),
            )
        } else {
            (fmt_value(m.median()), String::new())
        };
        let (target, status) = match m.target {
            None => (String::new(), String::new()),
            Some(t) if m.samples.is_empty() => (
                escape(&t.to_string()),
                "<td class=\"nodata\">no data</td>".to_owned(),
            ),
            Some(t) if t.met(m.median()) => (
                escape(&t.to_string()),
                format!("<td class=\"met\">{MET}</td>"),
            ),
            Some(t) => (
                escape(&t.to_string()),
                format!("<td class=\"unmet\">{NOT_MET}</td>"),
            ),
        };
        let status = if status.is_empty() {
            "<td></td>".to_owned()
        } else {
            status
        };
        writeln!(
            out,
            "<tr><td>{}{direction}</td><td class=\"num\">{median}</td>\
             <td class=\"num\">{spread}</td><td>{}</td><td>{target}</td>{status}</tr>",
            escape(&m.name),
            escape(&m.unit)
        )?;
    }
    out.push_str("</tbody>\n</table>\n");
    Ok(())
}

/// A suite's events in full, in the colours of their markers on the charts.
fn events_table(out: &mut String, events: &[Event]) -> anyhow::Result<()> {
    out.push_str(
        "<h3>Events</h3>\n<table class=\"events\">\n<thead><tr><th>t (s)</th><th>phase</th>\
         <th>kind</th><th>what</th></tr></thead>\n<tbody>\n",
    );
    for e in events {
        let RGBColor(r, g, b) = event_colour(&e.kind);
        writeln!(
            out,
            "<tr><td class=\"num\">{}</td><td>{}</td>\
             <td><span class=\"kind\" style=\"background:#{r:02x}{g:02x}{b:02x}\">{}</span></td>\
             <td>{}</td></tr>",
            fmt_value(e.t),
            escape(&e.phase),
            escape(&e.kind),
            escape(&e.what)
        )?;
    }
    out.push_str("</tbody>\n</table>\n");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The charts
// ---------------------------------------------------------------------------------------

/// The series of a suite that share a `chart` name, drawn together, and the events drawn on
/// them.
struct Chart<'a> {
    /// `Series::chart`.
    name: String,
    /// The first series' kind: a chart has one pair of axes.
    kind: SeriesKind,
    /// In the suite's order (which fixes their colours).
    series: Vec<&'a Series>,
    /// The suite's events this chart marks (timelines only).
    events: Vec<&'a Event>,
}

/// A suite's charts, in the order their first series appears.
fn charts(suite: &Suite) -> Vec<Chart<'_>> {
    let mut charts: Vec<Chart<'_>> = Vec::new();
    for s in &suite.series {
        match charts.iter_mut().find(|c| c.name == s.chart) {
            Some(c) => c.series.push(s),
            None => charts.push(Chart {
                name: s.chart.clone(),
                kind: s.kind,
                series: vec![s],
                events: Vec::new(),
            }),
        }
    }
    for chart in &mut charts {
        if chart.kind == SeriesKind::Timeline {
            chart.events = suite
                .events
                .iter()
                .filter(|e| e.t.is_finite() && marks(suite, &chart.series, e))
                .collect();
        }
    }
    charts
}

/// Whether `event` is drawn on a chart of `series`: an event without a phase marks every
/// timeline; one of a phase marks the charts with a series of that phase, or every timeline
/// when no series of the suite names it (better shown everywhere than lost).
fn marks(suite: &Suite, series: &[&Series], event: &Event) -> bool {
    let of_phase = |s: &Series| s.name.contains(event.phase.as_str());
    event.phase.is_empty()
        || series.iter().any(|s| of_phase(s))
        || !suite
            .series
            .iter()
            .filter(|s| s.kind == SeriesKind::Timeline)
            .any(of_phase)
}

/// The points of `series` a chart can draw: finite ones only; on a CDF, latencies at or below
/// zero (a clock too coarse for the call) are put at `floor`, since a log axis has no zero,
/// and shares are held within 0..=1.
fn drawable(series: &Series, kind: SeriesKind, floor: f64) -> Vec<(f64, f64)> {
    series
        .points
        .iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|&(x, y)| match kind {
            SeriesKind::Cdf => (if x > 0.0 { x } else { floor }, y.clamp(0.0, 1.0)),
            SeriesKind::Timeline => (x, y),
        })
        .collect()
}

/// The lowest and highest of `values`, or `None` for none.
fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| {
        Some(acc.map_or((v, v), |(lo, hi): (f64, f64)| (lo.min(v), hi.max(v))))
    })
}

/// The colour of the `i`th series of a chart.
fn series_colour(i: usize) -> RGBColor {
    SERIES_COLOURS[i % SERIES_COLOURS.len()]
}

/// The colour of an event kind: the kinds the runner records get fixed colours (a fault
/// red, a recovery green), so a reader learns them once.
fn event_colour(kind: &str) -> RGBColor {
    match kind {
        "fault" => RGBColor(200, 30, 30),
        "recovered" => RGBColor(30, 130, 60),
        "breaker" => RGBColor(190, 90, 0),
        "shed" => RGBColor(120, 60, 160),
        other => {
            let h = other
                .bytes()
                .fold(0usize, |h, b| h.wrapping_mul(31) + b as usize);
            OTHER_EVENT_COLOURS[h % OTHER_EVENT_COLOURS.len()]
        }
    }
}

/// An axis tick: three significant digits, no trailing zeros (a log axis ticks 0.002 and
/// 2000 on the same chart).
fn tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || !a.is_finite() {
        return format!("{v}");
    }
    if a >= 1000.0 {
        return format!("{v:.0}");
    }
    let decimals = (2 - a.log10().floor() as i32).clamp(0, 9) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// One line of a legend: a swatch and what it stands for.
struct LegendEntry {
    label: String,
    colour: RGBColor,
    /// Events are dashed on the chart, and so in the legend.
    dashed: bool,
}

/// Where the legend's first entry starts, pixels from the left: under the plot, past the
/// y labels.
const LEGEND_LEFT: i32 = 64;

/// Width of a legend swatch, pixels.
const LEGEND_SWATCH: i32 = 24;

/// The width an entry takes, estimated (the browser lays out the text): about 7 pixels a
/// character at the legend's size.
fn entry_width(e: &LegendEntry) -> i32 {
    LEGEND_SWATCH + 6 + 7 * e.label.chars().count() as i32 + 22
}

/// The entries laid out left to right, wrapping at the chart's width: (row, x, entry).
fn legend_layout(entries: &[LegendEntry]) -> Vec<(u32, i32, &LegendEntry)> {
    let (mut row, mut x) = (0, LEGEND_LEFT);
    let mut placed = Vec::with_capacity(entries.len());
    for e in entries {
        let w = entry_width(e);
        if x > LEGEND_LEFT && x + w > CHART_WIDTH as i32 - 8 {
            row += 1;
            x = LEGEND_LEFT;
        }
        placed.push((row, x, e));
        x += w;
    }
    placed
}

/// The legend's height: below the plot rather than over it, so it never hides a curve.
fn legend_height(entries: &[LegendEntry]) -> u32 {
    legend_layout(entries)
        .last()
        .map_or(0, |&(row, _, _)| (row + 1) * LEGEND_ROW + 8)
}

fn draw_legend(area: &Area<'_>, entries: &[LegendEntry]) -> anyhow::Result<()> {
    let text = TextStyle::from((FONT, 15).into_font())
        .color(&RGBColor(50, 50, 50))
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (row, x, e) in legend_layout(entries) {
        let y = (row * LEGEND_ROW + LEGEND_ROW / 2) as i32;
        if e.dashed {
            for dx in [0, 9, 18] {
                area.draw(&PathElement::new(
                    vec![(x + dx, y), (x + dx + 5, y)],
                    e.colour.stroke_width(2),
                ))?;
            }
        } else {
            area.draw(&PathElement::new(
                vec![(x, y), (x + LEGEND_SWATCH, y)],
                e.colour.stroke_width(3),
            ))?;
        }
        area.draw(&Text::new(
            e.label.as_str(),
            (x + LEGEND_SWATCH + 6, y),
            &text,
        ))?;
    }
    Ok(())
}

/// A drawing area of the SVG backend, in pixels.
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// The height a chart takes: its plot and its legend.
fn chart_height(chart: &Chart<'_>) -> u32 {
    PLOT_HEIGHT + legend_height(&legend_entries(chart))
}

/// One series per entry (saying when it has nothing to draw), then one per event kind.
fn legend_entries(chart: &Chart<'_>) -> Vec<LegendEntry> {
    let mut entries: Vec<LegendEntry> = chart
        .series
        .iter()
        .enumerate()
        .map(|(i, s)| LegendEntry {
            label: if s.points.iter().any(|(x, y)| x.is_finite() && y.is_finite()) {
                s.name.clone()
            } else {
                format!("{} (no data)", s.name)
            },
            colour: series_colour(i),
            dashed: false,
        })
        .collect();
    for kind in event_kinds(&chart.events) {
        entries.push(LegendEntry {
            label: kind.to_owned(),
            colour: event_colour(kind),
            dashed: true,
        });
    }
    entries
}

/// The distinct kinds of `events`, in the order they first happen.
fn event_kinds<'a>(events: &[&'a Event]) -> Vec<&'a str> {
    let mut kinds: Vec<&str> = Vec::new();
    for e in events {
        if !kinds.contains(&e.kind.as_str()) {
            kinds.push(&e.kind);
        }
    }
    kinds
}

/// `chart` as an SVG document of its own, under `title`. Names and labels go to plotters as
/// they are: its SVG backend escapes text and attribute values itself (escaping them here
/// too would show `&amp;lt;`).
fn chart_svg(chart: &Chart<'_>, title: &str) -> anyhow::Result<String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (CHART_WIDTH, chart_height(chart)))
            .into_drawing_area();
        draw_chart(&root, chart, title)?;
        root.present()?;
    }
    Ok(buf)
}

/// Every chart of the run stacked in one SVG, each under `suite: chart`, below the run's name.
fn stacked_svg(results: &Results) -> anyhow::Result<String> {
    let charts: Vec<(String, Chart<'_>)> = results
        .suites
        .iter()
        .flat_map(|s| {
            charts(s)
                .into_iter()
                .map(move |c| (format!("{}: {}", s.name, c.name), c))
        })
        .collect();
    // A run without series still gets a valid file, saying so, rather than an empty one.
    let body_height = if charts.is_empty() {
        PLOT_HEIGHT / 4
    } else {
        charts.iter().map(|(_, c)| chart_height(c)).sum()
    };
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (CHART_WIDTH, TITLE_HEIGHT + body_height))
            .into_drawing_area();
        root.fill(&WHITE)?;
        let (head, mut rest) = root.split_vertically(TITLE_HEIGHT);
        head.titled(
            &format!(
                "phantom bench: {} ({}, {})",
                label(results),
                results.commit,
                results.started
            ),
            (FONT, 20),
        )?;
        if charts.is_empty() {
            rest.draw(&Text::new(
                "This run has no charts.",
                (CHART_WIDTH as i32 / 2, 20),
                TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Center, VPos::Top)),
            ))?;
        }
        for (title, chart) in &charts {
            let (area, below) = rest.split_vertically(chart_height(chart));
            draw_chart(&area, chart, title)?;
            rest = below;
        }
        root.present()?;
    }
    Ok(buf)
}

/// Draws `chart` on `area`: the plot, then its legend below.
fn draw_chart(area: &Area<'_>, chart: &Chart<'_>, title: &str) -> anyhow::Result<()> {
    area.fill(&WHITE)?;
    let entries = legend_entries(chart);
    let (plot, legend) = area.split_vertically(PLOT_HEIGHT);
    // The labels of the first series: the chart's series share their axes.
    let first = chart.series.first();
    let axis = |l: Option<&String>, default: &str| {
        l.filter(|l| !l.is_empty())
            .map_or_else(|| default.to_owned(), Clone::clone)
    };
    match chart.kind {
        SeriesKind::Cdf => {
            let x = axis(first.map(|s| &s.x_label), "latency (ms)");
            let y = axis(first.map(|s| &s.y_label), "share of calls");
            draw_cdf(&plot, chart, title, &x, &y)?;
        }
        SeriesKind::Timeline => {
            let x = axis(first.map(|s| &s.x_label), "seconds since start");
            let y = axis(first.map(|s| &s.y_label), "");
            draw_timeline(&plot, chart, title, &x, &y)?;
        }
    }
    draw_legend(&legend, &entries)
}

/// The caption style of every chart.
fn caption_style() -> TextStyle<'static> {
    TextStyle::from((FONT, 20).into_font()).color(&RGBColor(31, 35, 40))
}

/// A latency CDF: log x axis (ms), share from 0 to 1.
fn draw_cdf(
    area: &Area<'_>,
    chart: &Chart<'_>,
    title: &str,
    x_label: &str,
    y_label: &str,
) -> anyhow::Result<()> {
    // Latencies at or below zero go to the fastest latency measured: a rise at the left edge,
    // which is how a CDF starts, without stretching the axis decades to the left.
    let floor = chart
        .series
        .iter()
        .flat_map(|s| &s.points)
        .filter(|(x, y)| x.is_finite() && *x > 0.0 && y.is_finite())
        .map(|p| p.0)
        .fold(f64::INFINITY, f64::min);
    let floor = if floor.is_finite() {
        floor
    } else {
        FALLBACK_FLOOR_MS
    };
    let lines: Vec<Vec<(f64, f64)>> = chart
        .series
        .iter()
        .map(|s| drawable(s, SeriesKind::Cdf, floor))
        .collect();
    let (lo, hi) = bounds(lines.iter().flatten().map(|p| p.0)).unwrap_or((floor, floor));
    // A fifth of margin either way on the log scale; one latency alone gets a decade around it.
    let (lo, hi) = if hi > lo {
        (lo / 1.2, hi * 1.2)
    } else {
        (lo / 3.0, lo * 3.0)
    };
    let (lo, hi) = (lo.max(f64::MIN_POSITIVE), hi.min(f64::MAX));
    let mut c = ChartBuilder::on(area)
        .caption(title, caption_style())
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.0)?;
    c.configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 15))
        .bold_line_style(RGBColor(215, 219, 224))
        .light_line_style(RGBColor(240, 242, 244))
        .max_light_lines(4)
        .draw()?;
    draw_lines(&mut c, &lines)?;
    if lines.iter().all(Vec::is_empty) {
        c.draw_series(std::iter::once(no_data((lo * hi).sqrt(), 0.5)))?;
    }
    Ok(())
}

/// A value over time, with the chart's events as labelled vertical markers.
fn draw_timeline(
    area: &Area<'_>,
    chart: &Chart<'_>,
    title: &str,
    x_label: &str,
    y_label: &str,
) -> anyhow::Result<()> {
    let lines: Vec<Vec<(f64, f64)>> = chart
        .series
        .iter()
        .map(|s| drawable(s, SeriesKind::Timeline, 0.0))
        .collect();
    // The x axis spans the events too: a fault after the last sample is still shown.
    let xs = lines
        .iter()
        .flatten()
        .map(|p| p.0)
        .chain(chart.events.iter().map(|e| e.t));
    let (x0, x1) = match bounds(xs) {
        None => (0.0, 1.0),
        Some((lo, hi)) if hi > lo => (lo, hi),
        Some((lo, hi)) => (lo - 1.0, hi + 1.0),
    };
    // From zero, so a dip reads as its true size; headroom at the top for the event labels.
    let (y0, y1) = match bounds(lines.iter().flatten().map(|p| p.1)) {
        None => (0.0, 1.0),
        Some((lo, hi)) => {
            let (lo, hi) = (lo.min(0.0), hi.max(0.0));
            let hi = if hi > lo { hi } else { lo + 1.0 };
            (lo, (hi + (hi - lo) * 0.15).min(f64::MAX))
        }
    };
    let mut c = ChartBuilder::on(area)
        .caption(title, caption_style())
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    c.configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 15))
        .bold_line_style(RGBColor(215, 219, 224))
        .light_line_style(RGBColor(240, 242, 244))
        .max_light_lines(4)
        .draw()?;
    // Markers under the curves, so the curves stay readable where they cross.
    let label_style = TextStyle::from((FONT, 14).into_font())
        .transform(FontTransform::Rotate90)
        .pos(Pos::new(HPos::Left, VPos::Bottom));
    for e in &chart.events {
        let colour = event_colour(&e.kind);
        c.draw_series(DashedLineSeries::new(
            [(e.t, y0), (e.t, y1)],
            6,
            4,
            colour.stroke_width(1),
        ))?;
        c.draw_series(std::iter::once(
            EmptyElement::at((e.t, y1))
                + Text::new(
                    event_label(e, &chart.series),
                    (3, 4),
                    label_style.color(&colour),
                ),
        ))?;
    }
    draw_lines(&mut c, &lines)?;
    if lines.iter().all(Vec::is_empty) {
        c.draw_series(std::iter::once(no_data((x0 + x1) / 2.0, (y0 + y1) / 2.0)))?;
    }
    Ok(())
}

/// What an event's marker says: what happened, with its phase when the chart also shows
/// series of another phase (otherwise the phase is plain from the legend).
fn event_label(e: &Event, series: &[&Series]) -> String {
    let mut label = if e.phase.is_empty() || series.iter().all(|s| s.name.contains(&e.phase)) {
        e.what.clone()
    } else {
        format!("{} ({})", e.what, e.phase)
    };
    if label.chars().count() > MAX_LABEL_CHARS {
        label = label.chars().take(MAX_LABEL_CHARS - 1).collect::<String>() + "…";
    }
    label
}

/// The curves, each in its colour; a series of one point is drawn as a dot, since a line
/// needs two.
fn draw_lines<X, Y>(
    c: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<X, Y>>,
    lines: &[Vec<(f64, f64)>],
) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, points) in lines.iter().enumerate() {
        let colour = series_colour(i);
        match points.as_slice() {
            [] => {}
            [p] => {
                c.draw_series(std::iter::once(Circle::new(*p, 4, colour.filled())))?;
            }
            _ => {
                c.draw_series(LineSeries::new(
                    points.iter().copied(),
                    colour.stroke_width(2),
                ))?;
            }
        }
    }
    Ok(())
}

/// "no data" in the middle of an empty plot, so an empty chart is not read as a broken one.
fn no_data(x: f64, y: f64) -> Text<'static, (f64, f64), &'static str> {
    Text::new(
        "no data",
        (x, y),
        TextStyle::from((FONT, 16).into_font())
            .color(&RGBColor(110, 119, 129))
            .pos(Pos::new(HPos::Center, VPos::Center)),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::bench::model::{self, FORMAT, Machine, Target};

    fn series(name: &str, chart: &str, kind: SeriesKind, points: &[(f64, f64)]) -> Series {
        let (x_label, y_label) = match kind {
            SeriesKind::Cdf => ("latency (ms)", "share of calls"),
            SeriesKind::Timeline => ("seconds since start", "calls/s"),
        };
        Series {
            name: name.into(),
            chart: chart.into(),
            kind,
            x_label: x_label.into(),
            y_label: y_label.into(),
            points: points.to_vec(),
        }
    }

    fn event(t: f64, phase: &str, kind: &str, what: &str) -> Event {
        Event {
            t,
            phase: phase.into(),
            kind: kind.into(),
            what: what.into(),
        }
    }

    fn metric(name: &str, better: Better, samples: &[f64], target: Option<Target>) -> Metric {
        Metric {
            name: name.into(),
            unit: "ms".into(),
            better,
            samples: samples.to_vec(),
            target,
        }
    }

    fn results(name: &str, suites: Vec<Suite>) -> Results {
        Results {
            format: FORMAT,
            name: name.into(),
            started: "2026-11-02T10:00:00Z".into(),
            machine: Machine {
                host: "bench-1".into(),
                cpus: 2,
                cpu_model: "Test CPU @ 3GHz".into(),
                memory_mib: 24 * 1024,
                os: "Debian 12 (Linux 6.1)".into(),
            },
            commit: "f979f37".into(),
            config: BTreeMap::from([
                ("duration".to_owned(), "10s".to_owned()),
                ("repeat".to_owned(), "3".to_owned()),
            ]),
            suites,
            failed: Vec::new(),
        }
    }

    /// Two suites: chaos (a CDF of two series, a timeline with events, a target met and
    /// one missed, a note with markup) and layers (metrics only).
    fn run() -> Results {
        let chaos = Suite {
            name: "chaos".into(),
            metrics: vec![
                metric(
                    "ok_per_s",
                    Better::Higher,
                    &[100.0, 110.0, 105.0],
                    Some(Target::AtLeast(90.0)),
                ),
                metric("p99_ms", Better::Lower, &[12.0], Some(Target::AtMost(10.0))),
            ],
            series: vec![
                series(
                    "ScoreCvss latency, layers on",
                    "latency",
                    SeriesKind::Cdf,
                    &[(0.0, 0.0), (0.5, 0.2), (1.0, 0.6), (4.0, 0.99), (20.0, 1.0)],
                ),
                series(
                    "ScoreCvss latency, layers off",
                    "latency",
                    SeriesKind::Cdf,
                    &[(0.4, 0.1), (0.8, 0.5), (90.0, 1.0)],
                ),
                series(
                    "ok/s, layers on",
                    "throughput",
                    SeriesKind::Timeline,
                    &[(0.0, 100.0), (1.0, 105.0), (2.0, 20.0), (3.0, 98.0)],
                ),
            ],
            events: vec![
                event(1.5, "layers on", "fault", "redis stopped <script>"),
                event(2.5, "", "recovered", "redis started"),
            ],
            notes: vec!["a payload: <script>alert(1)</script> & more".into()],
        };
        let layers = Suite {
            name: "layers".into(),
            metrics: vec![
                metric(
                    "default_vs_tonic",
                    Better::Higher,
                    &[0.85, 0.86],
                    Some(Target::AtLeast(0.8)),
                ),
                metric(
                    "warn_vs_tonic",
                    Better::Higher,
                    &[0.7],
                    Some(Target::AtLeast(0.8)),
                ),
                metric("calls", Better::Neither, &[1000.0], None),
            ],
            ..Default::default()
        };
        results("nightly", vec![chaos, layers])
    }

    /// The table row that names `metric`.
    fn row<'a>(html: &'a str, metric: &str) -> &'a str {
        let at = html
            .find(&format!("<td>{metric}"))
            .unwrap_or_else(|| panic!("no row for {metric}"));
        let start = html[..at].rfind("<tr").expect("row start");
        let end = at + html[at..].find("</tr>").expect("row end");
        &html[start..end]
    }

    #[test]
    fn the_html_report_has_a_chart_per_chart_name_and_marks_each_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reports/run.html");
        write(&path, &run(), None).unwrap();
        let html = std::fs::read_to_string(&path).unwrap();

        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.trim_end().ends_with("</html>"));
        // Two charts in chaos (latency, throughput), none in layers.
        assert_eq!(html.matches("<svg").count(), 2);
        for name in [
            "ok_per_s",
            "p99_ms",
            "default_vs_tonic",
            "warn_vs_tonic",
            "calls",
            "ScoreCvss latency, layers on",
            "ScoreCvss latency, layers off",
            "redis stopped",
            "f979f37",
            "bench-1",
            "duration = 10s",
        ] {
            assert!(html.contains(name), "{name} missing");
        }
        assert!(html.contains("a payload: &lt;script&gt;alert(1)&lt;/script&gt; &amp; more"));
        // In the note, and in the event both in the events table and on the chart.
        assert!(!html.to_ascii_lowercase().contains("<script"));
        assert_eq!(html.matches("redis stopped &lt;script&gt;").count(), 2);

        for (metric, mark) in [
            ("ok_per_s", MET),
            ("default_vs_tonic", MET),
            ("p99_ms", NOT_MET),
            ("warn_vs_tonic", NOT_MET),
        ] {
            assert!(row(&html, metric).contains(mark), "{metric} not {mark}");
        }
        assert!(!row(&html, "ok_per_s").contains(NOT_MET));
        assert!(!row(&html, "calls").contains(MET));
        // Spread only where there are several samples.
        assert!(row(&html, "ok_per_s").contains("100.0 .. 110.0"));
        assert!(!row(&html, "p99_ms").contains(" .. "));
        assert!(html.contains("2/4 targets met"));
    }

    #[test]
    fn the_svg_report_stacks_every_chart_under_its_title() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.SVG");
        write(&path, &run(), None).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();

        assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<svg").count(), 1);
        assert!(svg.contains("xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains("chaos: latency"));
        assert!(svg.contains("chaos: throughput"));
        assert!(svg.contains("phantom bench: nightly"));
        assert!(!svg.contains("<table"));
        assert!(svg.find("chaos: latency") < svg.find("chaos: throughput"));
    }

    #[test]
    fn the_comparison_table_comes_first_and_colours_each_verdict() {
        let a = run();
        let mut b = run();
        b.name = "candidate".into();
        b.suites[0].metrics[0].samples = vec![150.0, 151.0, 152.0];
        b.suites[0].metrics[1].samples = vec![30.0];
        b.suites[1]
            .metrics
            .push(metric("new_ms", Better::Lower, &[1.0], None));
        let (deltas, _) = model::compare(&a, &b, crate::bench::MIN_CHANGE);
        let verdict = |m: &str| deltas.iter().find(|d| d.metric == m).unwrap().verdict;
        assert_eq!(verdict("chaos/ok_per_s"), Verdict::Better);
        assert_eq!(verdict("chaos/p99_ms"), Verdict::Worse);
        assert_eq!(verdict("layers/calls"), Verdict::NoChange);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cmp.html");
        write(&path, &b, Some((&a, &deltas))).unwrap();
        let html = std::fs::read_to_string(&path).unwrap();

        let table = &html[html
            .find("<table class=\"compare\">")
            .expect("no comparison")..];
        assert!(html.find("<table class=\"compare\">") < html.find("id=\"suite-0\""));
        for (metric, class, text) in [
            ("chaos/ok_per_s", "verdict-better", "better"),
            ("chaos/p99_ms", "verdict-worse", "worse"),
            ("layers/calls", "verdict-same", "no change"),
        ] {
            let r = row(table, metric);
            assert!(
                r.starts_with(&format!("<tr class=\"{class}\"")),
                "{metric}: {r}"
            );
            assert!(r.contains(&format!("<td class=\"verdict\">{text}</td>")));
        }
        assert!(row(table, "chaos/ok_per_s").contains("+43.8%"));
        assert!(html.contains("Only in B: layers/new_ms"));
    }

    #[test]
    fn an_event_of_a_phase_marks_only_the_charts_of_that_phase() {
        let suite = Suite {
            name: "chaos".into(),
            series: vec![
                series("ok/s, layers on", "on", SeriesKind::Timeline, &[(0.0, 1.0)]),
                series(
                    "ok/s, layers off",
                    "off",
                    SeriesKind::Timeline,
                    &[(0.0, 1.0)],
                ),
                series("latency", "cdf", SeriesKind::Cdf, &[(1.0, 1.0)]),
            ],
            events: vec![
                event(1.0, "layers off", "fault", "vuln-analyzer killed"),
                event(2.0, "warmup", "shed", "first shed call"),
                event(3.0, "", "recovered", "vuln-analyzer back"),
                event(f64::NAN, "", "fault", "never drawn"),
            ],
            ..Default::default()
        };
        let charts = charts(&suite);
        let whats = |name: &str| {
            charts
                .iter()
                .find(|c| c.name == name)
                .unwrap()
                .events
                .iter()
                .map(|e| e.what.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(whats("on"), ["first shed call", "vuln-analyzer back"]);
        assert_eq!(
            whats("off"),
            [
                "vuln-analyzer killed",
                "first shed call",
                "vuln-analyzer back"
            ]
        );
        assert!(whats("cdf").is_empty());
    }

    #[test]
    fn degenerate_series_are_drawn_without_non_finite_coordinates() {
        let odd = Suite {
            name: "odd".into(),
            metrics: vec![metric(
                "empty",
                Better::Lower,
                &[],
                Some(Target::AtMost(1.0)),
            )],
            series: vec![
                series("nothing", "empty cdf", SeriesKind::Cdf, &[]),
                series("zero", "one point cdf", SeriesKind::Cdf, &[(0.0, 0.5)]),
                series(
                    "mixed",
                    "ragged cdf",
                    SeriesKind::Cdf,
                    &[
                        (-1.0, 0.0),
                        (f64::NAN, 0.1),
                        (0.5, f64::INFINITY),
                        (2.0, 0.7),
                        (f64::INFINITY, 1.0),
                        (8.0, 1.0),
                    ],
                ),
                series(
                    "flat",
                    "one point timeline",
                    SeriesKind::Timeline,
                    &[(3.0, 7.0)],
                ),
                series(
                    "holes",
                    "holes timeline",
                    SeriesKind::Timeline,
                    &[
                        (0.0, f64::NAN),
                        (1.0, f64::NEG_INFINITY),
                        (2.0, 5.0),
                        (3.0, 6.0),
                    ],
                ),
                series("void", "empty timeline", SeriesKind::Timeline, &[]),
            ],
            events: vec![event(10.0, "", "breaker", "breaker open")],
            notes: Vec::new(),
        };
        let bare = Suite {
            name: "bare".into(),
            ..Default::default()
        };
        let r = results("odd", vec![odd, bare]);
        let dir = tempfile::tempdir().unwrap();

        let html_path = dir.path().join("odd.html");
        write(&html_path, &r, None).unwrap();
        let html = std::fs::read_to_string(&html_path).unwrap();
        assert_eq!(html.matches("<svg").count(), 6);
        assert!(row(&html, "empty").contains("no samples"));
        assert!(html.contains("nothing (no data)"));

        let svg_path = dir.path().join("odd.svg");
        write(&svg_path, &r, None).unwrap();
        let svg = std::fs::read_to_string(&svg_path).unwrap();
        for chart in ["empty cdf", "one point cdf", "ragged cdf", "empty timeline"] {
            assert!(svg.contains(&format!("odd: {chart}")), "{chart} missing");
        }
        assert!(!svg.contains("NaN"), "a NaN reached the drawing");
        assert!(!svg.contains("inf"), "an infinity reached the drawing");
        assert!(svg.contains("breaker open"));
    }

    #[test]
    fn a_run_without_series_still_makes_a_valid_svg() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.svg");
        write(&path, &results("empty", vec![Suite::default()]), None).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("This run has no charts."));
    }

    #[test]
    fn escape_replaces_every_character_markup_reads() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(escape("plain ünïcode"), "plain ünïcode");
    }

    #[test]
    fn ticks_keep_three_significant_digits_without_trailing_zeros() {
        assert_eq!(tick(0.001), "0.001");
        assert_eq!(tick(0.25), "0.25");
        assert_eq!(tick(1.0), "1");
        assert_eq!(tick(12.345), "12.3");
        assert_eq!(tick(250.0), "250");
        assert_eq!(tick(20000.0), "20000");
        assert_eq!(tick(0.0), "0");
    }
}
