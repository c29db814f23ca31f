//! The JSON coding the three message types share: parsing a payload into a [`ProtocolError`]
//! that names its channel, serializing, and taking one field out of a message by hand (for the
//! messages whose fields sit beside a tagged body).

use serde::de::{self, DeserializeOwned};
use serde::Serialize;
use serde_json::{Map, Value};

use super::channel::Channel;
use super::error::ProtocolError;

pub(super) fn from_json<T: DeserializeOwned>(payload: &[u8], channel: Channel) -> Result<T, ProtocolError> {
    serde_json::from_slice(payload).map_err(|source| ProtocolError::Malformed { channel, source })
}

pub(super) fn to_json<T: Serialize>(message: &T) -> Vec<u8> {
    // The message types hold only strings, numbers, booleans and JSON values, which always
    // serialize.
    serde_json::to_vec(message).expect("board protocol messages serialize to JSON")
}

/// Removes `key` from a message's fields and deserializes it.
pub(super) fn take_field<T: DeserializeOwned, E: de::Error>(
    fields: &mut Map<String, Value>,
    key: &'static str,
) -> Result<T, E> {
    let value = fields.remove(key).ok_or_else(|| E::missing_field(key))?;
    T::deserialize(value).map_err(|e| E::custom(format_args!("field `{key}`: {e}")))
}
