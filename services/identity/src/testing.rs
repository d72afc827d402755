//! JWT signing keys minted at test time (feature `testing`; not part of the production API):
//! what a test issuer signs with, and the JWKS it publishes. No key is ever checked in.

use aws_lc_rs::{
    encoding::{AsDer, Pkcs8V1Der},
    rsa::{KeyPair as RsaKeyPair, KeySize},
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair},
};
use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{Jwk, JwkSet},
};

/// A signing key of a test issuer, and its public JWK named `kid`.
#[derive(Clone)]
pub struct Signer {
    /// Its key id, in the JWK and in the tokens' header.
    pub kid: String,
    /// What it signs with: RS256, ES256 or EdDSA.
    pub alg: Algorithm,
    /// The private key.
    pub key: EncodingKey,
    /// The public key, as the JWKS publishes it.
    pub jwk: Jwk,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A new key for `alg` (RS256, ES256 or EdDSA), named `kid`.
    pub fn new(kid: &str, alg: Algorithm) -> Self {
        let key = match alg {
            Algorithm::RS256 => {
                let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("an RSA key");
                let pkcs8: Pkcs8V1Der<'_> = pair.as_der().expect("PKCS#8");
                EncodingKey::from_rsa_der(&pkcs1_of(pkcs8.as_ref()))
            }
            Algorithm::ES256 => {
                let pair =
                    EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("an EC key");
                EncodingKey::from_ec_der(pair.to_pkcs8v1().expect("PKCS#8").as_ref())
            }
            Algorithm::EdDSA => {
                let pair = Ed25519KeyPair::generate().expect("an Ed25519 key");
                EncodingKey::from_ed_der(pair.to_pkcs8v1().expect("PKCS#8").as_ref())
            }
            other => panic!("no test key for {other:?}"),
        };
        let mut jwk = Jwk::from_encoding_key(&key, alg).expect("a JWK");
        jwk.common.key_id = Some(kid.to_owned());
        Self {
            kid: kid.to_owned(),
            alg,
            key,
            jwk,
        }
    }

    /// `claims` signed with this key, its `kid` in the header.
    pub fn mint(&self, claims: &serde_json::Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).expect("signs")
    }
}

/// The JWKS publishing `signers`' public keys.
pub fn jwks(signers: &[&Signer]) -> String {
    serde_json::to_string(&JwkSet {
        keys: signers.iter().map(|s| s.jwk.clone()).collect(),
    })
    .expect("serializes")
}

/// The RSAPrivateKey inside a PKCS#8 document (what jsonwebtoken's RSA key takes).
fn pkcs1_of(pkcs8: &[u8]) -> Vec<u8> {
    /// One DER element: (tag, contents, the rest).
    fn tlv(b: &[u8]) -> (u8, &[u8], &[u8]) {
        let (tag, first) = (b[0], b[1]);
        let (len, start) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let n = usize::from(first & 0x7f);
            let len = b[2..2 + n]
                .iter()
                .fold(0usize, |acc, x| (acc << 8) | usize::from(*x));
            (len, 2 + n)
        };
        (tag, &b[start..start + len], &b[start + len..])
    }
    let (tag, body, _) = tlv(pkcs8);
    assert_eq!(tag, 0x30, "PKCS#8 is a SEQUENCE");
    let (_, _, rest) = tlv(body); // version
    let (_, _, rest) = tlv(rest); // algorithm
    let (tag, key, _) = tlv(rest);
    assert_eq!(tag, 0x04, "the private key is an OCTET STRING");
    key.to_vec()
}
