//! JSON log lines, one object per event:
//! `{"timestamp","level","logger","module","message","request_id","user_id",…}`,
//! the seed's field names: `logger` is the emitting module's path, dotted
//! (`dataplane.email.worker`), `module` its last part (`worker`).
//!
//! `request_id` and `user_id` come from the enclosing spans (the request span
//! opened by `middleware::edge`), so code deep in a handler logs them
//! without passing them around. A small layer of our own does this instead of
//! `tracing_subscriber::fmt().json()`, whose output nests span fields and has
//! no `module` key.
//!
//! Never log passwords, tokens, keys or message bodies: the config types wrap
//! them in [`crate::config::Secret`], whose `Debug` prints `***`.

use std::io::Write;

use serde_json::{Map, Value};
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id, Record},
};
use tracing_subscriber::{
    EnvFilter, Layer,
    fmt::{
        format::Writer,
        time::{FormatTime, SystemTime},
    },
    layer::{Context, SubscriberExt},
    registry::LookupSpan,
    util::{SubscriberInitExt, TryInitError},
};

/// Span fields copied onto every event logged inside the span.
const CONTEXT_FIELDS: [&str; 2] = ["request_id", "user_id"];

/// Installs the JSON logger for the whole process with a validated filter.
pub fn init(filter: &str) -> Result<(), LoggingError> {
    let filter = EnvFilter::try_new(filter)?;
    tracing_subscriber::registry()
        .with(filter)
        .with(JsonLines)
        .try_init()?;
    Ok(())
}

/// Why logging could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The filter directive does not parse.
    #[error("invalid log filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// A global subscriber was already installed.
    #[error("logging already initialised: {0}")]
    Init(#[from] TryInitError),
}

/// The context fields a span carries, stored in its extensions.
#[derive(Default)]
struct SpanContext(Map<String, Value>);

/// Writes each event as one JSON line on stdout.
struct JsonLines;

impl<S> Layer<S> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = FieldMap::default();
        attrs.record(&mut fields);
        fields.0.retain(|k, _| CONTEXT_FIELDS.contains(&k.as_str()));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanContext(fields.0));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut fields = FieldMap::default();
        values.record(&mut fields);
        fields.0.retain(|k, _| CONTEXT_FIELDS.contains(&k.as_str()));
        if let Some(span) = ctx.span(id)
            && let Some(context) = span.extensions_mut().get_mut::<SpanContext>()
        {
            context.0.extend(fields.0);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = Map::new();
        let mut timestamp = String::new();
        if SystemTime
            .format_time(&mut Writer::new(&mut timestamp))
            .is_ok()
        {
            line.insert("timestamp".into(), timestamp.into());
        }
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("logger".into(), meta.target().replace("::", ".").into());
        let module = meta.module_path().unwrap_or_default();
        line.insert(
            "module".into(),
            module.rsplit("::").next().unwrap_or(module).into(),
        );

        let mut fields = FieldMap::default();
        event.record(&mut fields);
        line.insert(
            "message".into(),
            fields
                .0
                .remove("message")
                .unwrap_or(Value::String(String::new())),
        );
        // The innermost span that sets a context field wins.
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if let Some(context) = span.extensions().get::<SpanContext>() {
                    for (k, v) in &context.0 {
                        line.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
        }
        for (k, v) in fields.0 {
            line.entry(k).or_insert(v);
        }

        let mut bytes = Value::Object(line).to_string().into_bytes();
        bytes.push(b'\n');
        // One write per line keeps lines whole when threads log at once; a
        // closed stdout must not take the service down, so errors are dropped.
        let _ = std::io::stdout().lock().write_all(&bytes);
    }
}

/// Collects fields as JSON values, keeping numbers and booleans typed.
#[derive(Default)]
struct FieldMap(Map<String, Value>);

impl Visit for FieldMap {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}
