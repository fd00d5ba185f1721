//! The gateway binary: `gateway` (serve) and `gateway routes`.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use gateway::config::{listen_addr, StartupEnv, StartupError};
use gateway::routes;
use gateway::server::{self, Gateway};
use gateway::spec::Spec;

/// A compiled internal API gateway. Routes come from the spec compiled into
/// this binary (gateway.yaml, or GATEWAY_SPEC at build time).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve traffic (the default).
    Serve,
    /// Print the compiled route table.
    Routes,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Routes => {
            print!("{}", routes::Spec::ROUTE_TABLE);
            ExitCode::SUCCESS
        }
        Command::Serve => {
            gateway::log::init();
            match run() {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "gateway cannot start");
                    eprintln!("gateway: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run() -> Result<(), StartupError> {
    let env = StartupEnv::from_process();
    let gw = Arc::new(Gateway::<routes::Spec>::new(&env)?);
    let addr = listen_addr(routes::Spec::GATEWAY, &env)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| StartupError::Bind { addr, source })?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        for u in (0..routes::Spec::SERVICES.len()).filter_map(|i| gw.proxy().upstream(i)) {
            tracing::info!(service = u.name, url = %format!("{}://{}{}", u.url.scheme, u.url.authority, u.url.base_path), "upstream");
        }
        let bound = listener.local_addr().unwrap_or(addr);
        tracing::info!(name = routes::Spec::GATEWAY.name, listen = %bound, "gateway listening");
        server::serve(gw, listener, shutdown_signal()).await;
        tracing::info!("gateway stopped");
        Ok(())
    })
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
