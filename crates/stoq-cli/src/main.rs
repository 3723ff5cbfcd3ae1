//! `stoq`: run a node, talk to one, benchmark the transport, or see it all in `stoq demo`.
//!
//! Exit status: 0 success, 2 usage or configuration error (with a message on stderr), 1 any
//! other failure.

mod bench;
mod bench_args;
mod cli;
mod collection;
mod content;
mod demo;
mod gunzip;
mod known;
mod local;
mod logging;
mod output;
mod preset;
mod progress;
mod remote;
mod route;
mod serve;
mod session;
mod settings;
mod status_view;
mod usage;

use std::process::ExitCode;

use clap::Parser;

use cli::{BenchName, Cli, Command};
use usage::UsageError;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    logging::start(&cli);
    let mut runtime = match cli.command.runs_nodes() {
        true => tokio::runtime::Builder::new_multi_thread(),
        false => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stoq: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args, cli.log_format).await,
            Command::Ping(args) => serve::ping(args).await,
            Command::Config(args) => settings::print_config(args),
            Command::Put(args) if args.file.is_dir() => collection::put(args).await,
            Command::Put(args) => match args.node.clone() {
                Some(node) => remote::put(args, &node).await,
                None => content::put(args),
            },
            Command::Get(args) if !args.nodes.is_empty() => remote::get(args).await,
            Command::Get(args) => content::get(args).await,
            Command::Status(args) => match &args.node {
                Some(node) => remote::status(node, args.json, args.watch).await,
                None => content::status(args),
            },
            Command::Purge(args) => remote::admin(args, true).await,
            Command::Prefetch(args) => remote::admin(args, false).await,
            Command::Name(command) => remote::name(command).await,
            Command::Delete(args) => content::delete(args),
            Command::Gc(args) => content::gc(args),
            Command::Check(args) => content::check(args),
            Command::Route(args) => route::run(args),
            Command::Demo(args) => demo::run(args).await,
            Command::Bench(args) => match args.name {
                BenchName::Transport(t) => bench::transport::run(t).await,
                BenchName::Route(r) => bench::route::run(r),
                BenchName::Chunking(c) => bench::chunking::run(c),
                BenchName::Dedup(d) => bench::dedup::run(d),
                BenchName::Erasure(e) => bench::erasure::run(e),
                BenchName::Connections(c) => bench::connections::run(c).await,
                BenchName::Retrieval(r) => bench::retrieval::run(r).await,
                BenchName::Delivery(d) => bench::delivery::run(d).await,
                BenchName::Http(h) => bench::http::run(h).await,
                BenchName::Utilization(u) => bench::utilization::run(u).await,
            },
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            logging::failure(&format!("{e:#}"));
            ExitCode::from(2)
        }
        Err(e) => {
            logging::failure(&format!("{e:#}"));
            ExitCode::from(1)
        }
    }
}
