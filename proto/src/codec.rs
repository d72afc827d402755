//! The codec of PHANTOM's generated servers: prost's, except for what a request that does not
//! decode is answered with.
//!
//! tonic's prost codec answers `INTERNAL` for bytes that are not the message they claim to be
//! (a string that is not UTF-8, a varint or a length cut short): the gRPC status table's
//! choice, because in general the fault may be the peer's *or* the local stack's. On a server
//! decoding a request it is the caller's: PHANTOM answers `INVALID_ARGUMENT` with a
//! `BadRequest` naming the message and field, as for any other malformed request, and never
//! quotes the bytes. Clients keep tonic's codec: a response that does not decode is not the
//! caller's mistake.
//!
//! Generated code finds this codec through `codec_path` (see `build.rs`); everything but the
//! decoder's errors is `tonic_prost::ProstCodec`'s.

use std::marker::PhantomData;

use prost::{Message, bytes::Buf};
use tonic::{
    Code, Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
};
use tonic_prost::{ProstCodec, ProstEncoder};
use tonic_types::{ErrorDetails, StatusExt};

/// The `google.rpc.ErrorInfo` domain of PHANTOM errors (`phantom_layers::status::ERROR_DOMAIN`,
/// which this crate cannot depend on).
const ERROR_DOMAIN: &str = "phantom.security";

/// Bytes of the explanation a malformed request gets at most. prost's explanations name
/// message and field (the schema's, never the caller's bytes) but nest as deep as the message
/// did.
const MAX_EXPLANATION_BYTES: usize = 256;

/// prost's codec for a server: decodes requests `U`, encodes responses `T`.
#[derive(Debug, Clone)]
pub struct ServerCodec<T, U> {
    prost: ProstCodec<T, U>,
}

impl<T, U> Default for ServerCodec<T, U> {
    fn default() -> Self {
        Self {
            prost: ProstCodec::default(),
        }
    }
}

impl<T, U> Codec for ServerCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RequestDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.prost.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder {
            buffer_settings: BufferSettings::default(),
            _message: PhantomData,
        }
    }
}

/// Decodes requests `U`; bytes that are not one are `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct RequestDecoder<U> {
    buffer_settings: BufferSettings,
    _message: PhantomData<U>,
}

impl<U: Message + Default> Decoder for RequestDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // A DecodeBuf is one contiguous buffer; should it ever not be, prost decides alone.
        if buf.chunk().len() == buf.remaining()
            && let Some((number, count)) = over_repeated(buf.chunk())
        {
            return Err(too_many::<U>(number, count));
        }
        U::decode(buf).map(Some).map_err(|e| malformed(&e))
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.buffer_settings
    }
}

/// Most entries one top-level repeated (or map) field of a request may have, whatever the
/// method.
///
/// The decoder builds a struct per entry before any handler can count them, and an entry costs
/// 2 bytes on the wire but up to a kilobyte decoded (an empty `Finding`): 100,000 of them fit
/// in the 4 MiB message limit and took 100 MiB to decode. Methods set tighter limits of
/// their own (`Subscribe`: 64 rooms); this one only bounds what decoding may cost. Lists
/// nested in a message (a finding's `cve_ids`) are not counted here: their entries are
/// strings, at most about 12 times their wire size once decoded (48 MiB for a 4 MiB request).
pub const MAX_REPEATED: u32 = 10_000;

/// The first top-level field of `message` that occurs more than [`MAX_REPEATED`] times, and
/// how often it occurs, read without decoding anything. Bytes that are not well-formed
/// protobuf end the scan: prost refuses them with its own reason.
fn over_repeated(mut message: &[u8]) -> Option<(u32, u32)> {
    // Top-level field numbers of PHANTOM's requests are small; larger ones are unknown
    // fields, which prost skips without building anything.
    let mut counts = [0u32; 32];
    while !message.is_empty() {
        let key = prost::encoding::decode_varint(&mut message).ok()?;
        let number = u32::try_from(key >> 3).ok()?;
        match key & 7 {
            0 => {
                prost::encoding::decode_varint(&mut message).ok()?;
            }
            1 => message = message.get(8..)?,
            2 => {
                let len =
                    usize::try_from(prost::encoding::decode_varint(&mut message).ok()?).ok()?;
                message = message.get(len..)?;
            }
            5 => message = message.get(4..)?,
            // Groups (deprecated; none in PHANTOM's API) and invalid wire types.
            _ => return None,
        }
        if let Some(count) = counts.get_mut(number as usize) {
            *count += 1;
            if *count > MAX_REPEATED {
                return Some((number, *count));
            }
        }
    }
    None
}

/// `INVALID_ARGUMENT` for field `number` of `U` repeated more than [`MAX_REPEATED`] times.
fn too_many<U>(number: u32, count: u32) -> Status {
    let message = std::any::type_name::<U>()
        .rsplit("::")
        .next()
        .unwrap_or("request");
    let field = crate::field_name(message, number).map_or_else(
        || format!("{message}.{number}"),
        |f| format!("{message}.{f}"),
    );
    let why = format!(
        "has more than {MAX_REPEATED} entries (the most any request may have; {count} seen so far)"
    );
    invalid(format!("invalid request: {field}: {why}"), field, why)
}

/// `INVALID_ARGUMENT` saying `message`, with a `BadRequest` on `field` and the `VALIDATION`
/// category every PHANTOM validation error carries.
fn invalid(message: String, field: String, why: String) -> Status {
    let mut details = ErrorDetails::with_bad_request_violation(field, why);
    details.set_error_info(
        "VALIDATION",
        ERROR_DOMAIN,
        [("category".to_owned(), "VALIDATION".to_owned())],
    );
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// The status of a request whose bytes did not decode: `INVALID_ARGUMENT`, with a
/// `BadRequest` naming where decoding stopped (`ScoreCvssRequest.vector`, or the request as a
/// whole) and why.
pub fn malformed(error: &prost::DecodeError) -> Status {
    let text = error.to_string();
    let text = text
        .strip_prefix("failed to decode Protobuf message: ")
        .unwrap_or(&text);
    // prost writes where it stopped as `Message.field: ` segments, innermost first, then why.
    let mut where_ = Vec::new();
    let mut why = text;
    while let Some((segment, rest)) = why.split_once(": ") {
        let is_field = segment.split_once('.').is_some_and(|(m, f)| {
            [m, f]
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        });
        if !is_field {
            break;
        }
        where_.push(segment);
        why = rest;
    }
    // Outermost first: `Outer.inner.field`.
    let field = match where_.split_last() {
        None => "request".to_owned(),
        Some((outer, inner)) => std::iter::once(*outer)
            .chain(
                inner
                    .iter()
                    .rev()
                    .filter_map(|s| s.split_once('.').map(|(_, f)| f)),
            )
            .collect::<Vec<_>>()
            .join("."),
    };
    let field = bounded(&field);
    let why = bounded(why);
    invalid(
        format!("malformed request: {field}: {why}"),
        field,
        format!("not a valid protobuf encoding: {why}"),
    )
}

/// `text`, cut on a character boundary to [`MAX_EXPLANATION_BYTES`].
fn bounded(text: &str) -> String {
    if text.len() <= MAX_EXPLANATION_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_EXPLANATION_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    #[test]
    fn a_decode_error_names_message_and_field_without_quoting_bytes() {
        // Field 1 (vector), 4 bytes that are not UTF-8.
        let error = pb::ScoreCvssRequest::decode(&b"\x0a\x04\xff\xfe\xc0\x80"[..]).unwrap_err();
        let status = malformed(&error);
        assert_eq!(status.code(), Code::InvalidArgument);
        let bad = status.get_details_bad_request().unwrap();
        assert_eq!(bad.field_violations[0].field, "ScoreCvssRequest.vector");
        assert!(
            bad.field_violations[0]
                .description
                .ends_with("invalid string value: data is not UTF-8 encoded"),
            "{:?}",
            bad.field_violations[0]
        );
        assert_eq!(
            status.get_details_error_info().unwrap().metadata["category"],
            "VALIDATION"
        );
    }

    #[test]
    fn a_nested_field_is_named_from_the_outermost_message() {
        // findings[0] (field 1, 2 bytes) whose field 3 (target, a string) is a varint.
        let error = pb::AnalyzeFindingsRequest::decode(&b"\x0a\x02\x18\x01"[..]).unwrap_err();
        let bad = malformed(&error).get_details_bad_request().unwrap();
        assert_eq!(
            bad.field_violations[0].field,
            "AnalyzeFindingsRequest.findings.target"
        );
        assert!(
            bad.field_violations[0]
                .description
                .contains("invalid wire type: Varint (expected LengthDelimited)"),
            "{:?}",
            bad.field_violations[0]
        );
    }

    #[test]
    fn a_field_repeated_past_the_bound_is_refused_before_anything_is_decoded() {
        let request = pb::AnalyzeFindingsRequest {
            findings: vec![pb::Finding::default(); 100_000],
        }
        .encode_to_vec();
        assert_eq!(over_repeated(&request), Some((1, MAX_REPEATED + 1)));
        let status = too_many::<pb::AnalyzeFindingsRequest>(1, MAX_REPEATED + 1);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.get_details_bad_request().unwrap().field_violations[0].field,
            "AnalyzeFindingsRequest.findings"
        );
        // Maps are repeated entries too.
        let request = pb::SubscribeRequest {
            after_sequence: (0..20_000).map(|i| (i.to_string(), 1)).collect(),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(over_repeated(&request).map(|(n, _)| n), Some(3));
    }

    #[test]
    fn requests_within_the_bound_and_malformed_bytes_are_left_to_prost() {
        let request = pb::WarmScanRequest {
            scan_id: "s".into(),
            fingerprints: vec!["f".into(); MAX_REPEATED as usize],
        }
        .encode_to_vec();
        assert_eq!(over_repeated(&request), None);
        assert_eq!(over_repeated(b"\x0a\xff\xff\x03a"), None);
        assert_eq!(over_repeated(b"\x08\x80"), None);
    }

    #[test]
    fn a_decode_error_without_a_field_names_the_request() {
        // A varint key cut short.
        let error = pb::GetMetricsRequest::decode(&b"\x08\x80"[..]).unwrap_err();
        let status = malformed(&error);
        let bad = status.get_details_bad_request().unwrap();
        assert_eq!(bad.field_violations[0].field, "request", "{status:?}");
        assert!(status.message().starts_with("malformed request: request: "));
    }
}
