//! The test data copied into `tests/data/`, each file read only when its
//! sha256 is the recorded one (provenance in `tests/data/README.md`).

use sha2::Digest;

/// A copied data file and its recorded sha256.
#[derive(Clone, Copy, Debug)]
pub struct DataFile {
    pub path: &'static str,
    pub sha256: &'static str,
}

/// Signatures and tokens made by real signing clients (Node.js, npm
/// jsonwebtoken, Python hmac, PyJWT) running the seed documents' snippets.
pub const SEED_VECTORS: DataFile = DataFile {
    path: concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/seed_vectors.json"),
    sha256: "32c4946cb87359e7c9c33861e3ea70d3237259fa59cebddde41a7a7188b4481f",
};

/// Project Wycheproof's HMAC-SHA256 `MacTest`s.
pub const WYCHEPROOF_HMAC: DataFile = DataFile {
    path: concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/wycheproof/hmac_sha256_test.json"),
    sha256: "2d201cfa61d1bf95e6f5d07d96634b4a348b31e8eaa277ad7c8d09677b7a743f",
};

/// Project Wycheproof's JSON Web Signature tests.
pub const WYCHEPROOF_JWS: DataFile = DataFile {
    path: concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/wycheproof/json_web_signature_test.json"),
    sha256: "8e687a06fe8359f4ec51480f1a9f73c8faebd6f4c01b818b843b44eee54fd5d9",
};

/// Wycheproof's licence (Apache-2.0), kept beside its vectors.
pub const WYCHEPROOF_LICENSE: DataFile = DataFile {
    path: concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/wycheproof/LICENSE"),
    sha256: "58d1e17ffe5109a7ae296caafcadfdbe6a7d176f0bc4ab01e12a689b0499d8bd",
};

/// Every copied data file.
pub const ALL: [DataFile; 4] = [SEED_VECTORS, WYCHEPROOF_HMAC, WYCHEPROOF_JWS, WYCHEPROOF_LICENSE];

/// The lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

impl DataFile {
    /// The file's bytes, refused unless their sha256 is the recorded one.
    pub fn read(&self) -> Vec<u8> {
        let path = self.path;
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read test data file {path}: {e}"));
        let actual = sha256_hex(&bytes);
        assert!(
            actual == self.sha256,
            "test data file {path} has sha256 {actual}, expected {}: it is not a byte-identical copy of its \
             source; restore it (see tests/data/README.md) instead of changing the checksum",
            self.sha256
        );
        bytes
    }
}
