//! Device secrets: 32 random bytes shown once as 64 hex characters, stored only as an argon2id
//! hash (PHC string), with a small cost ([`params`] says why); [`super::Devices`] also keeps the
//! outcome of a good verification in memory so that reconnects do not pay it again.

use std::cell::RefCell;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// A new random secret.
pub fn generate() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

thread_local! {
    /// argon2's working memory, allocated once per thread and reused: allocating and freeing it
    /// for every check fragments the heap (with argon2's default 19 MiB, a node checking
    /// thousands of devices kept gigabytes it no longer used).
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// argon2 of `secret` and `salt` with `argon2`, into `out`, in this thread's reused memory.
fn argon2_into(argon2: &Argon2<'_>, blocks: usize, secret: &[u8], salt: &[u8], out: &mut [u8]) -> bool {
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        argon2.hash_password_into_with_memory(secret, salt, out, &mut memory[..blocks]).is_ok()
    })
}

/// The cost of new hashes: 1 MiB, one pass. A device secret is 256 random bits, so guessing it
/// is out of reach however cheap one guess is; argon2's usual cost (19 MiB, two passes) guards
/// passwords people choose, and here would only make 10,000 devices reconnecting after a restart
/// wait minutes for their checks. Hashes made with other parameters keep verifying with theirs.
fn params() -> Params {
    Params::new(1024, 1, 1, None).expect("valid argon2 parameters")
}

/// The argon2id hash of `secret`, with a random salt, as a PHC string.
pub fn hash(secret: &str) -> String {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).expect("16 bytes is a valid salt");
    let params = params();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let mut salt_bytes = [0u8; 16];
    let raw_salt = salt.decode_b64(&mut salt_bytes).expect("a salt just encoded");
    assert!(
        argon2_into(&argon2, params.block_count(), secret.as_bytes(), raw_salt, &mut out),
        "argon2 with default parameters"
    );
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).expect("default parameters"),
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).expect("32 bytes is a valid output")),
    };
    phc.to_string()
}

/// Whether `secret` matches the stored `hash` (false for a hash that cannot be read).
pub fn verify(secret: &str, hash: &str) -> bool {
    let Ok(phc) = PasswordHash::new(hash) else { return false };
    let (Some(expected), Some(salt)) = (phc.hash, phc.salt) else { return false };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(phc.algorithm), Params::try_from(&phc)) else {
        return false;
    };
    let version = match phc.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(raw_salt) = salt.decode_b64(&mut salt_bytes) else { return false };
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    // `Output` compares in constant time.
    argon2_into(&argon2, blocks, secret.as_bytes(), raw_salt, &mut out)
        && Output::new(&out).is_ok_and(|o| o == expected)
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

    #[test]
    fn hashes_agree_with_the_argon2_crate_both_ways() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let s = generate();
        // Made by an earlier Roost (the crate's own hasher) and verified here...
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let theirs = Argon2::default().hash_password(s.as_bytes(), &salt).unwrap().to_string();
        assert!(verify(&s, &theirs));
        assert!(!verify("wrong", &theirs));
        // ...and made here, verified by the crate.
        let ours = hash(&s);
        assert!(ours.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{ours}");
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(s.as_bytes(), &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"wrong", &parsed).is_err());
    }
}
