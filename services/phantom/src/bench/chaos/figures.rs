//! The figures of the chaos run, from what its phases recorded: metrics per phase and their
//! ratios, the series to draw, the recoveries as events, and notes on what the figures mean.
//!
//! Only calls sent during a phase's measurement count (not its warm-up); each is judged by
//! its caller's measure: OK within its deadline, or a failure.

use std::{collections::BTreeMap, time::Duration};

use super::{
    Phase, Ran,
    workload::{Call, Kind},
};
use crate::bench::{
    model::{Better, Event, Metric, Series, SeriesKind, Suite, Target},
    percentile,
};

/// A fault is recovered from once the success rate over a sliding window is back to this
/// share of its rate before the fault.
pub(crate) const RECOVERED_SHARE: f64 = 0.95;
/// The sliding window of the recovery, seconds (unscaled).
pub(crate) const WINDOW_S: f64 = 1.0;
/// The reference rate before a fault is taken over this long at most, seconds (unscaled;
/// shorter when the previous fault ended later).
pub(crate) const BEFORE_S: f64 = 4.0;
/// Points of a drawn latency CDF at most.
const CDF_POINTS: usize = 200;

/// How a phase recovered from one fault.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Recovery {
    /// Seconds from the fault lifted until the rate was back; when it never was before the
    /// next fault (or the end), the whole quiet time: a lower bound.
    pub(crate) seconds: f64,
    /// Whether it was back within the quiet time.
    pub(crate) recovered: bool,
    /// The success rate before the fault (0 to 1).
    pub(crate) before: f64,
}

/// The share of `calls` sent in `[from, to)` that succeeded; `None` for no calls.
fn rate(calls: &[Call], from: f64, to: f64) -> Option<f64> {
    let (mut ok, mut all) = (0u64, 0u64);
    for c in calls.iter().filter(|c| c.start >= from && c.start < to) {
        all += 1;
        ok += u64::from(c.ok());
    }
    (all > 0).then(|| ok as f64 / all as f64)
}

/// The recovery from `fault`, given the quiet time around it (`since` the previous fault
/// ended, `until` the next began): the reference is the success rate of the calls sent in
/// the `before` seconds before the fault (at most since `since`); from the lift on, a
/// `window` slides by a tenth of itself until the calls sent in it succeed at
/// [`RECOVERED_SHARE`] of the reference. `None` when no call was sent before the fault.
pub(crate) fn recovery(
    calls: &[Call],
    fault: &Ran,
    since: f64,
    until: f64,
    window: f64,
    before: f64,
) -> Option<Recovery> {
    let reference = rate(calls, (fault.start - before).max(since), fault.start)?;
    let step = window / 10.0;
    let mut k = 0u32;
    loop {
        let t = fault.end + f64::from(k) * step;
        if t + window > until + 1e-9 {
            break;
        }
        if rate(calls, t, t + window).is_some_and(|r| r >= RECOVERED_SHARE * reference) {
            return Some(Recovery {
                seconds: t - fault.end,
                recovered: true,
                before: reference,
            });
        }
        k += 1;
    }
    Some(Recovery {
        seconds: (until - fault.end).max(0.0),
        recovered: false,
        before: reference,
    })
}

fn pct(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        f64::NAN
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The latency CDF of `calls`, at most [`CDF_POINTS`] points: (ms, share at or below).
fn cdf(calls: &[&Call]) -> Points {
    let mut l: Vec<f64> = calls.iter().map(|c| ms(c.latency)).collect();
    l.sort_by(f64::total_cmp);
    let n = l.len();
    if n == 0 {
        return Vec::new();
    }
    let points = n.min(CDF_POINTS);
    (0..points)
        .map(|k| {
            let i = if points == 1 {
                n - 1
            } else {
                k * (n - 1) / (points - 1)
            };
            (l[i], (i + 1) as f64 / n as f64)
        })
        .collect()
}

/// Points of a series: (x, y).
type Points = Vec<(f64, f64)>;

/// Successful calls per second and the success rate, per `bucket` seconds from 0 to
/// `length`.
fn timelines(calls: &[&Call], length: f64, bucket: f64) -> (Points, Points) {
    let buckets = (length / bucket).ceil() as usize;
    let mut ok = vec![0u64; buckets];
    let mut all = vec![0u64; buckets];
    for c in calls {
        let b = ((c.start / bucket) as usize).min(buckets.saturating_sub(1));
        all[b] += 1;
        ok[b] += u64::from(c.ok());
    }
    let goodput = (0..buckets)
        .map(|b| (b as f64 * bucket, ok[b] as f64 / bucket))
        .collect();
    let success = (0..buckets)
        .filter(|&b| all[b] > 0)
        .map(|b| (b as f64 * bucket, ok[b] as f64 * 100.0 / all[b] as f64))
        .collect();
    (goodput, success)
}

/// The headline figures of one phase, for the ratios.
#[derive(Debug, Clone, Copy)]
struct Headline {
    success_rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    goodput: f64,
    wasted: f64,
}

/// The suite: every phase's metrics, series and events, then the ratios of on to off.
pub(crate) fn suite(phases: &[Phase], length: Duration, scale: f64) -> Suite {
    let length_s = length.as_secs_f64();
    let mut suite = Suite {
        name: "chaos".into(),
        ..Suite::default()
    };
    let mut headlines = Vec::new();
    for phase in phases {
        headlines.push((
            phase.layers.key(),
            one_phase(&mut suite, phase, length_s, scale),
        ));
    }
    let (Some((_, on)), Some((_, off))) = (
        headlines.iter().find(|(k, _)| *k == "on"),
        headlines.iter().find(|(k, _)| *k == "off"),
    ) else {
        return suite;
    };
    // The design document's claims, as targets: +25 % reliability, -20 % latency, +25 %
    // throughput with the layers on.
    let ratios = [
        (
            "success_rate",
            on.success_rate,
            off.success_rate,
            Better::Higher,
            Some(Target::AtLeast(1.25)),
        ),
        (
            "p50_ms",
            on.p50_ms,
            off.p50_ms,
            Better::Lower,
            Some(Target::AtMost(0.8)),
        ),
        (
            "p99_ms",
            on.p99_ms,
            off.p99_ms,
            Better::Lower,
            Some(Target::AtMost(0.8)),
        ),
        (
            "goodput",
            on.goodput,
            off.goodput,
            Better::Higher,
            Some(Target::AtLeast(1.25)),
        ),
        ("wasted_calls", on.wasted, off.wasted, Better::Lower, None),
    ];
    for (name, a, b, better, target) in ratios {
        if b > 0.0 && a.is_finite() && b.is_finite() {
            let mut m = Metric::new(&format!("on_vs_off/{name}"), "x", better, a / b);
            m.target = target;
            suite.metrics.push(m);
        } else {
            suite.notes.push(format!(
                "on_vs_off/{name} not given: layers off measured {b} (no ratio to it)"
            ));
        }
    }
    suite
}

/// Adds one phase's figures to `suite`; returns its headline.
fn one_phase(suite: &mut Suite, phase: &Phase, length: f64, scale: f64) -> Headline {
    let key = phase.layers.key();
    let label = phase.layers.label();
    let measured: Vec<Call> = phase
        .record
        .calls
        .iter()
        .filter(|c| c.start >= 0.0 && c.start < length)
        .cloned()
        .collect();
    let all: Vec<&Call> = measured.iter().collect();
    let ok = all.iter().filter(|c| c.ok()).count();
    let latencies: Vec<Duration> = all.iter().map(|c| c.latency).collect();
    let wasted_redis = phase.wasted_redis.unwrap_or(0);
    let headline = Headline {
        success_rate: pct(ok, all.len()),
        p50_ms: ms(percentile(&latencies, 0.5)),
        p99_ms: ms(percentile(&latencies, 0.99)),
        goodput: ok as f64 / length,
        wasted: (phase.wasted_llm + wasted_redis) as f64,
    };
    // A figure of no calls (no scan sent in the phase, say) is not given, rather than NaN.
    let mut undefined = Vec::new();
    let mut metric = |name: &str, unit: &str, better: Better, v: f64| {
        if v.is_finite() {
            suite
                .metrics
                .push(Metric::new(&format!("{key}/{name}"), unit, better, v));
        } else {
            undefined.push(format!("{key}/{name}"));
        }
    };
    metric("success_rate", "%", Better::Higher, headline.success_rate);
    metric("p50_ms", "ms", Better::Lower, headline.p50_ms);
    metric("p99_ms", "ms", Better::Lower, headline.p99_ms);
    // The latency of the calls that succeeded, apart: the figures above are bounded by the
    // deadlines as soon as one call in a hundred fails.
    let ok_latencies: Vec<Duration> = all.iter().filter(|c| c.ok()).map(|c| c.latency).collect();
    metric(
        "ok_p50_ms",
        "ms",
        Better::Lower,
        ms(percentile(&ok_latencies, 0.5)),
    );
    metric(
        "ok_p99_ms",
        "ms",
        Better::Lower,
        ms(percentile(&ok_latencies, 0.99)),
    );
    metric("goodput", "calls/s", Better::Higher, headline.goodput);
    metric("wasted_calls", "calls", Better::Lower, headline.wasted);
    metric(
        "wasted_llm_calls",
        "calls",
        Better::Lower,
        phase.wasted_llm as f64,
    );
    if let Some(w) = phase.wasted_redis {
        metric("wasted_redis_calls", "calls", Better::Lower, w as f64);
    }
    metric("calls", "calls", Better::Neither, all.len() as f64);
    metric(
        "llm_triages",
        "calls",
        Better::Neither,
        phase.llm_triages as f64,
    );
    for kind in [
        Kind::Analyze,
        Kind::Publish,
        Kind::CreateScan,
        Kind::GetScan,
    ] {
        let of: Vec<&&Call> = all.iter().filter(|c| c.kind == kind).collect();
        let ok = of.iter().filter(|c| c.ok()).count();
        metric(
            &format!("{}/success_rate", kind.key()),
            "%",
            Better::Higher,
            pct(ok, of.len()),
        );
    }
    let analyses: Vec<&&Call> = all
        .iter()
        .filter(|c| c.kind == Kind::Analyze && c.ok())
        .collect();
    let degraded = analyses.iter().filter(|c| c.degraded).count();
    metric(
        "analyze/degraded_share",
        "%",
        Better::Lower,
        pct(degraded, analyses.len()),
    );
    let scans: Vec<_> = phase
        .record
        .scans
        .iter()
        .filter(|s| s.start >= 0.0 && s.start < length)
        .collect();
    let completed = scans.iter().filter(|s| s.completed).count();
    metric(
        "scan/completion_rate",
        "%",
        Better::Higher,
        pct(completed, scans.len()),
    );
    let published: Vec<u64> = phase
        .record
        .published
        .iter()
        .filter(|(_, start)| *start >= 0.0 && *start < length)
        .map(|(i, _)| *i)
        .collect();
    let delivered = published
        .iter()
        .filter(|i| phase.delivered.contains(i))
        .count();
    metric(
        "delivery_rate",
        "%",
        Better::Higher,
        pct(delivered, published.len()),
    );

    // Recoveries, each measured in the quiet time around its fault.
    for (i, fault) in phase.faults.iter().enumerate() {
        let since = i.checked_sub(1).map_or(0.0, |p| phase.faults[p].end);
        let until = phase.faults.get(i + 1).map_or(length, |n| n.start);
        let Some(r) = recovery(
            &measured,
            fault,
            since,
            until,
            WINDOW_S * scale,
            BEFORE_S * scale,
        ) else {
            suite.notes.push(format!(
                "{label}: no recovery from {} (no call was sent before it)",
                fault.kind.key()
            ));
            continue;
        };
        metric(
            &format!("recovery_s/{}", fault.kind.key()),
            "s",
            Better::Lower,
            r.seconds,
        );
        if r.recovered {
            suite.events.push(Event {
                t: fault.end + r.seconds,
                phase: label.to_owned(),
                kind: "recovered".into(),
                what: format!(
                    "{}: success rate back to {:.0} % of {:.1} %",
                    fault.kind.key(),
                    RECOVERED_SHARE * 100.0,
                    r.before * 100.0
                ),
            });
        } else {
            suite.notes.push(format!(
                "{label}: not recovered from {} within the {:.1} s before the next fault \
                 (recovery_s/{} = {:.1} is a lower bound)",
                fault.kind.key(),
                r.seconds,
                fault.kind.key(),
                r.seconds
            ));
        }
    }

    // How the calls sent while each fault was on fared.
    for fault in &phase.faults {
        let during: Vec<&&Call> = all
            .iter()
            .filter(|c| c.start >= fault.start && c.start < fault.end)
            .collect();
        let ok = during.iter().filter(|c| c.ok()).count();
        metric(
            &format!("during/{}/success_rate", fault.kind.key()),
            "%",
            Better::Higher,
            pct(ok, during.len()),
        );
    }

    if !undefined.is_empty() {
        suite.notes.push(format!(
            "{label}: not given, as no call was there to measure: {}",
            undefined.join(", ")
        ));
    }

    // Series.
    let (goodput, success) = timelines(&all, length, WINDOW_S * scale);
    suite.series.push(Series {
        name: format!("successful calls/s, {label}"),
        chart: "chaos: goodput over time".into(),
        kind: SeriesKind::Timeline,
        x_label: "s since the phase's start".into(),
        y_label: "successful calls/s".into(),
        points: goodput,
    });
    suite.series.push(Series {
        name: format!("success rate, {label}"),
        chart: "chaos: success rate over time".into(),
        kind: SeriesKind::Timeline,
        x_label: "s since the phase's start".into(),
        y_label: "% of the calls sent in the second".into(),
        points: success,
    });
    suite.series.push(Series {
        name: format!("latency of every call, {label}"),
        chart: "chaos: latency CDF".into(),
        kind: SeriesKind::Cdf,
        x_label: "ms".into(),
        y_label: "share of calls".into(),
        points: cdf(&all),
    });
    if !phase.llm_rate.is_empty() {
        suite.series.push(Series {
            name: format!("LLM adaptive rate, {label}"),
            chart: "chaos: the LLM client's adaptive rate".into(),
            kind: SeriesKind::Timeline,
            x_label: "s since the phase's start".into(),
            y_label: "triages/s allowed".into(),
            points: phase.llm_rate.clone(),
        });
    }
    suite.events.extend(phase.events.iter().cloned());

    // What failed, and how: per kind of call, each status with the message of its first.
    let mut codes = BTreeMap::<(Kind, String), (usize, &str)>::new();
    for c in &all {
        let entry = codes
            .entry((c.kind, format!("{:?}", c.code)))
            .or_insert((0, &c.message));
        entry.0 += 1;
    }
    let mut by_kind = BTreeMap::<Kind, Vec<String>>::new();
    for ((kind, code), (n, message)) in &codes {
        by_kind
            .entry(*kind)
            .or_default()
            .push(if message.is_empty() {
                format!("{code} {n}")
            } else {
                format!("{code} {n} (\"{message}\")")
            });
    }
    let by_kind: Vec<String> = by_kind
        .iter()
        .map(|(kind, codes)| format!("{} {}", kind.key(), codes.join(", ")))
        .collect();
    suite.notes.push(format!(
        "{label}: {} calls: {}; {} triages reached the LLM",
        all.len(),
        by_kind.join("; "),
        phase.llm_triages
    ));
    if let Some(exit) = &phase.exited {
        suite.notes.push(format!(
            "{label}: the system exited during the phase: {exit}"
        ));
    }
    headline
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::chaos::schedule::FaultKind;
    use tonic::Code;

    /// Calls every 10 ms from 0 to 20 s, failing from 5 s until `fail_until`.
    fn calls(fail_until: f64) -> Vec<Call> {
        (0..2000)
            .map(|i| {
                let start = f64::from(i) * 0.01;
                let failing = (5.0..fail_until).contains(&start);
                Call {
                    kind: Kind::Publish,
                    start,
                    latency: Duration::from_millis(3),
                    code: if failing { Code::Unavailable } else { Code::Ok },
                    degraded: false,
                    message: String::new(),
                }
            })
            .collect()
    }

    const FAULT: Ran = Ran {
        kind: FaultKind::RedisDown,
        start: 5.0,
        end: 8.0,
    };

    #[test]
    fn recovery_is_the_time_from_the_lift_until_a_full_window_succeeds_again() {
        let r = recovery(&calls(10.05), &FAULT, 0.0, 20.0, 1.0, 4.0).unwrap();
        assert!(r.recovered);
        assert_eq!(r.before, 1.0);
        // The window from 2 s after the lift holds 5 failures in 100 calls: 95 %, enough; the
        // one a step (0.1 s) before holds 15.
        assert!((r.seconds - 2.0).abs() < 1e-9, "{r:?}");
        let at_once = recovery(&calls(8.0), &FAULT, 0.0, 20.0, 1.0, 4.0).unwrap();
        assert_eq!(at_once.seconds, 0.0);
    }

    #[test]
    fn a_fault_not_recovered_from_before_the_next_one_gives_a_lower_bound() {
        let r = recovery(&calls(20.0), &FAULT, 0.0, 14.0, 1.0, 4.0).unwrap();
        assert!(!r.recovered);
        assert_eq!(r.seconds, 6.0);
        assert!(recovery(&[], &FAULT, 0.0, 14.0, 1.0, 4.0).is_none());
    }

    #[test]
    fn the_reference_rate_is_taken_after_the_previous_fault_only() {
        // Failing from 5 s to 10 s, and a fault from 11 s: the reference starts at 10 s, so
        // the earlier failures do not lower it.
        let fault = Ran {
            kind: FaultKind::DbLatency,
            start: 11.0,
            end: 12.0,
        };
        let r = recovery(&calls(10.0), &fault, 10.0, 20.0, 1.0, 4.0).unwrap();
        assert_eq!(r.before, 1.0);
        let r = recovery(&calls(10.0), &fault, 0.0, 20.0, 1.0, 4.0).unwrap();
        assert!(r.before < 1.0);
    }

    #[test]
    fn timelines_and_cdfs_cover_every_call() {
        let c = calls(10.0);
        let all: Vec<&Call> = c.iter().collect();
        let (goodput, success) = timelines(&all, 20.0, 1.0);
        assert_eq!(goodput.len(), 20);
        assert_eq!(goodput[0], (0.0, 100.0));
        assert_eq!(goodput[6], (6.0, 0.0));
        assert_eq!(success[6], (6.0, 0.0));
        let points = cdf(&all);
        assert_eq!(points.len(), CDF_POINTS);
        assert_eq!(points.last(), Some(&(3.0, 1.0)));
    }
}
