//! What the board protocol's unit tests share: two SHA-256 digests and the check that a message
//! serializes to exactly the JSON the protocol document shows.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// SHA-256 of `a`.
pub const SHA_A: &str = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";
/// SHA-256 of `abc`.
pub const SHA_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

/// Serializes to exactly `json`, and `json` parses back to `message`.
pub fn pinned<T>(message: &T, json: &str)
where
    T: Serialize + DeserializeOwned + PartialEq + fmt::Debug,
{
    assert_eq!(serde_json::to_string(message).unwrap(), json);
    assert_eq!(&serde_json::from_str::<T>(json).unwrap(), message);
}
