//! The `exphub` command: `exphub [serve]`, `exphub sessions validate [DIR]`,
//! `exphub sessions import|dump DIR` (cluster mode), `exphub export SESSION_ID`,
//! `exphub analyze SESSION_ID [--faces]` and `exphub drain --internal-url URL`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use exphub::config::{Cli, Command, Config, PasswordSource, ServeArgs, SessionsCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Sessions(SessionsCommand::Validate { dir })) => validate(dir, &cli.serve),
        Some(Command::Sessions(SessionsCommand::Import { dir, replace, cluster_db })) => {
            import(&dir, replace, &cluster_db)
        }
        Some(Command::Sessions(SessionsCommand::Dump { dir, cluster_db })) => dump(&dir, &cluster_db),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Export { session_id, out, sessions_dir, object_store }) => {
            export(&session_id, out, sessions_dir, object_store)
        }
        Some(Command::Analyze { session_id, run, faces: true, sessions_dir, .. }) => {
            analyze_faces(&session_id, run, sessions_dir)
        }
        Some(Command::Analyze { session_id, run, out, sessions_dir, .. }) => {
            analyze(&session_id, run, out, sessions_dir)
        }
        Some(Command::Drain { internal_url, drain_timeout }) => drain(&internal_url, drain_timeout),
        None => serve(cli.serve),
    }
}

/// `exphub drain`: a signed `POST /internal/v1/drain` to the node; prints its answer.
fn drain(internal_url: &str, timeout_s: Option<f64>) -> ExitCode {
    let secret = match exphub::config::cluster_secret() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("exphub: {e}");
            return ExitCode::from(2);
        }
    };
    if !internal_url.starts_with("http://") {
        eprintln!("exphub: --internal-url must be http://host:port (the node's --internal-url)");
        return ExitCode::from(2);
    }
    let body = match timeout_s {
        Some(t) if t.is_finite() && t >= 0.0 => serde_json::json!({ "timeout_s": t }),
        Some(t) => {
            eprintln!("exphub: --drain-timeout must be a number of seconds (0 or more), got {t}");
            return ExitCode::from(2);
        }
        None => serde_json::json!({}),
    };
    let signer = exphub::cluster::Signer::new(secret.as_bytes());
    with_runtime(async {
        let answer = exphub::cluster::internal::post(
            &signer,
            "exphub-drain",
            internal_url,
            "/internal/v1/drain",
            Some("application/json"),
            body.to_string().into(),
            std::time::Duration::from_secs(30),
        )
        .await;
        match answer {
            Ok(a) if a.status == 200 => {
                println!("{}", String::from_utf8_lossy(&a.body));
                ExitCode::SUCCESS
            }
            Ok(a) => {
                eprintln!("exphub: the node answered {}: {}", a.status, String::from_utf8_lossy(&a.body));
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("exphub: cannot reach {internal_url}: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn validate(dir: Option<std::path::PathBuf>, args: &ServeArgs) -> ExitCode {
    let dir = dir.or_else(|| args.sessions_dir.clone()).unwrap_or_else(|| "sessions".into());
    let results = exphub::session::store::validate_dir(&dir);
    let mut bad = 0;
    for (path, r) in &results {
        match r {
            Ok(what) => println!("ok    {}  ({what})", path.display()),
            Err(why) => {
                bad += 1;
                println!("ERROR {}  {why}", path.display());
            }
        }
    }
    println!("{} file(s), {} with errors", results.len(), bad);
    if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs one network command of the CLI (database, drain) on a small runtime of its own.
fn with_runtime(f: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            eprintln!("exphub: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `exphub sessions import DIR`: one line per session and per file that did not load.
fn import(dir: &Path, replace: bool, url: &str) -> ExitCode {
    use exphub::cluster::sessions::{import, Imported};
    with_runtime(async {
        let (done, problems) = match import(url, dir, replace).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("exphub: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut refused = 0;
        for (id, r) in &done {
            match r {
                Imported::Written(v) => println!("ok      {id}  (version {v})"),
                Imported::Exists => {
                    refused += 1;
                    println!("EXISTS  {id}  (already in the database; --replace overwrites it)");
                }
            }
        }
        for p in &problems {
            println!("ERROR   {p}");
        }
        println!("{} imported, {refused} refused, {} file(s) with errors", done.len() - refused, problems.len());
        if refused == 0 && problems.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}

/// `exphub sessions dump DIR`: the files written, and the rows that are not valid sessions.
fn dump(dir: &Path, url: &str) -> ExitCode {
    with_runtime(async {
        match exphub::cluster::sessions::dump(url, dir).await {
            Ok((written, bad)) => {
                for id in &written {
                    println!("ok      {}", dir.join(format!("{id}.json")).display());
                }
                for b in &bad {
                    println!("ERROR   {b}");
                }
                println!("{} session(s) written to {}, {} not valid", written.len(), dir.display(), bad.len());
                if bad.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("exphub: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn export(
    session_id: &str,
    out: Option<std::path::PathBuf>,
    dir: Option<std::path::PathBuf>,
    object_store: Option<String>,
) -> ExitCode {
    let dir = dir.unwrap_or_else(|| "sessions".into());
    let session_file = exphub::session::store::find_file(&dir, session_id);
    // With an object store the archive comes from its copies (read on this runtime).
    let rt = match object_store.as_ref().map(|_| tokio::runtime::Runtime::new()).transpose() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("exphub: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listed = match (&object_store, &rt) {
        (Some(url), Some(rt)) => rt.block_on(async {
            let url = exphub::record::store::StoreUrl::parse(url).map_err(|e| format!("--object-store {e}"))?;
            let objects = exphub::open_object_store(&url).map_err(|e| e.to_string())?;
            exphub::record::export::contents_from_store(objects, None, session_file.as_deref(), session_id)
                .await
                .map_err(|e| format!("{e}"))
        }),
        _ => exphub::record::export::contents(&dir, session_file.as_deref(), session_id)
            .map_err(|e| format!("{e} (in {})", dir.display())),
    };
    let files = match listed {
        Ok(f) => f,
        Err(e) => {
            eprintln!("exphub: no complete research data for session {session_id:?}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if session_file.is_none() {
        eprintln!("exphub: warning: no session file for {session_id:?}; archiving the recordings alone");
    }
    let out = out.unwrap_or_else(|| format!("{session_id}.tar").into());
    let result = write_out(&out, "tar.partial", |w| exphub::record::export::write_archive(&files, w));
    match result {
        Ok(()) => {
            if out.as_os_str() != "-" {
                eprintln!("exphub: wrote {} ({} files)", out.display(), files.len());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("exphub: cannot write the archive: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A session's recording directory and its manifest (or the reason on stderr).
fn recording(session_id: &str, dir: Option<PathBuf>) -> Option<(PathBuf, exphub::record::Manifest)> {
    let dir = dir.unwrap_or_else(|| "sessions".into()).join(session_id);
    match exphub::record::Manifest::load(&dir) {
        Ok(Some(m)) => Some((dir, m)),
        Ok(None) => {
            eprintln!("exphub: no recording of session {session_id:?} in {}", dir.display());
            None
        }
        Err(e) => {
            eprintln!("exphub: {}: {e}", dir.join("manifest.json").display());
            None
        }
    }
}

/// A 20-character progress bar (`total` may come from a file: no overflow).
fn bar(done: u64, total: u64) -> String {
    (0..20u128).map(|i| if i * (total as u128) < (done as u128) * 20 { '#' } else { '.' }).collect()
}

fn analyze(session_id: &str, run: Option<u32>, out: Option<PathBuf>, dir: Option<PathBuf>) -> ExitCode {
    use exphub::record::analyze;
    let Some((dir, manifest)) = recording(session_id, dir) else { return ExitCode::FAILURE };
    let Some(run) = run.or_else(|| analyze::last_run(&manifest)) else {
        eprintln!("exphub: session {session_id:?} was never started");
        return ExitCode::FAILURE;
    };
    let instances = match analyze::logged_instances(&dir, run) {
        Ok(i) if !i.is_empty() => i,
        Ok(_) => {
            eprintln!("exphub: run {run} of {session_id:?} ran no group filters");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("exphub: cannot read the event log: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut lines = Vec::new();
    for inst in &instances {
        let (id, name) = (&inst.spec.id, &inst.spec.name);
        let mut progress = |done: usize, total: usize| {
            let bar = bar(done as u64, total as u64);
            eprint!("\rexphub: {name} ({id}) [{bar}] {done}/{total} members");
        };
        let results = match analyze::recompute(&dir, &manifest, run, inst, &mut progress) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("\nexphub: {name} ({id}): {e}");
                return ExitCode::FAILURE;
            }
        };
        eprintln!("  {} results", results.len());
        for r in &results {
            let row = analyze::Row {
                run,
                filter_id: id,
                filter_name: name,
                members: &r.members,
                window_end_ms: r.window_end_ms,
                value: &r.value,
                n_samples: r.n_samples,
            };
            lines.push(serde_json::to_string(&row).unwrap_or_default());
        }
    }
    let text = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    let out = out.unwrap_or_else(|| analyze::default_out(&dir, run));
    let written = write_out(&out, "partial", |w| w.write_all(text.as_bytes()));
    match written {
        Ok(()) => {
            if out.as_os_str() != "-" {
                eprintln!("exphub: wrote {} ({} results)", out.display(), lines.len());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("exphub: cannot write {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}

/// `exphub analyze --faces`: the same face analysis as `POST_PROCESSING_VIDEO`, into
/// `<session>/processed/`, listed in the manifest; the CSVs' paths on stdout.
fn analyze_faces(session_id: &str, run: Option<u32>, dir: Option<PathBuf>) -> ExitCode {
    use exphub::record::faces;
    use std::time::{Duration, Instant};
    let Some((dir, manifest)) = recording(session_id, dir) else { return ExitCode::FAILURE };
    let targets = faces::targets(&manifest, run);
    if targets.is_empty() {
        let which = run.map(|r| format!(" in run {r}")).unwrap_or_default();
        eprintln!("exphub: no recorded video of session {session_id:?}{which}");
        return ExitCode::FAILURE;
    }
    let started = Instant::now();
    let mut drawn: Option<Instant> = None;
    let mut progress = |done: u64, total: u64| {
        if done < total && drawn.is_some_and(|t| t.elapsed() < Duration::from_millis(200)) {
            return std::ops::ControlFlow::Continue(());
        }
        drawn = Some(Instant::now());
        let fps = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
        let eta = total.saturating_sub(done) as f64 / fps.max(1e-3);
        eprint!("\rexphub: faces [{}] {done}/{total} frames, {fps:.0} fps, ETA {eta:.0} s   ", bar(done, total));
        std::ops::ControlFlow::Continue(())
    };
    let report = match faces::analyze(&dir, &targets, &mut progress) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("\nexphub: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!();
    if !report.written.is_empty() {
        if let Err(e) = exphub::record::add_analyses_to(&dir, &report.written) {
            eprintln!("exphub: cannot list the results in {}: {e}", dir.join("manifest.json").display());
            return ExitCode::FAILURE;
        }
    }
    for a in &report.written {
        println!("{}", dir.join(&a.file).display());
    }
    let frames: u64 = report.written.iter().map(|a| a.frames).sum();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "exphub: wrote {} CSV file(s) to {}: {frames} frames in {secs:.1} s ({:.0} fps)",
        report.written.len(),
        dir.join(faces::DIR).display(),
        frames as f64 / secs.max(1e-3)
    );
    for (t, e) in &report.failed {
        eprintln!("exphub: {} failed: {e}", t.csv());
    }
    if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Writes a command's output to standard output (`-`) or to `out`: into a file beside it with the
/// extension `partial_ext`, renamed when complete, so a half-written output never has the name
/// (and is removed on failure).
fn write_out(
    out: &Path,
    partial_ext: &str,
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    if out.as_os_str() == "-" {
        return write(&mut std::io::stdout().lock());
    }
    let tmp = out.with_extension(partial_ext);
    std::fs::File::create(&tmp)
        .and_then(|f| {
            let mut w = std::io::BufWriter::new(f);
            write(&mut w)?;
            w.into_inner().map_err(|e| e.into_error()).map(drop)
        })
        .and_then(|()| std::fs::rename(&tmp, out))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

fn serve(args: ServeArgs) -> ExitCode {
    // Before the config: the default HTTP connection cap follows the raised limit.
    let fd_limit = exphub::config::raise_fd_limit();
    let cfg = match Config::resolve(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("exphub: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(format!("{},webrtc=warn,rtc=warn", cfg.log))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match fd_limit {
        Ok((before, after)) if before != after => tracing::info!(before, after, "open-file limit raised"),
        Ok((_, limit)) => tracing::info!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    if !cfg.ignored_keys.is_empty() {
        tracing::warn!(keys = ?cfg.ignored_keys, "config file keys that exphub does not use were ignored");
    }
    match &cfg.allow_origins {
        exphub::config::AllowOrigins::None => {}
        o => tracing::info!(allow_origins = ?o, "cross-origin pages may call the server (CORS)"),
    }
    if let Some(d) = &cfg.frontend_dir {
        tracing::info!(dir = %d.display(), "serving this frontend at /; exphub's own app at /exphub/");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("exphub: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let generated = cfg.password_source == PasswordSource::Generated;
        let password = cfg.experimenter_password.clone();
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        let mut server = match exphub::start(cfg).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("exphub: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("exphub serving on {scheme}://{}/", server.addr);
        if generated {
            // Printed once, to the terminal only (never to the log).
            println!("experimenter password (generated for this run): {password}");
            println!("set EXPHUB_EXPERIMENTER_PASSWORD to choose your own");
        }
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("exphub: {e}");
                return ExitCode::FAILURE;
            }
        };
        #[cfg(unix)]
        let term = term.recv();
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        // Cluster mode: `exphub drain` ends the process once the node's experiments are gone.
        let cluster = server.cluster.clone();
        let drained = async move {
            match cluster {
                Some(c) => c.drained().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
            _ = drained => {},
            e = server.failed() => {
                // Nothing acknowledged is lost (writes are durable before replies); a
                // supervisor restarts the process.
                tracing::error!(error = %e, "exiting");
                eprintln!("exphub: {e}");
                return ExitCode::FAILURE;
            }
        }
        tracing::info!("shutting down: stopping experiments");
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_progress_bar_takes_any_count_a_manifest_can_hold() {
        assert_eq!(super::bar(5, 10), "##########..........");
        assert_eq!(super::bar(0, 0), "....................");
        assert_eq!(super::bar(u64::MAX / 2, u64::MAX), "##########..........");
        assert_eq!(super::bar(3, u64::MAX), "#...................");
    }
}
