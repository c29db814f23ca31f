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
