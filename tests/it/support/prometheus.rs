//! Reading a scraped Prometheus text exposition.

/// The value of the series written exactly as `series` (name and labels), if the
/// text has it.
pub fn prometheus_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}
