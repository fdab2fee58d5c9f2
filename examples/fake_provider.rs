//! The fake WhatsApp / Twilio / Infobip provider as a process, for benchmarks and crash tests:
//! point a channel's `base_url` at the URL it prints. See `herald::testkit::fake_provider`.
//!
//! ```sh
//! cargo run --release --example fake_provider -- --bind 127.0.0.1:9900 --latency-ms 20 \
//!     --error-rate 0.01 --statuses delivered,read \
//!     --whatsapp-webhook http://127.0.0.1:8080/webhooks/whatsapp/<channel> --whatsapp-app-secret S
//! curl -s http://127.0.0.1:9900/_fake/stats
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use herald::testkit::fake_provider::{FakeConfig, FakeProvider, FakeStatus, WebhookEndpoint};

#[derive(Debug, Parser)]
#[command(
    about = "A fake of the WhatsApp Cloud API, Twilio and Infobip Viber for Herald's benchmarks"
)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    /// Added to every provider answer.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Share of requests answered 500 (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Share answered 429 with Retry-After.
    #[arg(long, default_value_t = 0.0)]
    rate_limit_rate: f64,
    #[arg(long, default_value_t = 1)]
    retry_after_secs: u64,
    /// Share that never get an answer (the client times out).
    #[arg(long, default_value_t = 0.0)]
    hang_rate: f64,
    /// Requests kept for GET /_fake/requests.
    #[arg(long, default_value_t = 100)]
    keep_last: usize,
    /// Seeds the fault dice for a reproducible run.
    #[arg(long)]
    seed: Option<u64>,
    /// Statuses reported after each accepted send, e.g. `delivered,read`.
    #[arg(long, value_delimiter = ',', value_parser = parse_status)]
    statuses: Vec<FakeStatus>,
    #[arg(long, default_value_t = 100)]
    status_delay_ms: u64,
    #[arg(long, requires = "whatsapp_app_secret")]
    whatsapp_webhook: Option<String>,
    #[arg(long)]
    whatsapp_app_secret: Option<String>,
    /// Where inbound SMS go (status callbacks use each send's StatusCallback).
    #[arg(long, requires = "twilio_auth_token")]
    twilio_webhook: Option<String>,
    #[arg(long)]
    twilio_auth_token: Option<String>,
    /// Where inbound Viber messages go (reports use each send's webhook URLs).
    #[arg(long, requires = "infobip_secret")]
    infobip_webhook: Option<String>,
    #[arg(long)]
    infobip_secret: Option<String>,
    /// What template lookups answer.
    #[arg(long, default_value = "APPROVED")]
    template_status: String,
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

fn parse_status(s: &str) -> Result<FakeStatus, String> {
    match s.trim() {
        "sent" => Ok(FakeStatus::Sent),
        "delivered" => Ok(FakeStatus::Delivered),
        "read" => Ok(FakeStatus::Read),
        "failed" => Ok(FakeStatus::Failed),
        other => Err(format!(
            "unknown status {other}: expected sent, delivered, read or failed"
        )),
    }
}

fn endpoint(url: Option<String>, secret: Option<String>) -> Option<WebhookEndpoint> {
    Some(WebhookEndpoint {
        url: url?,
        secret: secret.unwrap_or_default(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    for (name, rate) in [
        ("--error-rate", a.error_rate),
        ("--rate-limit-rate", a.rate_limit_rate),
        ("--hang-rate", a.hang_rate),
    ] {
        anyhow::ensure!((0.0..=1.0).contains(&rate), "{name} is between 0 and 1");
    }
    let config = FakeConfig {
        latency: Duration::from_millis(a.latency_ms),
        error_rate: a.error_rate,
        rate_limit_rate: a.rate_limit_rate,
        retry_after: Duration::from_secs(a.retry_after_secs),
        hang_rate: a.hang_rate,
        keep_last: a.keep_last,
        seed: a.seed,
        status_sequence: a.statuses,
        status_delay: Duration::from_millis(a.status_delay_ms),
        whatsapp_webhook: endpoint(a.whatsapp_webhook, a.whatsapp_app_secret),
        twilio_webhook: endpoint(a.twilio_webhook, a.twilio_auth_token),
        infobip_webhook: endpoint(a.infobip_webhook, a.infobip_secret),
        template_status: a.template_status,
        workers: a.workers,
        ..FakeConfig::default()
    };
    let fake = FakeProvider::start_on(a.bind, config).await?;
    // The URL alone on stdout, so a script can capture it.
    println!("{}", fake.base_url);
    tokio::signal::ctrl_c().await?;
    let stats = fake.stats();
    eprintln!(
        "fake provider: {} requests, {} sends accepted, {} duplicates",
        stats.requests,
        stats.sends_accepted,
        stats.duplicates().len()
    );
    fake.stop().await;
    Ok(())
}
