//! The table and the JSON of a benchmark run.

use std::fmt::Write;

use crate::bench::traffic::{Traffic, agree};

/// One scenario's results.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub(crate) scenario: &'static str,
    pub(crate) events: u64,
    pub(crate) kind: RowKind,
    /// Each side's traffic over its runs (gen-stage, baseline), where the scenario
    /// counts it.
    pub(crate) traffic: (Option<Traffic>, Option<Traffic>),
}

#[derive(Clone, Debug)]
pub(crate) enum RowKind {
    /// Events per second of each run.
    Throughput {
        gen_stage: Vec<f64>,
        baseline: Vec<f64>,
    },
    /// Peak resident KiB with N and with 10 N events.
    Memory {
        small: Option<u64>,
        large: Option<u64>,
    },
}

/// Median, min and max.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    };
    (
        median,
        sorted.first().copied().unwrap_or(0.0),
        sorted.last().copied().unwrap_or(0.0),
    )
}

impl Row {
    pub(crate) fn throughput(
        scenario: &'static str,
        events: u64,
        gen_stage: Vec<f64>,
        baseline: Vec<f64>,
    ) -> Self {
        Row {
            scenario,
            events,
            kind: RowKind::Throughput {
                gen_stage,
                baseline,
            },
            traffic: (None, None),
        }
    }

    /// The row with each side's traffic.
    pub(crate) fn with_traffic(
        mut self,
        gen_stage: Option<Traffic>,
        baseline: Option<Traffic>,
    ) -> Self {
        self.traffic = (gen_stage, baseline);
        self
    }

    /// The row's line of the traffic table, if a side counted its traffic.
    pub(crate) fn traffic_line(&self) -> Option<String> {
        let (gen_stage, baseline) = self.traffic;
        if gen_stage.is_none() && baseline.is_none() {
            return None;
        }
        let rates = |traffic: Option<Traffic>| match traffic.map(|t| t.per_thousand()) {
            Some((deliveries, asks)) => format!("{deliveries:>11.2} {asks:>9.2}"),
            None => format!("{:>11} {:>9}", "-", "-"),
        };
        let verdict = match (gen_stage, baseline) {
            (Some(g), Some(b)) => {
                let ((g_deliveries, g_asks), (b_deliveries, b_asks)) =
                    (g.per_thousand(), b.per_thousand());
                if agree(g_deliveries, b_deliveries) && agree(g_asks, b_asks) {
                    "same"
                } else {
                    "differ"
                }
            }
            _ => "-",
        };
        Some(format!(
            "{:<22} {}   {}   {}",
            self.scenario,
            rates(gen_stage),
            rates(baseline),
            verdict
        ))
    }

    pub(crate) fn memory(
        scenario: &'static str,
        events: u64,
        small: Option<u64>,
        large: Option<u64>,
    ) -> Self {
        Row {
            scenario,
            events,
            kind: RowKind::Memory { small, large },
            traffic: (None, None),
        }
    }

    /// gen-stage's median over the baseline's (throughput), or the 10 N peak over the
    /// N peak (memory).
    pub(crate) fn ratio(&self) -> Option<f64> {
        match &self.kind {
            RowKind::Throughput {
                gen_stage,
                baseline,
            } => {
                let base = spread(baseline).0;
                (base > 0.0).then(|| spread(gen_stage).0 / base)
            }
            RowKind::Memory {
                small: Some(small),
                large: Some(large),
            } if *small > 0 => Some(*large as f64 / *small as f64),
            RowKind::Memory { .. } => None,
        }
    }

    /// The row as a line of the table.
    pub(crate) fn line(&self) -> String {
        let ratio = self.ratio().map_or("-".to_string(), |r| format!("{r:.2}"));
        match &self.kind {
            RowKind::Throughput {
                gen_stage,
                baseline,
            } => {
                let (g, g_min, g_max) = spread(gen_stage);
                let (b, _, _) = spread(baseline);
                format!(
                    "{:<22} {:>9.2} M/s ({:>8.2} .. {:>8.2}) {:>9.2} M/s {:>7}",
                    self.scenario,
                    g / 1e6,
                    g_min / 1e6,
                    g_max / 1e6,
                    b / 1e6,
                    ratio
                )
            }
            RowKind::Memory { small, large } => {
                let kib = |v: &Option<u64>| {
                    v.map_or("n/a".to_string(), |v| {
                        format!("{:.1} MiB", v as f64 / 1024.0)
                    })
                };
                format!(
                    "{:<22} peak {} with {} events, {} with 10x; ratio {}",
                    self.scenario,
                    kib(small),
                    self.events,
                    kib(large),
                    ratio
                )
            }
        }
    }
}

/// Every scenario run.
#[derive(Clone, Debug, Default)]
pub(crate) struct Report {
    pub(crate) rows: Vec<Row>,
}

pub(crate) const HEADER: &str =
    "scenario               gen-stage median (min .. max)            baseline median   ratio";

/// The traffic table's header: per 1000 events, each side's deliveries and asks.
pub(crate) const TRAFFIC_HEADER: &str = "per 1000 events        gen-stage: deliveries      asks   \
     baseline: deliveries      asks   (within 1 %)";

/// What the traffic table's baseline asks are for the `linear` rows.
pub(crate) const TRAFFIC_NOTE: &str = "asks: demand messages sent by the consumers; the \
     baselines other than credit have none, and count instead the channel slot each batch received \
     frees for the sender (their window is two batches, not max_demand)";

/// What the `_wide` rows are, printed under the table.
pub(crate) const WIDE_NOTE: &str = "_wide: the same topology with max_demand 4 and min_demand 3 of the \
     baseline's batches (4000 and 3000; 1000 and 750 for partition), as many events in flight as \
     the baseline (not one of the issue's scenarios)";

/// What the `credit_` rows are, printed under the table.
pub(crate) const CREDIT_NOTE: &str = "credit_mdN: linear_mdN against the demand protocol written by \
     hand (asks of max_demand - min_demand, one batch per ask): the same window, so the ratio is \
     what the library costs beyond the protocol (not one of the issue's scenarios)";

impl Report {
    /// The JSON array: one object per scenario.
    pub(crate) fn json(&self) -> String {
        let mut out = String::from("[\n");
        for (index, row) in self.rows.iter().enumerate() {
            let ratio = row
                .ratio()
                .map_or("null".to_string(), |r| format!("{r:.4}"));
            let _ = write!(
                out,
                "  {{\"scenario\": \"{}\", \"events\": {}",
                row.scenario, row.events
            );
            match &row.kind {
                RowKind::Throughput {
                    gen_stage,
                    baseline,
                } => {
                    let (g, g_min, g_max) = spread(gen_stage);
                    let (b, b_min, b_max) = spread(baseline);
                    let _ = write!(
                        out,
                        ", \"gen_stage_eps\": {g:.0}, \"gen_stage_min_eps\": {g_min:.0}, \"gen_stage_max_eps\": {g_max:.0}, \
                         \"baseline_eps\": {b:.0}, \"baseline_min_eps\": {b_min:.0}, \"baseline_max_eps\": {b_max:.0}, \
                         \"runs\": {}, \"ratio\": {ratio}",
                        gen_stage.len()
                    );
                    for (side, traffic) in
                        [("gen_stage", row.traffic.0), ("baseline", row.traffic.1)]
                    {
                        if let Some(traffic) = traffic {
                            let (deliveries, asks) = traffic.per_thousand();
                            let _ = write!(
                                out,
                                ", \"{side}_deliveries_per_1k\": {deliveries:.3}, \"{side}_asks_per_1k\": {asks:.3}"
                            );
                        }
                    }
                    out.push('}');
                }
                RowKind::Memory { small, large } => {
                    let kib = |v: &Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
                    let _ = write!(
                        out,
                        ", \"gen_stage_eps\": null, \"baseline_eps\": null, \"peak_kib_n\": {}, \"peak_kib_10n\": {}, \"ratio\": {ratio}}}",
                        kib(small),
                        kib(large)
                    );
                }
            }
            out.push_str(if index + 1 < self.rows.len() {
                ",\n"
            } else {
                "\n"
            });
        }
        out.push(']');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(spread(&[4.0, 1.0, 2.0, 3.0]).0, 2.5);
        let row = Row::throughput("x", 10, vec![2.0, 4.0, 6.0], vec![2.0]);
        assert_eq!(row.ratio(), Some(2.0));
        let memory = Row::memory("m", 10, Some(100), Some(105));
        assert_eq!(memory.ratio(), Some(1.05));
    }

    #[test]
    fn json_has_the_documented_keys() {
        let report = Report {
            rows: vec![Row::throughput("linear_md1", 10, vec![1.0], vec![2.0])],
        };
        let json = report.json();
        for key in [
            "\"scenario\": \"linear_md1\"",
            "\"gen_stage_eps\": 1",
            "\"baseline_eps\": 2",
            "\"ratio\": 0.5000",
        ] {
            assert!(json.contains(key), "{key} missing from {json}");
        }
    }
}
