//! The sizes both ends of the board protocol agree on: the longest board name, request id and
//! path, and the room an upload message needs besides its data.

/// The longest board name, in characters.
pub const MAX_BOARD_NAME_LEN: usize = 64;

/// The longest request id, in characters.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// The longest path on a board, in bytes (UTF-8).
pub const MAX_PATH_LEN: usize = 255;

/// Bytes of an upload `cmd` message that are not chunk data: the JSON keys and punctuation, two
/// SHA-256 digests, two offsets, a request id of up to [`MAX_REQUEST_ID_LEN`] characters and a
/// path of up to [`MAX_PATH_LEN`] bytes even if every byte needs a JSON escape of two bytes.
pub const UPLOAD_OVERHEAD: usize = 1024;

/// The largest upload chunk, in bytes before base64 (256 KiB once encoded), whatever the
/// broker allows: it bounds the memory a board needs for one message and keeps progress steady.
pub const MAX_UPLOAD_CHUNK: usize = 192 * 1024;
