//! How a finding waits in the enrichment queue: its protobuf encoding, in base64. The service
//! writes it when it queues a degraded analysis; the enrichment loop reads it back.

use base64::Engine as _;
use phantom_proto::pb;
use prost::Message as _;

/// How a finding is kept in the queue: its protobuf encoding, in base64.
pub fn encode(finding: &pb::Finding) -> String {
    base64::engine::general_purpose::STANDARD.encode(finding.encode_to_vec())
}

/// The finding `payload` holds, if it decodes.
pub fn decode(payload: &str) -> Option<pb::Finding> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()?;
    pb::Finding::decode(bytes.as_slice()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_round_trip_through_the_queue_encoding() {
        let f = pb::Finding {
            target: "127.0.0.1".into(),
            port: 23,
            engine: "builtin".into(),
            check_id: "open-port".into(),
            banner: "\u{0}binary\u{ff}".into(),
            cve_ids: vec!["CVE-2020-1".into()],
            ..Default::default()
        };
        assert_eq!(decode(&encode(&f)), Some(f));
        assert_eq!(decode("not base64!"), None);
        assert_eq!(decode("AAAA"), None);
    }
}
