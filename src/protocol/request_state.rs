//! The signed `requestState` of an MRTR round: where a parked request waits, encoded and
//! signed for the client that asked. Pure data and its encoding.

use crate::ids::SessionId;

/// Where a parked request waits between MRTR rounds: its backing session, the stream of the
/// original request, the event that asked the client, and which request it was. The client
/// may not change any of it: a backing session serves other requests of the same identity
/// later, so a forged stream would reach someone else's question. The state is signed with the
/// instance's (in a cluster: the cluster's) secret and the caller's principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestState {
    pub session: SessionId,
    pub stream: u32,
    pub asked: u64,
    /// A digest of the method and its target name, so that one request's state does not
    /// continue another.
    pub request: u32,
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

impl RequestState {
    fn body(&self) -> String {
        format!("mcpb1.{}.{}.{}.{:08x}", self.session, self.stream, self.asked, self.request)
    }

    fn mac(body: &str, principal: Option<&str>, secret: &[u8; 32]) -> HmacSha256 {
        use hmac::Mac;
        let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(body.as_bytes());
        mac.update(b"\0");
        mac.update(principal.unwrap_or("").as_bytes());
        mac
    }

    /// The state as the client gets it: the fields and their signature.
    pub fn sign(&self, principal: Option<&str>, secret: &[u8; 32]) -> String {
        use hmac::Mac;
        let body = self.body();
        let tag = Self::mac(&body, principal, secret).finalize().into_bytes();
        format!("{body}.{}", hex::encode(&tag[..16]))
    }

    /// A state this bridge signed for `principal`, or `None`.
    pub fn verify(s: &str, principal: Option<&str>, secret: &[u8; 32]) -> Option<RequestState> {
        use hmac::Mac;
        let (body, tag) = s.rsplit_once('.')?;
        let tag = hex::decode(tag).ok().filter(|t| t.len() == 16)?;
        if Self::mac(body, principal, secret).verify_truncated_left(&tag).is_err() {
            return None;
        }
        let mut it = body.strip_prefix("mcpb1.")?.split('.');
        let session = SessionId::parse(it.next()?)?;
        let stream = it.next()?.parse().ok()?;
        let asked = it.next()?.parse().ok().filter(|a| *a > 0)?;
        let request = u32::from_str_radix(it.next()?, 16).ok()?;
        it.next().is_none().then_some(RequestState { session, stream, asked, request })
    }

    /// The digest of a request's method and target for [`RequestState::request`].
    pub fn digest(method: &str, name: Option<&str>) -> u32 {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(method.as_bytes());
        h.update([0]);
        h.update(name.unwrap_or("").as_bytes());
        let d = h.finalize();
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::modern::input_required;
    use bytes::Bytes;

    #[test]
    fn input_required_and_request_state_round_trip() {
        let st = RequestState {
            session: SessionId::random(),
            stream: 3,
            asked: 7,
            request: RequestState::digest("tools/call", Some("a")),
        };
        let key = [7u8; 32];
        let signed = st.sign(Some("alice"), &key);
        assert_eq!(RequestState::verify(&signed, Some("alice"), &key), Some(st));
        assert_eq!(RequestState::verify(&signed, Some("bob"), &key), None, "bound to the principal");
        assert_eq!(RequestState::verify(&signed, Some("alice"), &[8u8; 32]), None, "bound to the key");
        let forged = signed.replacen(".3.7.", ".4.7.", 1);
        assert_eq!(RequestState::verify(&forged, Some("alice"), &key), None, "another stream is a forgery");
        assert_eq!(RequestState::verify("mcpb1.zz.3.7.0.00", None, &key), None);
        assert_ne!(RequestState::digest("tools/call", Some("a")), RequestState::digest("tools/call", Some("b")));
        let ask = Bytes::from_static(br#"{"jsonrpc":"2.0","id":0,"method":"sampling/createMessage","params":{"maxTokens":5}}"#);
        let roots = Bytes::from_static(br#"{"jsonrpc":"2.0","id":"r","method":"roots/list"}"#);
        let asks = [("0".to_string(), ask), ("\"r\"".to_string(), roots)];
        let v: serde_json::Value = serde_json::from_slice(&input_required("1", &asks, &signed)).unwrap();
        assert_eq!(v["result"]["resultType"], "input_required");
        assert_eq!(v["result"]["inputRequests"]["0"]["method"], "sampling/createMessage");
        assert_eq!(v["result"]["inputRequests"]["0"]["params"]["maxTokens"], 5);
        assert_eq!(v["result"]["inputRequests"]["\"r\""]["method"], "roots/list");
        assert_eq!(v["result"]["requestState"], signed);
    }
}
