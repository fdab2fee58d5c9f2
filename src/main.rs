use std::io::Read;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use herald::config::Settings;
use herald::startup::Application;
use herald::{commands, telemetry};

/// Herald: proactive messaging over WhatsApp, SMS and Viber.
///
/// Configuration comes from the environment: DATABASE_URL, HERALD_BIND, HERALD_SECRET_KEY,
/// HERALD_PUBLIC_URL and more (see README.md).
#[derive(Parser)]
#[command(name = "herald", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the dashboard and the API (the default); the outbox worker runs inside too.
    Serve,
    /// Run the outbox worker alone (several may share one PostgreSQL database).
    Worker,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API keys.
    #[command(name = "api-key", subcommand)]
    ApiKey(ApiKeyCommand),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account (the first one can be the admin, instead of the setup page).
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// admin, support_lead or marketer
        #[arg(long)]
        role: String,
        /// Read the password from standard input; without it a temporary password is
        /// generated, printed, and must be changed at first sign-in.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create an API key; the key is printed once, alone on standard output.
    Create {
        #[arg(long)]
        name: String,
        /// admin, support_lead or marketer
        #[arg(long)]
        role: String,
        /// Requests a minute this key may make (0: unlimited); without it the default in the
        /// settings applies
        #[arg(long)]
        rate_limit: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("herald: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings.log_filter, settings.log_format);
    match run(cli.command.unwrap_or(Command::Serve), settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(settings),
        Command::Worker => worker(settings),
        Command::Migrate => {
            let applied = commands::migrate(&settings)?;
            if applied.is_empty() {
                eprintln!("The database is up to date.");
            } else {
                for name in applied {
                    eprintln!("applied {name}");
                }
            }
            Ok(())
        }
        Command::User(UserCommand::Create {
            email,
            name,
            role,
            password_stdin,
        }) => {
            let password = if password_stdin {
                let mut raw = String::new();
                std::io::stdin().read_to_string(&mut raw)?;
                Some(raw.trim_end_matches(['\r', '\n']).to_owned())
            } else {
                None
            };
            let (user, generated) =
                commands::create_user(&settings, &email, &name, &role, password)?;
            eprintln!(
                "Created {} <{}> as {}.",
                user.name,
                user.email,
                user.role.label()
            );
            if let Some(temporary) = generated {
                eprintln!("Temporary password (must be changed at first sign-in):");
                println!("{temporary}");
            }
            Ok(())
        }
        Command::ApiKey(ApiKeyCommand::Create {
            name,
            role,
            rate_limit,
        }) => {
            let key = commands::create_api_key(&settings, &name, &role, rate_limit.as_deref())?;
            println!("{key}");
            eprintln!("This key is shown once; Herald keeps only its hash.");
            Ok(())
        }
    }
}

fn worker(settings: Settings) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let worker = herald::startup::Worker::build(settings).await?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("stopping: finishing the sends under way");
            let _ = stop_tx.send(true);
        });
        eprintln!(
            "Herald worker {} is sending",
            worker.background.dispatcher.worker_id()
        );
        worker.run_until(stop_rx).await
    })
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let app = Application::build(settings).await?;
        println!("Herald is running at {}", app.url());
        app.run_until_stopped().await?;
        tracing::info!("Herald stopped");
        Ok(())
    })
}
