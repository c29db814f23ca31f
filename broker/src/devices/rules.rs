//! Who may connect as whom, and what an authenticated device may publish: pure rules, applied
//! by the broker's hooks (`mqtt/hooks.rs`).
//!
//! - A client with a verified certificate (a TLS listener with `client_ca`) is the device its
//!   certificate's common name names, which must be registered; no secret is asked, and the
//!   client id follows the same rule as below.
//! - A client that gives a username naming a registered device must give that device's secret,
//!   and its client id must be the device's name (rule `exact`) or `<name>:<anything>` (rule
//!   `prefix`; `:` cannot appear in a device name, so one device's client ids never look like
//!   another's).
//! - Anyone else is anonymous: let in only where the listener allows anonymous clients, and
//!   never under a registered device's name, as username or client id (a client id is what MQTT
//!   hands a session over by: taking one would take over the device's session).
//! - An authenticated device publishes and subscribes only where `[acl]` says ([`DeviceAcl`]; by
//!   default its own `devices/<its name>/` and, for subscriptions, its own board `cmd` too);
//!   its board topics follow the board rules ([`crate::boards::acl`]) as well.

use roost_core::topic;
use serde::{Deserialize, Serialize};

/// How a device's client id must relate to its name (`mqtt.client_id_rule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientIdRule {
    /// The client id is the device name.
    #[default]
    Exact,
    /// The client id is the device name, or the name, `:` and anything.
    Prefix,
}

/// What an MQTT 3.1.1 client whose publish is refused gets (`mqtt.refused_publish`): 3.1.1 has
/// no way to say so in the PUBACK. MQTT 5 clients always get a reason code and stay connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefusedPublish {
    /// The PUBACK is sent and the message dropped (counted, logged).
    #[default]
    Drop,
    /// The connection is closed, so the client notices.
    Disconnect,
}

/// A connecting client, as the CONNECT packet describes it.
#[derive(Debug, Clone, Copy)]
pub struct Connect<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub has_password: bool,
    /// The common name of the client certificate the TLS listener verified ("" if it has none).
    pub certificate: Option<&'a str>,
}

/// What to do with a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Check the password against this device's secret.
    Verify(&'a str),
    /// Let in as this device: its certificate says so.
    Certified(&'a str),
    /// Let in as an anonymous client.
    Anonymous,
    /// Refuse: a bad username or password (CONNACK 0x04 / 0x86).
    BadCredentials(&'static str),
    /// Refuse: not authorized (CONNACK 0x05 / 0x87).
    NotAuthorized(&'static str),
}

/// The device that owns `client_id` under the prefix rule (`name` or `name:...`).
pub fn client_id_owner(client_id: &str) -> &str {
    client_id.split_once(':').map_or(client_id, |(name, _)| name)
}

/// Decides a CONNECT. `registered` says whether a name is a device with credentials.
pub fn check_connect<'a>(
    c: Connect<'a>,
    rule: ClientIdRule,
    anonymous_allowed: bool,
    registered: impl Fn(&str) -> bool,
) -> Verdict<'a> {
    if let Some(name) = c.certificate {
        if !registered(name) {
            return Verdict::NotAuthorized(
                "the client certificate's common name is no registered device (add it with `roost device add`)",
            );
        }
        return check_client_id(c.client_id, name, rule)
            .map_or_else(Verdict::NotAuthorized, Verdict::Certified);
    }
    if let Some(name) = c.username.filter(|u| registered(u)) {
        if !c.has_password {
            return Verdict::BadCredentials("a registered device must give its secret as the password");
        }
        return check_client_id(c.client_id, name, rule).map_or_else(Verdict::NotAuthorized, Verdict::Verify);
    }
    if !anonymous_allowed {
        return Verdict::NotAuthorized(if c.username.is_some() {
            "no such device (add it with `roost device add`)"
        } else {
            "credentials are required on this listener"
        });
    }
    if registered(c.client_id) || registered(client_id_owner(c.client_id)) {
        return Verdict::NotAuthorized(
            "the client id belongs to a registered device; connect with its credentials",
        );
    }
    Verdict::Anonymous
}

/// `name` if `client_id` is one device `name` may use under `rule`.
fn check_client_id<'a>(client_id: &str, name: &'a str, rule: ClientIdRule) -> Result<&'a str, &'static str> {
    let ok = match rule {
        ClientIdRule::Exact => client_id == name,
        ClientIdRule::Prefix => client_id_owner(client_id) == name,
    };
    match (ok, rule) {
        (true, _) => Ok(name),
        (false, ClientIdRule::Exact) => Err("the client id must be the device name"),
        (false, ClientIdRule::Prefix) => {
            Err("the client id must be the device name or start with it and ':'")
        }
    }
}

/// What registered devices may publish and subscribe to (`[acl]`): topic filters in which
/// `{device}` stands for the device's name. Board topics (`roost/boards/...`) follow the board
/// rules as well ([`crate::boards::acl`]); anonymous clients are not bound by these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceAcl {
    /// Where a device may publish (outside the board topics, which follow the board rules).
    #[serde(default = "default_publish")]
    pub publish: Vec<String>,
    /// What a device may subscribe to: a filter is granted only if one of these matches every
    /// topic it matches.
    #[serde(default = "default_subscribe")]
    pub subscribe: Vec<String>,
}

fn default_publish() -> Vec<String> {
    vec!["devices/{device}/#".into()]
}

fn default_subscribe() -> Vec<String> {
    vec!["devices/{device}/#".into(), "roost/boards/{device}/cmd".into()]
}

impl Default for DeviceAcl {
    fn default() -> Self {
        DeviceAcl { publish: default_publish(), subscribe: default_subscribe() }
    }
}

impl DeviceAcl {
    /// Every pattern is a valid topic filter once `{device}` is filled in.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let lists = [("acl.publish", &self.publish), ("acl.subscribe", &self.subscribe)];
        for (key, patterns) in lists {
            for p in patterns.iter() {
                topic::validate_filter(&p.replace("{device}", "d"))
                    .map_err(|e| (key.to_owned(), e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Whether `device` may publish on `topic`.
    pub fn may_publish(&self, device: &str, topic: &str) -> bool {
        self.publish.iter().any(|p| topic::matches(&p.replace("{device}", device), topic))
    }

    /// Whether `device` may subscribe to `filter`.
    pub fn may_subscribe(&self, device: &str, filter: &str) -> bool {
        self.subscribe.iter().any(|p| topic::covers(&p.replace("{device}", device), filter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect<'a>(client_id: &'a str, username: Option<&'a str>, has_password: bool) -> Connect<'a> {
        Connect { client_id, username, has_password, certificate: None }
    }

    #[test]
    fn a_certificate_names_a_registered_device_and_its_client_id() {
        let cert = |client_id, cn, rule| {
            let c = Connect { client_id, username: None, has_password: false, certificate: Some(cn) };
            check_connect(c, rule, false, registered)
        };
        assert_eq!(cert("sensor-1", "sensor-1", ClientIdRule::Exact), Verdict::Certified("sensor-1"));
        assert_eq!(cert("sensor-1:b", "sensor-1", ClientIdRule::Prefix), Verdict::Certified("sensor-1"));
        assert!(matches!(cert("sensor-2", "sensor-1", ClientIdRule::Exact), Verdict::NotAuthorized(_)));
        // A certificate for a device that is not (or no longer) registered, or without a name.
        assert!(matches!(cert("sensor-9", "sensor-9", ClientIdRule::Exact), Verdict::NotAuthorized(_)));
        assert!(matches!(cert("x", "", ClientIdRule::Exact), Verdict::NotAuthorized(_)));
        // The certificate decides, whatever username and password come with it.
        let c = Connect {
            client_id: "sensor-1",
            username: Some("sensor-2"),
            has_password: true,
            certificate: Some("sensor-1"),
        };
        assert_eq!(check_connect(c, ClientIdRule::Exact, false, registered), Verdict::Certified("sensor-1"));
    }

    fn registered(name: &str) -> bool {
        ["sensor-1", "sensor-2"].contains(&name)
    }

    #[test]
    fn a_registered_device_must_give_its_secret_and_its_own_client_id() {
        let check = |c, rule, anon| check_connect(c, rule, anon, registered);
        assert_eq!(
            check(connect("sensor-1", Some("sensor-1"), true), ClientIdRule::Exact, false),
            Verdict::Verify("sensor-1")
        );
        assert!(matches!(
            check(connect("sensor-1", Some("sensor-1"), false), ClientIdRule::Exact, true),
            Verdict::BadCredentials(_)
        ));
        assert!(matches!(
            check(connect("sensor-2", Some("sensor-1"), true), ClientIdRule::Exact, true),
            Verdict::NotAuthorized(_)
        ));
        assert!(matches!(
            check(connect("sensor-1:a", Some("sensor-1"), true), ClientIdRule::Exact, true),
            Verdict::NotAuthorized(_)
        ));
        assert_eq!(
            check(connect("sensor-1:a", Some("sensor-1"), true), ClientIdRule::Prefix, false),
            Verdict::Verify("sensor-1")
        );
        // A prefix without the separator is another name.
        assert!(matches!(
            check(connect("sensor-10", Some("sensor-1"), true), ClientIdRule::Prefix, true),
            Verdict::NotAuthorized(_)
        ));
    }

    #[test]
    fn anonymous_clients_only_where_allowed_and_never_under_a_device_name() {
        let check = |c, anon| check_connect(c, ClientIdRule::Exact, anon, registered);
        assert_eq!(check(connect("probe", None, false), true), Verdict::Anonymous);
        assert!(matches!(check(connect("probe", None, false), false), Verdict::NotAuthorized(_)));
        // An unregistered username is only a label on an anonymous listener...
        assert_eq!(check(connect("b-7", Some("b-7"), false), true), Verdict::Anonymous);
        // ...and refused on one that needs credentials.
        assert!(matches!(check(connect("b-7", Some("b-7"), true), false), Verdict::NotAuthorized(_)));
        // Taking over a device's session by its client id.
        assert!(matches!(check(connect("sensor-1", None, false), true), Verdict::NotAuthorized(_)));
        assert!(matches!(
            check(connect("sensor-1:x", Some("other"), false), true),
            Verdict::NotAuthorized(_)
        ));
    }

    #[test]
    fn a_device_publishes_telemetry_only_under_its_own_name() {
        let acl = DeviceAcl::default();
        assert!(acl.may_publish("sensor-1", "devices/sensor-1/env"));
        assert!(acl.may_publish("sensor-1", "devices/sensor-1"));
        assert!(!acl.may_publish("sensor-1", "devices/sensor-2/env"));
        assert!(!acl.may_publish("sensor-1", "devices/sensor-10/env"));
        assert!(!acl.may_publish("sensor-1", "other/topic"));
        assert!(!acl.may_publish("sensor-1", "devices"));
    }

    #[test]
    fn a_device_subscribes_only_to_its_own_topics_and_commands() {
        let acl = DeviceAcl::default();
        assert!(acl.may_subscribe("b-1", "devices/b-1/config"));
        assert!(acl.may_subscribe("b-1", "devices/b-1/#"));
        assert!(acl.may_subscribe("b-1", "roost/boards/b-1/cmd"));
        assert!(!acl.may_subscribe("b-1", "devices/+/config"), "reaches other devices");
        assert!(!acl.may_subscribe("b-1", "devices/#"));
        assert!(!acl.may_subscribe("b-1", "roost/boards/b-2/cmd"));
        assert!(!acl.may_subscribe("b-1", "#"));
    }

    #[test]
    fn operators_add_patterns_with_the_device_placeholder() {
        let acl = DeviceAcl {
            publish: vec!["sites/+/{device}/#".into()],
            subscribe: vec!["config/{device}".into(), "broadcast/#".into()],
        };
        assert!(acl.validate().is_ok());
        assert!(acl.may_publish("d-1", "sites/lab/d-1/env"));
        assert!(!acl.may_publish("d-1", "devices/d-1/env"), "the defaults are replaced");
        assert!(acl.may_subscribe("d-1", "config/d-1"));
        assert!(acl.may_subscribe("d-1", "broadcast/+/firmware"));
        assert!(!acl.may_subscribe("d-1", "config/+"));
        let bad = DeviceAcl { publish: vec!["a/#/b".into()], subscribe: vec![] };
        assert_eq!(bad.validate().unwrap_err().0, "acl.publish");
    }
}
