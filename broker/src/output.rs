//! How the CLI prints: rows as aligned columns, and durations and ages as a person would say
//! them. The command modules (`cli`, `boards::cli`, `processors::cli`, ...) share these and
//! import nothing from each other.

/// Rows as left-aligned columns two spaces apart.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|v| v.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> =
            row.iter().enumerate().map(|(c, v)| format!("{v:<w$}", w = widths[c])).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A duration in seconds, two units at most: `5s`, `3m12s`, `2h1m`, `1d1h`.
pub fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

/// A size in bytes, in the largest binary unit that keeps it at 1 or more: `512 B`, `1.5 KiB`, `3.0 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// How long before `now` the moment `then` was (both in Unix milliseconds), in one unit:
/// `12s ago`, `3m ago`, `2h ago`, `4d ago`.
pub fn ago(now_ms: u64, then_ms: u64) -> String {
    let s = now_ms.saturating_sub(then_ms) / 1000;
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(192), "3m12s");
        assert_eq!(human_duration(7300), "2h1m");
        assert_eq!(human_duration(90000), "1d1h");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn ages_use_the_largest_whole_unit() {
        assert_eq!(ago(10_000, 10_000), "0s ago");
        assert_eq!(ago(70_000, 10_000), "1m ago");
        assert_eq!(ago(7_300_000, 0), "2h ago");
        assert_eq!(ago(0, 5_000), "0s ago", "a time in the future is now");
        assert_eq!(ago(90_000_000, 0), "1d ago");
    }

    #[test]
    fn table_pads_columns() {
        let rows = vec![vec!["A".to_string(), "BB".to_string()], vec!["ccc".to_string(), "d".to_string()]];
        assert_eq!(table(&rows), "A    BB\nccc  d\n");
    }
}
