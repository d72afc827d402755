//! Metrics as structured samples: what a component reports about itself, before any text
//! format.
//!
//! Every snapshot type of the layers (a breaker's, a limiter's…) implements [`Describe`]:
//! it names its own metrics, their help and type, and their labels. A component outside the
//! layers (a cache, a connection pool) implements [`Source`] and is registered in the
//! service's [`Registry`](crate::registry::Registry) like a breaker. The samples travel as
//! they are (`phantom.v1.Metrics` carries them as messages); only the edge that serves
//! `/metrics` turns them into text.

use std::collections::BTreeMap;

/// What a family's samples are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (`…_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Cumulative buckets, a count and a sum.
    Histogram,
}

/// A histogram's value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramValue {
    /// Cumulative counts by upper bound (without `+Inf`, which is [`HistogramValue::count`]).
    pub buckets: Vec<(f64, u64)>,
    /// Observations.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
}

/// One sample: its labels (sorted by name) and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Label names and values, sorted by name.
    pub labels: Vec<(String, String)>,
    /// The value of a counter or a gauge (a histogram's count).
    pub value: f64,
    /// A histogram's buckets, count and sum.
    pub histogram: Option<HistogramValue>,
}

/// One metric: its help, its kind and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// What it measures.
    pub help: String,
    /// What its samples are.
    pub kind: Kind,
    /// Its samples.
    pub samples: Vec<Sample>,
}

/// Metric families by name, being gathered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Families(pub BTreeMap<String, Family>);

fn sorted(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    labels
}

impl Families {
    fn family(&mut self, name: &str, help: &str, kind: Kind) -> &mut Family {
        self.0.entry(name.to_owned()).or_insert_with(|| Family {
            help: help.to_owned(),
            kind,
            samples: Vec::new(),
        })
    }

    /// Adds a counter sample.
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.push(name, help, Kind::Counter, labels, value);
    }

    /// Adds a gauge sample.
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.push(name, help, Kind::Gauge, labels, value);
    }

    fn push(&mut self, name: &str, help: &str, kind: Kind, labels: &[(&str, &str)], value: f64) {
        self.family(name, help, kind).samples.push(Sample {
            labels: sorted(labels),
            value,
            histogram: None,
        });
    }

    /// Adds a histogram sample.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: HistogramValue,
    ) {
        self.family(name, help, Kind::Histogram)
            .samples
            .push(Sample {
                labels: sorted(labels),
                value: value.count as f64,
                histogram: Some(value),
            });
    }

    /// Adds every sample of `other`, each with the extra label `name="value"` (a family
    /// `self` already has keeps its help and kind).
    pub fn merge(&mut self, other: Self, (name, value): (&str, &str)) {
        for (family, f) in other.0 {
            let mine = self.family(&family, &f.help, f.kind);
            for mut sample in f.samples {
                sample.labels.retain(|(k, _)| k != name);
                sample.labels.push((name.to_owned(), value.to_owned()));
                sample.labels.sort();
                mine.samples.push(sample);
            }
        }
    }

    /// How many samples there are, over every family.
    pub fn len(&self) -> usize {
        self.0.values().map(|f| f.samples.len()).sum()
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.0.values().all(|f| f.samples.is_empty())
    }
}

/// A snapshot that names its own metrics.
pub trait Describe {
    /// Adds this snapshot's samples to `out`.
    fn describe(&self, out: &mut Families);
}

/// A component outside the layers (a cache, a pool) that reports its own metrics and state
/// to the registry it is registered in.
pub trait Source: Send + Sync + std::fmt::Debug {
    /// Adds its samples to `out`.
    fn describe(&self, out: &mut Families);

    /// Its state, as `/health/metrics` shows it (a JSON object).
    fn state(&self) -> serde_json::Value;

    /// What it is, as `/health/metrics` groups sources: `"cache"` unless it says otherwise
    /// (a client's balancer says `"balancer"`).
    fn kind(&self) -> &'static str {
        "cache"
    }

    /// Itself, for a caller that knows its type (a test reading a cache's statistics).
    fn as_any(&self) -> &dyn std::any::Any;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merge_labels_every_sample_and_keeps_one_family_per_name() {
        let mut a = Families::default();
        a.counter("a_total", "As.", &[("x", "1")], 3.0);
        let mut all = Families::default();
        all.merge(a.clone(), ("service", "notifier"));
        all.merge(a, ("service", "vuln-analyzer"));
        let family = &all.0["a_total"];
        assert_eq!(family.samples.len(), 2);
        assert_eq!(
            family.samples[0].labels,
            [
                ("service".to_owned(), "notifier".to_owned()),
                ("x".to_owned(), "1".to_owned())
            ]
        );
        assert_eq!(all.len(), 2);
    }
}
