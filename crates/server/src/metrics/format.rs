//! The two formats `/metrics` answers in, and the choice between them.
//!
//! `prometheus_client` encodes only OpenMetrics 1.0. A scraper that asks for it (Prometheus
//! does, in its `Accept`) gets that text unchanged. Every other client (curl, older scrapers,
//! `promtool check metrics`) gets the Prometheus text format 0.0.4, converted here from the
//! OpenMetrics text: a counter family is named with its `_total` suffix in `# HELP` and
//! `# TYPE` (as its samples are), `unknown` becomes `untyped`, and what the text format lacks
//! (`# UNIT`, `_created` samples, exemplars, `# EOF`) is left out.

use spillway_core::{Error, Result};

/// The media type of OpenMetrics 1.0 text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The media type of the Prometheus text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The media type of OpenMetrics, without parameters.
const OPENMETRICS: &str = "application/openmetrics-text";
/// The media type of the text format, without parameters.
const TEXT: &str = "text/plain";

/// A format `/metrics` answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0, for scrapers that ask for `application/openmetrics-text`.
    OpenMetrics,
    /// The Prometheus text format 0.0.4, for everyone else.
    Text,
}

impl Format {
    /// The format for a request's `Accept` header: OpenMetrics when it accepts
    /// `application/openmetrics-text` (any version) with a quality above zero and at least as
    /// high as that of `text/plain`; the text format otherwise, also without a header.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let (mut openmetrics, mut text) = (0.0_f32, 0.0_f32);
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim();
            let quality = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1.0), |(_, q)| q.trim().parse::<f32>().ok())
                .unwrap_or(0.0);
            if media.eq_ignore_ascii_case(OPENMETRICS) {
                openmetrics = openmetrics.max(quality);
            } else if media.eq_ignore_ascii_case(TEXT) {
                text = text.max(quality);
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Format::Text => TEXT_CONTENT_TYPE,
        }
    }

    /// `openmetrics` (as `prometheus_client` encodes it) in this format.
    pub fn encode(self, openmetrics: String) -> Result<String> {
        match self {
            Format::OpenMetrics => Ok(openmetrics),
            Format::Text => to_text(&openmetrics),
        }
    }
}

/// Convert OpenMetrics text to the Prometheus text format 0.0.4. An internal error when the text
/// holds a type the text format cannot express (`gaugehistogram`, `stateset`).
pub fn to_text(openmetrics: &str) -> Result<String> {
    let mut out = String::with_capacity(openmetrics.len());
    // The family whose descriptor came last; a `# HELP` comes before its `# TYPE`, so it is
    // held until the type (and with it the name) is known.
    let mut help: Option<(&str, &str)> = None;
    let mut typed = false;
    // The current family's `_created` samples, which only OpenMetrics has.
    let mut created: Option<String> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| bad_line(line))?;
            let (text_kind, suffix) = match kind {
                "counter" => ("counter", "_total"),
                "gauge" => ("gauge", ""),
                "histogram" => ("histogram", ""),
                "summary" => ("summary", ""),
                "unknown" => ("untyped", ""),
                "info" => ("gauge", "_info"),
                other => {
                    return Err(Error::internal(format!(
                        "metric family {name:?} is of type {other:?}, which the Prometheus text format cannot express: answer in OpenMetrics"
                    )));
                }
            };
            // The samples' name: `prometheus_client` appends the suffix to every counter
            // and info sample, even to a family registered with it.
            let text_name = format!("{name}{suffix}");
            if let Some((help_name, text)) = help.take()
                && help_name == name
            {
                out.push_str(&format!("# HELP {text_name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {text_name} {text_kind}\n"));
            typed = true;
            created = matches!(kind, "counter" | "histogram" | "summary")
                .then(|| format!("{name}_created"));
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let sample = Sample::parse(line)?;
        if created.as_deref() == Some(sample.name) {
            continue;
        }
        if !typed {
            return Err(Error::internal(format!(
                "metrics sample {line:?} comes before any # TYPE line"
            )));
        }
        out.push_str(sample.series);
        out.push(' ');
        out.push_str(sample.value);
        if let Some(seconds) = sample.timestamp {
            let seconds: f64 = seconds.parse().map_err(|_| bad_line(line))?;
            // Milliseconds in the text format; exact for any timestamp a clock gives.
            out.push_str(&format!(" {}", (seconds * 1000.0).round() as i64));
        }
        out.push('\n');
    }
    Ok(out)
}

/// One sample line: its series (name and labels), value and optional timestamp; an exemplar
/// after them is left out.
struct Sample<'a> {
    name: &'a str,
    series: &'a str,
    value: &'a str,
    timestamp: Option<&'a str>,
}

impl<'a> Sample<'a> {
    fn parse(line: &'a str) -> Result<Self> {
        let at = line.find(['{', ' ']).ok_or_else(|| bad_line(line))?;
        let name = &line[..at];
        let end_of_series = if line[at..].starts_with('{') {
            closing_brace(line, at)? + 1
        } else {
            at
        };
        let series = &line[..end_of_series];
        let rest = line[end_of_series..]
            .split(" # ")
            .next()
            .unwrap_or_default();
        let mut fields = rest.split_whitespace();
        let value = fields.next().ok_or_else(|| bad_line(line))?;
        Ok(Sample {
            name,
            series,
            value,
            timestamp: fields.next(),
        })
    }
}

/// Where the label set opened at `open` ends, skipping braces inside quoted values.
fn closing_brace(line: &str, open: usize) -> Result<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (at, c) in line.char_indices().skip_while(|(i, _)| *i <= open) {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Ok(at),
            _ => {}
        }
    }
    Err(bad_line(line))
}

fn bad_line(line: &str) -> Error {
    Error::internal(format!("metrics line {line:?} is not OpenMetrics"))
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    use super::*;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Labels {
        queue: String,
    }

    fn openmetrics(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).expect("encodes");
        text
    }

    #[test]
    fn negotiation_prefers_openmetrics_only_when_asked_for() {
        use Format::*;
        let cases = [
            (None, Text),
            (Some(""), Text),
            (Some("*/*"), Text),
            (Some("text/plain"), Text),
            (Some("text/plain;version=0.0.4"), Text),
            (Some("application/json"), Text),
            (Some("application/openmetrics-text"), OpenMetrics),
            (
                Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                OpenMetrics,
            ),
            (
                Some("Application/OpenMetrics-Text;version=0.0.1"),
                OpenMetrics,
            ),
            // What Prometheus 2.x sends.
            (
                Some(
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                OpenMetrics,
            ),
            (
                Some("text/plain;q=0.9, application/openmetrics-text;q=0.5"),
                Text,
            ),
            (
                Some("text/plain;q=0.5, application/openmetrics-text;q=0.9"),
                OpenMetrics,
            ),
            (Some("application/openmetrics-text;q=0"), Text),
            (Some("application/openmetrics-text;q=oops"), Text),
        ];
        for (accept, want) in cases {
            assert_eq!(Format::negotiate(accept), want, "Accept: {accept:?}");
        }
    }

    #[test]
    fn content_types_name_each_format_and_version() {
        assert_eq!(
            Format::OpenMetrics.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert_eq!(
            Format::Text.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
    }

    #[test]
    fn counters_are_named_with_total_in_help_and_type() {
        let mut registry = Registry::default();
        let family = Family::<Labels, Counter>::default();
        registry.register("jobs", "Jobs done", family.clone());
        let empty = Counter::<u64>::default();
        registry.register("never_counted", "Not counted yet", empty);
        let already = Counter::<u64>::default();
        already.inc_by(3);
        registry.register("reads_total", "Registered with the suffix", already);
        family.get_or_create(&Labels { queue: "q1".into() }).inc();
        let text = to_text(&openmetrics(&registry)).expect("converts");
        assert_eq!(
            text,
            "# HELP jobs_total Jobs done.\n\
             # TYPE jobs_total counter\n\
             jobs_total{queue=\"q1\"} 1\n\
             # HELP never_counted_total Not counted yet.\n\
             # TYPE never_counted_total counter\n\
             never_counted_total 0\n\
             # HELP reads_total_total Registered with the suffix.\n\
             # TYPE reads_total_total counter\n\
             reads_total_total 3\n"
        );
    }

    #[test]
    fn gauges_keep_their_names_and_values() {
        let mut registry = Registry::default();
        let int = Gauge::<i64>::default();
        int.set(-4);
        registry.register("depth", "Depth", int);
        let float = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        float
            .get_or_create(&Labels {
                // prometheus_client does not escape label values; the server's are names
                // that cannot hold a quote, but braces and '#' must not confuse the scanner.
                queue: "a {brace} # x".into(),
            })
            .set(1.5);
        registry.register("age_seconds", "Age", float);
        let text = to_text(&openmetrics(&registry)).expect("converts");
        assert_eq!(
            text,
            "# HELP depth Depth.\n\
             # TYPE depth gauge\n\
             depth -4\n\
             # HELP age_seconds Age.\n\
             # TYPE age_seconds gauge\n\
             age_seconds{queue=\"a {brace} # x\"} 1.5\n"
        );
    }

    #[test]
    fn histograms_keep_buckets_sum_and_count() {
        let mut registry = Registry::default();
        let histogram = Histogram::new([1.0, 2.0]);
        histogram.observe(1.5);
        registry.register("took_seconds", "Took", histogram);
        let text = to_text(&openmetrics(&registry)).expect("converts");
        assert_eq!(
            text,
            "# HELP took_seconds Took.\n\
             # TYPE took_seconds histogram\n\
             took_seconds_sum 1.5\n\
             took_seconds_count 1\n\
             took_seconds_bucket{le=\"1.0\"} 0\n\
             took_seconds_bucket{le=\"2.0\"} 1\n\
             took_seconds_bucket{le=\"+Inf\"} 1\n"
        );
    }

    #[test]
    fn what_only_openmetrics_has_is_left_out_or_converted() {
        let openmetrics = "# HELP rows Rows.\n\
                           # TYPE rows counter\n\
                           # UNIT rows rows\n\
                           rows_total{a=\"x # y\"} 2 1700000000.5 # {trace=\"t\"} 1.0\n\
                           rows_created 1700000000.0\n\
                           # HELP mystery Something.\n\
                           # TYPE mystery unknown\n\
                           mystery 7\n\
                           # HELP build Build.\n\
                           # TYPE build info\n\
                           build_info{version=\"1\"} 1\n\
                           # EOF\n";
        let text = to_text(openmetrics).expect("converts");
        assert_eq!(
            text,
            "# HELP rows_total Rows.\n\
             # TYPE rows_total counter\n\
             rows_total{a=\"x # y\"} 2 1700000000500\n\
             # HELP mystery Something.\n\
             # TYPE mystery untyped\n\
             mystery 7\n\
             # HELP build_info Build.\n\
             # TYPE build_info gauge\n\
             build_info{version=\"1\"} 1\n"
        );
    }

    #[test]
    fn types_the_text_format_lacks_are_refused() {
        let err = to_text("# TYPE sizes gaugehistogram\nsizes_gcount 1\n# EOF\n")
            .expect_err("no gaugehistogram in the text format");
        assert!(err.message().contains("sizes"), "{}", err.message());
    }

    #[test]
    fn the_openmetrics_answer_is_unchanged() {
        let text = "# HELP a A.\n# TYPE a counter\na_total 1\n# EOF\n";
        assert_eq!(
            Format::OpenMetrics
                .encode(text.to_string())
                .expect("encodes"),
            text
        );
        assert!(
            !Format::Text
                .encode(text.to_string())
                .expect("encodes")
                .contains("# EOF")
        );
    }
}
