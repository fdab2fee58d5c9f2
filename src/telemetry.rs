//! Structured logs through `tracing`, to stderr (stdout stays clean for command output such as
//! a new API key). Each request gets a span with its id, status and latency (tracing-actix-web).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("HERALD_LOG: {e}; using \"info\"");
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // A second init (tests build several apps in one process) is harmless.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The request span: method, route, path and request id, but never the query string, which may
/// carry tokens (a webhook's shared secret or verify token, a CSRF token on an upload form).
pub struct RootSpan;

impl tracing_actix_web::RootSpanBuilder for RootSpan {
    fn on_request_start(request: &actix_web::dev::ServiceRequest) -> tracing::Span {
        use actix_web::HttpMessage;
        let request_id = request
            .extensions()
            .get::<tracing_actix_web::RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        let route = request.match_pattern().unwrap_or_else(|| "default".into());
        tracing::info_span!(
            "request",
            method = %request.method(),
            route = %route,
            path = %request.path(),
            request_id = %request_id,
            http.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
        )
    }

    fn on_request_end<B: actix_web::body::MessageBody>(
        span: tracing::Span,
        outcome: &Result<actix_web::dev::ServiceResponse<B>, actix_web::Error>,
    ) {
        tracing_actix_web::DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}
