//! What an upload needs besides its message: the rule for paths on a board, SHA-256 digests in
//! hex, base64 lengths, and the chunk size that keeps every upload message under a payload limit.

use super::error::{shorten, ProtocolError};
use super::limits::{MAX_PATH_LEN, MAX_UPLOAD_CHUNK, UPLOAD_OVERHEAD};

/// Whether `path` names the board's root directory: `""` or `.`.
pub fn is_root_path(path: &str) -> bool {
    path.is_empty() || path == "."
}

/// Checks a path on a board: relative to the board's root, `/`-separated, at most
/// [`MAX_PATH_LEN`] bytes, with no empty, `.` or `..` component, no `\` and no control
/// character. (Symbolic links that leave the root are the board's to refuse: only it can see
/// them.)
pub fn validate_path(path: &str) -> Result<(), ProtocolError> {
    let bad = |problem| Err(ProtocolError::BadPath { path: shorten(path), problem });
    if path.is_empty() {
        return bad("is empty");
    }
    if path.len() > MAX_PATH_LEN {
        return bad("is longer than 255 bytes");
    }
    if path.starts_with('/') {
        return bad("is absolute; paths are relative to the board's root");
    }
    if path.contains('\\') {
        return bad("holds '\\'; separate directories with '/'");
    }
    if path.chars().any(char::is_control) {
        return bad("holds a control character");
    }
    for component in path.split('/') {
        match component {
            "" => return bad("has an empty component"),
            "." | ".." => return bad("has a '.' or '..' component"),
            _ => {}
        }
    }
    Ok(())
}

pub(super) fn check_sha256(field: &'static str, value: &str) -> Result<(), ProtocolError> {
    let ok = value.len() == 64 && value.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if ok {
        Ok(())
    } else {
        Err(ProtocolError::BadSha256 { field, value: shorten(value) })
    }
}

/// The length of base64 text (standard alphabet, padded) for `n` bytes.
pub fn base64_encoded_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// The number of bytes base64 text (standard alphabet, `=` padding) decodes to, or `None` if it
/// is not such text.
pub fn base64_decoded_len(data: &str) -> Option<usize> {
    let bytes = data.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let pad = bytes.iter().rev().take_while(|&&b| b == b'=').count();
    if pad > 2 {
        return None;
    }
    let body = &bytes[..bytes.len() - pad];
    if !body.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/') {
        return None;
    }
    Some(bytes.len() / 4 * 3 - pad)
}

/// The number of file bytes to put in each upload chunk so that every upload `cmd` message fits
/// in `max_payload` bytes (the smaller of the broker's limit and the board's
/// [`Status::max_payload`](super::Status::max_payload)): `max_payload` minus [`UPLOAD_OVERHEAD`], times 3/4 for base64,
/// rounded down to a multiple of 3 and capped at [`MAX_UPLOAD_CHUNK`].
pub fn upload_chunk_size(max_payload: usize) -> Result<usize, ProtocolError> {
    let room = max_payload.saturating_sub(UPLOAD_OVERHEAD);
    let chunk = (room / 4 * 3).min(MAX_UPLOAD_CHUNK);
    if chunk == 0 {
        return Err(ProtocolError::PayloadTooSmall { max_payload });
    }
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::limits::MAX_REQUEST_ID_LEN;
    use crate::board::request::{Op, Request, UploadChunk};
    use crate::board::test_support::SHA_A;

    #[test]
    fn base64_lengths_follow_rfc_4648() {
        assert_eq!(base64_decoded_len(""), Some(0));
        assert_eq!(base64_decoded_len("YQ=="), Some(1));
        assert_eq!(base64_decoded_len("YWI="), Some(2));
        assert_eq!(base64_decoded_len("YWJj"), Some(3));
        assert_eq!(base64_decoded_len("YWJjZA=="), Some(4));
        assert_eq!(base64_decoded_len("+/+/"), Some(3));
        assert_eq!(base64_decoded_len("YWJ"), None);
        assert_eq!(base64_decoded_len("Y==="), None);
        assert_eq!(base64_decoded_len("YW-_"), None);
        assert_eq!(base64_decoded_len("Y=Jj"), None);
        for n in 0..10 {
            assert_eq!(base64_encoded_len(n), [0, 4, 4, 4, 8, 8, 8, 12, 12, 12][n]);
        }
    }

    #[test]
    fn chunk_size_leaves_room_for_the_envelope_and_base64() {
        assert_eq!(upload_chunk_size(UPLOAD_OVERHEAD + 4).unwrap(), 3);
        assert_eq!(upload_chunk_size(UPLOAD_OVERHEAD + 7).unwrap(), 3);
        assert_eq!(upload_chunk_size(UPLOAD_OVERHEAD + 8).unwrap(), 6);
        assert_eq!(upload_chunk_size(4096).unwrap(), 2304);
        assert_eq!(upload_chunk_size(usize::MAX).unwrap(), MAX_UPLOAD_CHUNK);
        assert_eq!(base64_encoded_len(MAX_UPLOAD_CHUNK), 256 * 1024);
        for tiny in [0, 100, UPLOAD_OVERHEAD, UPLOAD_OVERHEAD + 3] {
            assert!(matches!(upload_chunk_size(tiny), Err(ProtocolError::PayloadTooSmall { .. })), "{tiny}");
        }
        assert_eq!(
            upload_chunk_size(1000).unwrap_err().to_string(),
            "a max payload of 1000 bytes leaves no room for upload data \
             (each upload message needs 1024 bytes besides the data)"
        );
    }

    #[test]
    fn worst_case_upload_message_fits_the_payload_it_was_sized_for() {
        for max_payload in [UPLOAD_OVERHEAD + 4, 1500, 4096, 65_536, 268_435_455] {
            let size = upload_chunk_size(max_payload).unwrap();
            let worst = Request {
                id: "i".repeat(MAX_REQUEST_ID_LEN),
                op: Op::Upload(UploadChunk {
                    // Every byte of the longest path needs a two-byte JSON escape.
                    path: "\"".repeat(MAX_PATH_LEN),
                    offset: u64::MAX,
                    data: "A".repeat(base64_encoded_len(size)),
                    chunk_sha256: SHA_A.into(),
                    total_size: u64::MAX,
                    file_sha256: SHA_A.into(),
                    last: false,
                }),
            };
            worst.validate().unwrap_or_else(|e| {
                // Only the offset is out of range; everything that affects the size is legal.
                assert!(matches!(e, ProtocolError::ChunkPastEnd { .. }), "{e}");
            });
            let len = worst.to_json().len();
            assert!(len <= max_payload, "{len} > {max_payload}");
        }
    }
}
