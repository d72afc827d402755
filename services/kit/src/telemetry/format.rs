//! The log line formats.

use std::fmt;

use std::fmt::Write as _;

use opentelemetry::trace::TraceContextExt;
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
    span,
};
use tracing_subscriber::{
    Layer,
    field::RecordFields,
    fmt::{
        FmtContext, FormatEvent, FormatFields, FormattedFields,
        format::Writer,
        time::{FormatTime, SystemTime},
    },
    layer::Context,
    registry::LookupSpan,
};

/// Span fields that only mean something to the OpenTelemetry exporter: not repeated on
/// every log line.
fn exporter_only(name: &str) -> bool {
    name.starts_with("otel.") || name == "rpc.system"
}

/// One JSON object per line: `timestamp`, `level`, `target`, `message`, the event's fields,
/// the fields of every span in scope (the innermost winning a name clash: `correlation_id`,
/// `service`, `tenant`, `scan_id`, ...), and the `trace_id` and `span_id` of the innermost
/// span, as OpenTelemetry knows them, so a log line leads to its trace.
///
/// The line is written straight into the formatter's buffer: no map is built, and the spans'
/// fields are read as [`SpanFieldsLayer`] keeps them, typed, not as JSON text. (With
/// tracing-subscriber's `JsonFields`, each span's fields are JSON text that is parsed and
/// written again at every `record`, and parsed once more at every event; the `api.response`
/// line of every call cost about a third of the server's time on two cores.)
#[derive(Debug, Clone, Copy)]
pub(super) struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut writer)?;
        write!(
            writer,
            "\",\"level\":\"{}\",\"target\":",
            meta.level().as_str()
        )?;
        json_str(&mut writer, meta.target())?;
        // Names written so far: the event's fields win over its spans', an inner span's over
        // an outer one's.
        let mut seen: Vec<&'static str> = Vec::with_capacity(24);
        let mut fields = EventFields {
            writer: &mut writer,
            seen: &mut seen,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        if let Some(scope) = ctx.event_scope() {
            let mut ids = None;
            let mut dispatch = None;
            for span in scope {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<SpanFields>() {
                    for (name, value) in &fields.0 {
                        if !seen.contains(name) {
                            seen.push(name);
                            field(&mut writer, name, value)?;
                        }
                    }
                }
                drop(extensions);
                // The innermost span OpenTelemetry knows (it skips other crates' spans).
                if ids.is_none() {
                    let dispatch = dispatch
                        .get_or_insert_with(|| tracing::dispatcher::get_default(Clone::clone));
                    ids = tracing_opentelemetry::get_otel_context(&span.id(), dispatch).and_then(
                        |cx| {
                            let sc = cx.span().span_context().clone();
                            sc.is_valid().then(|| (sc.trace_id(), sc.span_id()))
                        },
                    );
                }
            }
            if let Some((trace_id, span_id)) = ids {
                write!(
                    writer,
                    ",\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\""
                )?;
            }
        }
        writer.write_str("}\n")
    }
}

/// Writes an event's fields as `,"name":value`.
struct EventFields<'a, 'w> {
    writer: &'a mut Writer<'w>,
    seen: &'a mut Vec<&'static str>,
    result: fmt::Result,
}

impl EventFields<'_, '_> {
    fn put(&mut self, field: &Field, value: Scalar<'_>) {
        if self.result.is_err() || self.seen.contains(&field.name()) {
            return;
        }
        self.seen.push(field.name());
        self.result = write_field(self.writer, field.name(), value);
    }
}

impl Visit for EventFields<'_, '_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Scalar::F64(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Scalar::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Scalar::U64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Scalar::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Scalar::Str(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Scalar::Debug(value));
    }
}

/// A field's value as it is written.
enum Scalar<'a> {
    Str(&'a str),
    Debug(&'a dyn fmt::Debug),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

fn write_field(w: &mut impl fmt::Write, name: &str, value: Scalar<'_>) -> fmt::Result {
    w.write_char(',')?;
    json_str(w, name)?;
    w.write_char(':')?;
    match value {
        Scalar::Str(s) => json_str(w, s),
        Scalar::Debug(d) => {
            w.write_char('"')?;
            write!(Escaping(w), "{d:?}")?;
            w.write_char('"')
        }
        Scalar::I64(n) => write!(w, "{n}"),
        Scalar::U64(n) => write!(w, "{n}"),
        // JSON has no NaN or infinity.
        Scalar::F64(x) if x.is_finite() => write!(w, "{x}"),
        Scalar::F64(_) => w.write_str("null"),
        Scalar::Bool(b) => write!(w, "{b}"),
    }
}

fn field(w: &mut impl fmt::Write, name: &str, value: &SpanValue) -> fmt::Result {
    let value = match value {
        SpanValue::Str(s) => Scalar::Str(s),
        SpanValue::I64(n) => Scalar::I64(*n),
        SpanValue::U64(n) => Scalar::U64(*n),
        SpanValue::F64(x) => Scalar::F64(*x),
        SpanValue::Bool(b) => Scalar::Bool(*b),
    };
    write_field(w, name, value)
}

/// `s` as a JSON string, quoted and escaped.
fn json_str(w: &mut impl fmt::Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    Escaping(w).write_str(s)?;
    w.write_char('"')
}

/// Escapes what is written through it as the inside of a JSON string.
struct Escaping<'a, W>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut start = 0;
        for (i, b) in s.bytes().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => {
                    self.0.write_str(&s[start..i])?;
                    write!(self.0, "\\u{b:04x}")?;
                    start = i + 1;
                    continue;
                }
                _ => continue,
            };
            // Only ASCII bytes are escaped: `i` is a character boundary.
            self.0.write_str(&s[start..i])?;
            self.0.write_str(escape)?;
            start = i + 1;
        }
        self.0.write_str(&s[start..])
    }
}

/// The fields of each span, kept typed in the span's extensions for [`JsonLines`]: set when
/// the span is created, updated in place when it records one (`correlation_id`, `tenant`,
/// the status code), exporter-only ones left out.
#[derive(Debug, Clone, Copy)]
pub(super) struct SpanFieldsLayer;

/// A span's fields, in the order they were first given.
#[derive(Debug, Default)]
struct SpanFields(Vec<(&'static str, SpanValue)>);

#[derive(Debug)]
enum SpanValue {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl SpanFields {
    fn set(&mut self, field: &Field, value: SpanValue) {
        let name = field.name();
        if exporter_only(name) {
            return;
        }
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((name, value)),
        }
    }
}

impl Visit for SpanFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field, SpanValue::F64(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, SpanValue::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field, SpanValue::U64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field, SpanValue::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, SpanValue::Str(value.to_owned()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field, SpanValue::Str(format!("{value:?}")));
    }
}

impl<S> Layer<S> for SpanFieldsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = SpanFields::default();
        attrs.record(&mut fields);
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(fields) = extensions.get_mut::<SpanFields>() {
            values.record(fields);
        }
    }
}

/// Span fields for [`JsonLines`]: none. It reads [`SpanFields`] instead; this spares the
/// fmt layer formatting each span's fields as text nobody reads.
#[derive(Debug, Clone, Copy)]
pub(super) struct NoFields;

impl<'w> FormatFields<'w> for NoFields {
    fn format_fields<R: RecordFields>(&self, _writer: Writer<'w>, _fields: R) -> fmt::Result {
        Ok(())
    }

    fn add_fields(
        &self,
        _current: &'w mut FormattedFields<Self>,
        _fields: &span::Record<'_>,
    ) -> fmt::Result {
        Ok(())
    }
}

/// `key=value` fields for people: the message bare, exporter-only fields left out.
#[derive(Debug, Clone, Copy)]
pub(super) struct TextFields;

impl<'w> FormatFields<'w> for TextFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = TextVisitor {
            writer: &mut writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct TextVisitor<'a, 'w> {
    writer: &'a mut Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Visit for TextVisitor<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() || exporter_only(field.name()) {
            return;
        }
        let sep = if std::mem::take(&mut self.first) {
            ""
        } else {
            " "
        };
        self.result = if field.name() == "message" {
            write!(self.writer, "{sep}{value:?}")
        } else {
            write!(self.writer, "{sep}{}={value:?}", field.name())
        };
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::{Arc, Mutex},
    };

    use tracing_subscriber::{fmt, prelude::*};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The lines written while `f` runs under the JSON lines subscriber, parsed.
    fn lines(f: impl FnOnce()) -> Vec<serde_json::Value> {
        let buffer = Buffer::default();
        let out = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(SpanFieldsLayer).with(
            fmt::layer()
                .fmt_fields(NoFields)
                .event_format(JsonLines)
                .with_writer(move || out.clone()),
        );
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buffer.0.lock().expect("buffer").clone()).expect("utf-8");
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn a_line_has_the_event_and_every_span_field_the_innermost_and_the_event_winning() {
        let got = lines(|| {
            let outer = tracing::info_span!(
                "outer",
                service = "vuln-analyzer",
                tenant = tracing::field::Empty,
                shared = "outer",
                otel.name = "hidden"
            );
            let _o = outer.enter();
            outer.record("tenant", "acme");
            let inner = tracing::info_span!("inner", shared = "inner", attempt = 2u64, code = 1i64);
            let _i = inner.enter();
            inner.record("attempt", 3u64);
            tracing::info!(
                code = "OK",
                duration_ms = 0.25,
                ok = true,
                nan = f64::NAN,
                "said \"hi\"\n\tand\u{1} left"
            );
        });
        assert_eq!(got.len(), 1);
        let l = &got[0];
        assert_eq!(l["level"], "INFO");
        assert_eq!(l["message"], "said \"hi\"\n\tand\u{1} left");
        assert_eq!(l["code"], "OK", "the event's field wins over a span's");
        assert_eq!(l["duration_ms"], 0.25);
        assert_eq!(l["ok"], true);
        assert_eq!(l["nan"], serde_json::Value::Null);
        assert_eq!(l["shared"], "inner", "the innermost span wins");
        assert_eq!(l["attempt"], 3, "a recorded field replaces the one given");
        assert_eq!(
            l["tenant"], "acme",
            "a field recorded after creation is written"
        );
        assert_eq!(l["service"], "vuln-analyzer");
        assert!(
            l.get("otel.name").is_none(),
            "exporter-only fields stay out"
        );
        assert!(l["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    }

    #[test]
    fn an_event_outside_any_span_is_a_line_of_its_own_fields() {
        let got = lines(|| tracing::warn!(target: "a\"b", n = -3i64, "plain"));
        assert_eq!(got[0]["target"], "a\"b");
        assert_eq!(got[0]["n"], -3);
        assert_eq!(got[0]["level"], "WARN");
        assert!(got[0].get("trace_id").is_none());
    }
}
