//! MQTT topic filters (`+` and `#` wildcards) and Roost's telemetry topic convention.

use thiserror::Error;

/// Why a topic filter is not valid MQTT.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("topic filter is empty")]
    Empty,
    #[error("topic filter {0:?}: '#' must be the last level, alone")]
    BadMultiLevel(String),
    #[error("topic filter {0:?}: '+' must occupy a whole level")]
    BadSingleLevel(String),
    #[error("topic filter {0:?} contains a NUL character")]
    Nul(String),
}

/// Checks that `filter` is a valid MQTT topic filter.
pub fn validate_filter(filter: &str) -> Result<(), FilterError> {
    if filter.is_empty() {
        return Err(FilterError::Empty);
    }
    if filter.contains('\0') {
        return Err(FilterError::Nul(filter.to_owned()));
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i != levels.len() - 1) {
            return Err(FilterError::BadMultiLevel(filter.to_owned()));
        }
        if level.contains('+') && *level != "+" {
            return Err(FilterError::BadSingleLevel(filter.to_owned()));
        }
    }
    Ok(())
}

/// Whether `topic` matches the (valid) MQTT topic filter `filter`.
///
/// Follows MQTT 3.1.1 section 4.7: topics starting with `$` are not matched by a filter that
/// starts with a wildcard.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether some topic matches both (valid) filters `a` and `b`, at any depth: what an ACL asks
/// of a SUBSCRIBE's filter against a protected topic pattern. `a/#` also matches `a` itself,
/// so `roost/boards/+/+/#` overlaps `roost/boards/+/cmd`. (It ignores the `$` rule of
/// [`matches`]: it may answer `true` for filters that only meet on a `$` topic, never `false`
/// for filters that meet.)
pub fn overlaps(a: &str, b: &str) -> bool {
    let mut a = a.split('/');
    let mut b = b.split('/');
    loop {
        match (a.next(), b.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (None, None) => return true,
            (Some(x), Some(y)) if x == "+" || y == "+" || x == y => {}
            _ => return false,
        }
    }
}

/// Whether every topic the (valid) filter `filter` matches is also matched by the (valid) filter
/// `pattern`: what an ACL asks of a SUBSCRIBE's filter against the patterns a client may read.
/// (`a/#` covers `a` and `a/+/b`; `a/+` does not cover `a/#`; a pattern starting with a
/// wildcard covers no filter for `$` topics.)
pub fn covers(pattern: &str, filter: &str) -> bool {
    if filter.starts_with('$') && (pattern.starts_with('+') || pattern.starts_with('#')) {
        return false;
    }
    let mut p = pattern.split('/');
    let mut f = filter.split('/');
    loop {
        match (p.next(), f.next()) {
            (Some("#"), _) => return true,
            (_, Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(pl), Some(fl)) if pl == fl && fl != "+" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The telemetry convention: `devices/{device}/{measurement}`.
///
/// Returns `(device, measurement)`; the measurement is `None` for `devices/{device}` and is the
/// rest of the topic after the device otherwise (`devices/d1/env/indoor` -> `env/indoor`).
pub fn device_topic(topic: &str) -> Option<(&str, Option<&str>)> {
    let rest = topic.strip_prefix("devices/")?;
    let (device, measurement) = match rest.split_once('/') {
        Some((d, m)) => (d, Some(m).filter(|m| !m.is_empty())),
        None => (rest, None),
    };
    (!device.is_empty()).then_some((device, measurement))
}

#[cfg(test)]
mod overlap_tests {
    use super::*;
    use proptest::prelude::*;

    /// A topic both filters match, if `overlaps` says there is one: literals where either has
    /// one, `x` where both have `+`, the other's rest where one has `#`.
    fn witness(a: &str, b: &str) -> String {
        let (a, b): (Vec<&str>, Vec<&str>) = (a.split('/').collect(), b.split('/').collect());
        fn literal<'a>(l: &&'a str) -> &'a str {
            if *l == "+" {
                "x"
            } else {
                l
            }
        }
        fn rest<'a>(f: &[&'a str], i: usize) -> Vec<&'a str> {
            f.get(i..).unwrap_or_default().iter().filter(|l| **l != "#").map(literal).collect()
        }
        let mut out = Vec::new();
        for i in 0.. {
            match (a.get(i), b.get(i)) {
                (Some(&"#"), _) => out.extend(rest(&b, i)),
                (_, Some(&"#")) => out.extend(rest(&a, i)),
                (None, None) => {}
                (Some(x), Some(y)) => {
                    out.push(if *x == "+" { literal(y) } else { x });
                    continue;
                }
                _ => unreachable!("overlapping filters end together or at a #"),
            }
            break;
        }
        out.join("/")
    }

    fn filter() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["roost", "boards", "b-1", "cmd", "x", "", "+"]);
        (prop::collection::vec(level, 1..6), any::<bool>()).prop_map(|(levels, hash)| {
            let mut f = levels.join("/");
            if hash {
                f.push_str("/#");
            }
            f
        })
    }

    fn topic() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["roost", "boards", "b-1", "cmd", "x", ""]);
        prop::collection::vec(level, 1..7).prop_map(|l| l.join("/"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn filters_that_match_one_topic_overlap(a in filter(), b in filter(), t in topic()) {
            if matches(&a, &t) && matches(&b, &t) {
                prop_assert!(overlaps(&a, &b), "{a} and {b} both match {t}");
            }
        }

        #[test]
        fn a_covering_pattern_matches_every_topic_the_filter_matches(p in filter(), f in filter(), t in topic()) {
            if covers(&p, &f) && matches(&f, &t) {
                prop_assert!(matches(&p, &t), "{p} covers {f}, which matches {t}, but {p} does not");
            }
        }

        #[test]
        fn every_filter_covers_itself_and_hash_covers_all(f in filter()) {
            prop_assert!(covers(&f, &f));
            prop_assert!(covers("#", &f));
        }

        #[test]
        fn overlapping_filters_match_one_topic(a in filter(), b in filter()) {
            prop_assert_eq!(overlaps(&a, &b), overlaps(&b, &a));
            if overlaps(&a, &b) {
                let t = witness(&a, &b);
                prop_assert!(matches(&a, &t) && matches(&b, &t), "{a} and {b}: {t} should match both");
            }
        }
    }

    #[test]
    fn covering_is_about_every_topic_not_some() {
        assert!(covers("devices/d-1/#", "devices/d-1"));
        assert!(covers("devices/d-1/#", "devices/d-1/+/x"));
        assert!(covers("devices/+/env", "devices/d-1/env"));
        assert!(!covers("devices/d-1/#", "devices/+/env"), "+ reaches other devices");
        assert!(!covers("devices/d-1/+", "devices/d-1/#"));
        assert!(!covers("devices/d-1/env", "devices/d-1/+"));
        assert!(!covers("#", "$SYS/#"));
        assert!(covers("$SYS/#", "$SYS/broker"));
    }

    #[test]
    fn deeper_filters_overlap_shallower_patterns() {
        assert!(overlaps("roost/boards/+/+/#", "roost/boards/+/cmd"));
        assert!(overlaps("roost/boards/+/cmd/#", "roost/boards/+/cmd"));
        assert!(overlaps("+/boards/#", "roost/boards/+/reply"));
        assert!(overlaps("#", "roost/boards/+/cmd"));
        assert!(!overlaps("roost/boards/+/status", "roost/boards/+/cmd"));
        assert!(!overlaps("roost/boards/+/cmd/x", "roost/boards/+/cmd"));
        assert!(!overlaps("roost/+", "roost/boards/+/cmd"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_the_mqtt_spec() {
        assert!(matches("devices/#", "devices/d1/env"));
        assert!(matches("devices/#", "devices"));
        assert!(matches("devices/+/env", "devices/d1/env"));
        assert!(!matches("devices/+/env", "devices/d1/power"));
        assert!(!matches("devices/+", "devices/d1/env"));
        assert!(matches("#", "anything/at/all"));
        assert!(!matches("#", "$SYS/broker"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(matches("+/+", "/x"));
    }

    #[test]
    fn invalid_filters_are_refused() {
        assert_eq!(validate_filter(""), Err(FilterError::Empty));
        assert!(validate_filter("a/#/b").is_err());
        assert!(validate_filter("a/b#").is_err());
        assert!(validate_filter("a/b+/c").is_err());
        assert!(validate_filter("devices/+/env").is_ok());
        assert!(validate_filter("#").is_ok());
    }

    #[test]
    fn device_topic_convention() {
        assert_eq!(device_topic("devices/d1/env"), Some(("d1", Some("env"))));
        assert_eq!(device_topic("devices/d1/env/in"), Some(("d1", Some("env/in"))));
        assert_eq!(device_topic("devices/d1"), Some(("d1", None)));
        assert_eq!(device_topic("devices/d1/"), Some(("d1", None)));
        assert_eq!(device_topic("devices/"), None);
        assert_eq!(device_topic("other/d1/env"), None);
    }
}
