//! Reading the bridge's `/metrics` answer (Prometheus text): its series, by name and labels.

/// A `/metrics` answer.
pub(crate) struct Metrics(pub(crate) String);

/// One series line: name, labels, value.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) value: f64,
}

impl Sample {
    pub(crate) fn label(&self, k: &str) -> Option<&str> {
        self.labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
}

impl Metrics {
    /// Every series line (comments skipped).
    pub(crate) fn samples(&self) -> Vec<Sample> {
        self.0.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).map(parse_sample).collect()
    }

    /// The series named `name` whose labels include all of `labels`.
    pub(crate) fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<Sample> {
        self.samples().into_iter().filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v))).collect()
    }

    /// The value of the one series named `name` with `labels`; panics if there is not exactly one.
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.find(name, labels);
        assert_eq!(found.len(), 1, "exactly one series {name}{labels:?} in /metrics, found {found:?}; /metrics:\n{}", self.0);
        found[0].value
    }

    /// Like [`Metrics::value`], 0 when the series does not exist (yet).
    pub(crate) fn value_or_zero(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels).first().map_or(0.0, |s| s.value)
    }
}

/// `name{k="v",...} value` (label values here never hold `"` or `,`).
fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("a metrics line: {line:?}"));
    let value: f64 = value.parse().unwrap_or_else(|_| panic!("a numeric value: {line:?}"));
    let (name, labels) = match series.split_once('{') {
        Some((n, rest)) => {
            let inner = rest.strip_suffix('}').unwrap_or_else(|| panic!("labels end with `}}`: {line:?}"));
            let labels = inner
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or_else(|| panic!("a label pair: {line:?}"));
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            (n.to_string(), labels)
        }
        None => (series.to_string(), Vec::new()),
    };
    Sample { name, labels, value }
}
