//! The Prometheus text exposition format: a family's `# HELP` and `# TYPE` lines, then one line
//! per sample, `name{label="value",...} number`, with label values and help text escaped as the
//! format asks. Roost's counters are plain atomics that `/api/v1/status` reads too, so this small
//! writer is all `/metrics` needs; a metrics crate would keep a second set of counters in a
//! registry of its own. [`crate::stats`] says which families there are.

use std::fmt::Write as _;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Labels of one sample, `(name, value)`; names are fixed identifiers, values any text.
pub type Labels<'a> = [(&'a str, &'a str)];

/// Writes a family's `# HELP` and `# TYPE` lines to `out`; its samples follow.
pub fn family<'a>(out: &'a mut String, name: &'a str, kind: Kind, help: &str) -> Family<'a> {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {}", kind.as_str());
    Family { out, name }
}

/// A family being written: add its samples.
pub struct Family<'a> {
    out: &'a mut String,
    name: &'a str,
}

impl Family<'_> {
    /// `name{labels} value`.
    pub fn sample(&mut self, labels: &Labels, value: f64) -> &mut Self {
        self.suffixed("", labels, value)
    }

    /// `name_suffix{labels} value`: a histogram's `_bucket`, `_sum` and `_count` samples.
    pub fn suffixed(&mut self, suffix: &str, labels: &Labels, value: f64) -> &mut Self {
        let out = &mut *self.out;
        out.push_str(self.name);
        out.push_str(suffix);
        for (i, (name, value)) in labels.iter().enumerate() {
            debug_assert!(is_label_name(name), "{name:?} is not a label name");
            out.push(if i == 0 { '{' } else { ',' });
            let _ = write!(out, "{name}=\"{}\"", escape(value));
        }
        if !labels.is_empty() {
            out.push('}');
        }
        out.push(' ');
        push_value(out, value);
        out.push('\n');
        self
    }
}

/// A sample value: integers without a fraction, infinities as `+Inf`/`-Inf`.
fn push_value(out: &mut String, v: f64) {
    match v {
        f64::INFINITY => out.push_str("+Inf"),
        f64::NEG_INFINITY => out.push_str("-Inf"),
        v => {
            let _ = write!(out, "{v}");
        }
    }
}

/// Escapes a label value: backslash, double quote and line feed.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_is_its_help_and_type_then_its_samples() {
        let mut out = String::new();
        family(&mut out, "roost_up", Kind::Gauge, "Whether it is up.").sample(&[], 1.0);
        family(&mut out, "roost_x_total", Kind::Counter, "X.")
            .sample(&[("sink", "a"), ("kind", "sqlite")], 7.0)
            .sample(&[("sink", "b"), ("kind", "mysql")], 0.5);
        assert_eq!(
            out,
            "# HELP roost_up Whether it is up.\n# TYPE roost_up gauge\nroost_up 1\n\
             # HELP roost_x_total X.\n# TYPE roost_x_total counter\n\
             roost_x_total{sink=\"a\",kind=\"sqlite\"} 7\nroost_x_total{sink=\"b\",kind=\"mysql\"} 0.5\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut out = String::new();
        family(&mut out, "m", Kind::Counter, "a \\ b\nc \"d\"")
            .sample(&[("l", "back\\slash \"quoted\"\nnew line")], 1.0);
        assert_eq!(
            out,
            "# HELP m a \\\\ b\\nc \"d\"\n# TYPE m counter\n\
             m{l=\"back\\\\slash \\\"quoted\\\"\\nnew line\"} 1\n"
        );
    }

    #[test]
    fn histogram_samples_carry_their_suffix_and_infinities_are_spelled_out() {
        let mut out = String::new();
        family(&mut out, "d", Kind::Histogram, "D.")
            .suffixed("_bucket", &[("le", "+Inf")], 2.0)
            .suffixed("_sum", &[], 60.003)
            .sample(&[], f64::INFINITY);
        assert!(out.ends_with("d_bucket{le=\"+Inf\"} 2\nd_sum 60.003\nd +Inf\n"), "{out}");
        assert!(out.contains("# TYPE d histogram\n"));
    }

    #[test]
    fn integers_print_without_a_fraction() {
        let mut out = String::new();
        push_value(&mut out, 12_345_678_901.0);
        assert_eq!(out, "12345678901");
    }
}
