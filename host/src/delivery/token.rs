//! Signed, expiring unsubscribe tokens for RFC 8058 one-click links:
//! `base64url(tenant \n user \n category \n expires) . base64url(hmac)`,
//! HMAC-SHA256 under the host's secret (kept in the database, so every host
//! sharing it accepts every token).

use crate::clock::Millis;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What an unsubscribe token grants: one user of one tenant leaves one
/// category (`*`: every category).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub tenant: String,
    pub user_id: String,
    pub category: String,
    pub expires_at: Millis,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the unsubscribe link is malformed")]
    Malformed,
    #[error("the unsubscribe link's signature is wrong")]
    BadSignature,
    #[error("the unsubscribe link expired; use the link in a newer message")]
    Expired,
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length")
}

impl Unsubscribe {
    /// The token for this grant.
    pub fn sign(&self, secret: &[u8]) -> String {
        let payload = format!(
            "{}\n{}\n{}\n{}",
            self.tenant, self.user_id, self.category, self.expires_at
        );
        let mut mac = mac(secret);
        mac.update(payload.as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    /// The grant a token carries, if its signature holds and it has not expired.
    ///
    /// # Errors
    /// [`TokenError`] says which check failed.
    pub fn verify(token: &str, secret: &[u8], now: Millis) -> Result<Self, TokenError> {
        let (payload, signature) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        let mut mac = mac(secret);
        mac.update(&payload);
        mac.verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        let payload = String::from_utf8(payload).map_err(|_| TokenError::Malformed)?;
        let mut fields = payload.split('\n');
        let (Some(tenant), Some(user_id), Some(category), Some(expires), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(TokenError::Malformed);
        };
        let expires_at: Millis = expires.parse().map_err(|_| TokenError::Malformed)?;
        if expires_at <= now {
            return Err(TokenError::Expired);
        }
        Ok(Unsubscribe {
            tenant: tenant.into(),
            user_id: user_id.into(),
            category: category.into(),
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_until_it_expires_and_not_after_tampering() {
        let grant = Unsubscribe {
            tenant: "acme".into(),
            user_id: "u-1".into(),
            category: "marketing".into(),
            expires_at: 2_000,
        };
        let token = grant.sign(b"secret");
        assert_eq!(
            Unsubscribe::verify(&token, b"secret", 1_999),
            Ok(grant.clone())
        );
        assert_eq!(
            Unsubscribe::verify(&token, b"secret", 2_000),
            Err(TokenError::Expired)
        );
        assert_eq!(
            Unsubscribe::verify(&token, b"other", 0),
            Err(TokenError::BadSignature)
        );
        let forged = Unsubscribe {
            user_id: "u-2".into(),
            ..grant
        }
        .sign(b"guess");
        let spliced = format!(
            "{}.{}",
            forged.split('.').next().unwrap(),
            token.split('.').nth(1).unwrap()
        );
        assert_eq!(
            Unsubscribe::verify(&spliced, b"secret", 0),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            Unsubscribe::verify("nonsense", b"secret", 0),
            Err(TokenError::Malformed)
        );
    }
}
