//! Device secrets: 32 random bytes shown once as 64 hex characters, stored only as an argon2id
//! hash (PHC string). Verifying costs tens of milliseconds on purpose; [`super::Devices`] keeps
//! the outcome of a good verification in memory so that reconnects do not pay it again.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// A new random secret.
pub fn generate() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The argon2id hash of `secret`, with a random salt, as a PHC string.
pub fn hash(secret: &str) -> String {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).expect("16 bytes is a valid salt");
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .expect("argon2 with default parameters")
        .to_string()
}

/// Whether `secret` matches the stored `hash` (false for a hash that cannot be read).
pub fn verify(secret: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(secret.as_bytes(), &h).is_ok())
}

/// A fast fingerprint of a secret already verified, for the in-memory cache (never stored).
pub fn fingerprint(secret: &str, salt: &[u8; 16]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(salt);
    h.update(secret.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_verifies_against_its_hash_only() {
        let s = generate();
        assert_eq!(s.len(), 64);
        let h = hash(&s);
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!h.contains(&s));
        assert!(verify(&s, &h));
        assert!(!verify(&generate(), &h));
        assert!(!verify(&s, "not a hash"));
        assert_ne!(hash(&s), h, "salted");
    }
}
